"""An image's geometry: channels, height, width.

Images travel as flat rows in (channel, row, column) order, the layout of CIFAR-10's binary
files: value (c, r, x) of an image is entry c * H * W + r * W + x of its row. Every
geometry-dependent op (label overlay, jitter, hybrid masks, local receptive fields) is
defined on that layout in `ffbench.reference`.
"""

from __future__ import annotations

from typing import NamedTuple


class Geometry(NamedTuple):
    channels: int
    height: int
    width: int

    @property
    def pixels(self) -> int:
        """Locations of the image's grid (H * W): a local-receptive-field layer's map."""
        return self.height * self.width

    @property
    def size(self) -> int:
        """Values per image (C * H * W): the width of the first layer's input."""
        return self.channels * self.height * self.width

    def label(self) -> str:
        return f"{self.height}x{self.width}x{self.channels}"


MNIST = Geometry(1, 28, 28)
