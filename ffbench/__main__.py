"""`python -m ffbench ...` is the `ffbench` command, for where its script is not on the PATH
(e.g. ffbench installed with `pip install --target`, as on a GPU host without internet)."""

import sys

from ffbench.cli import main

sys.exit(main())
