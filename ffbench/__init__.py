"""ffbench: Forward-Forward against backprop, one spec, several frameworks.

Importing ffbench imports no ML framework; backends load lazily (`ffbench.registry`).
"""

__version__ = "0.1.0"
