"""Pictures of digits with what the model said, for `cnn predict` and `cnn evaluate`.

Matplotlib draws into files (the Agg backend) unless a window is asked for.
"""

from __future__ import annotations

import io
import os
import sys
from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class Tile:
    """One digit (28x28 in [0, 1]) and its caption; a wrong prediction's caption is red."""

    digit: np.ndarray
    title: str
    wrong: bool = False


def pyplot():
    """matplotlib.pyplot drawing to files only: no display needed, never a window."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def png_bytes(plt, fig, **savefig) -> bytes:
    """The figure as PNG bytes; the figure is closed."""
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", **savefig)
    plt.close(fig)
    return buffer.getvalue()


def digits_png(tiles: list[Tile], empty: str = "no digits") -> bytes:
    """The digits in a grid of up to 8 columns, captioned, as PNG bytes."""
    plt = pyplot()
    if not tiles:
        fig, ax = plt.subplots(figsize=(4, 1))
        ax.axis("off")
        ax.text(0.5, 0.5, empty, ha="center", va="center")
        return png_bytes(plt, fig)
    return png_bytes(plt, _grid(plt, tiles), bbox_inches="tight")


def show(tiles: list[Tile]) -> bool:
    """Open a matplotlib window; False where there is no display to open it on."""
    if sys.platform.startswith("linux") and not (
        os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY")
    ):
        return False
    import matplotlib.pyplot as plt

    if "agg" in plt.get_backend().lower():
        return False
    _grid(plt, tiles)
    plt.show()
    return True


def _grid(plt, tiles: list[Tile]):
    columns = min(len(tiles), 8)
    rows = -(-len(tiles) // columns)
    # A column fits a caption of 27 characters ("#9999: predicted 7 (100%)"); longer class
    # names ("predicted Ankle boot (100%)") widen the columns rather than overlap.
    longest = max(len(line) for tile in tiles for line in tile.title.splitlines())
    width = 2.2 * max(1.0, longest / 27)
    fig, axes = plt.subplots(rows, columns, figsize=(width * columns, 2.5 * rows), squeeze=False)
    for ax in axes.flat:
        ax.axis("off")
    for ax, tile in zip(axes.flat, tiles):
        ax.imshow(tile.digit, cmap="Greys")  # as the lecture shows it: dark ink on white
        ax.set_title(tile.title, fontsize=9, color="red" if tile.wrong else "black")
    fig.tight_layout()
    return fig
