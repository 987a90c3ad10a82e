"""Benchmark: MNIST test digits made into pictures the way people make them, read as `cnn predict
--image` reads them, against the same model on the same digits fed directly.

    python bench/handwriting.py [--model M.h5] [--count 500] [--styles scan,jpeg,...] [--json]
                                [--numbers 200] [--seed 0] [--data DIR] [--save DIR]

Each style turns the same --count MNIST *test* digits (never training ones; chosen with --seed)
into picture files in memory (PNG, JPEG, TIFF, GIF: encoded bytes, as a file on disk would be):
a scan (upscaled and blurred), light on dark, pencil on white, blue ink on lined paper, squared
paper, uneven light, low-quality JPEG, a digit filling its frame, one touching an edge, a small
digit off-centre on a large page, slightly rotated, the file formats and modes a scanner or
a drawing program writes (16-bit, palette, CMYK, transparent, animated GIF), and ruled paper
photographed a few degrees askew (`tilted`), a fine pen on a large scan (`fine`, and
`skipping`, its line broken where the pen skipped; the newer styles last, so the others keep
their draws). Every picture is
read by `cnn_mnist.analysis.images.load_digit`, the function behind `cnn predict --image` and the serve
page's upload, and the model's answers are compared with its answers on the 28x28 digits fed
directly (for `rotated`: the same rotation made at 28x28, so the column measures the
preparation, not the model's tolerance of rotation; for `tilted`, the page's turn; for `fine` and
`skipping`, the same middle line drawn with the digit's own pen width, as thinning changes some
digits: an 8 with its loop filled in becomes a line). "refused" counts pictures that were turned
down (no digit found...).

Numbers (--numbers N, 0 for none): rows of 2-6 test digits with random gaps, about one gap in
four touching or overlapping, scanned like `scan`; read by `cnn_mnist.analysis.number_reading.read_number`
(`cnn predict --image --number`) where this version of the library has it, with the model to
decide touching digits (its `classify`) where the library takes one. Reported: the share
read with the right number of digits, whole numbers right, and the digits' accuracy (position
by position, in numbers with the right count) against the same digits fed directly.

The library read is the one in this repository (its root is put first on sys.path), so a model
from elsewhere is measured through this preparation. Deterministic: the same seed gives the
same pictures and the same figures. Prints a Markdown table; --json prints the results as JSON.
Nothing is written to disk unless --save DIR asks (never commit those: they are MNIST digits).
"""

from __future__ import annotations

import argparse
import datetime
import inspect
import io
import json
import os
import platform
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(1, str(Path(__file__).resolve().parent))
from run import cpu_name, machine_class  # noqa: E402 - bench/run.py, beside this file

from cnn_mnist.analysis import images  # noqa: E402 - this repository's library, not an installed one

DEFAULT_MODEL = "models/digits_recognition_cnn.h5"


# --- Drawing: ink coverage (0 paper, 1 ink) at a picture's size, then paper, ink and a file ---


def _resize(coverage: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """Float coverage resized to (width, height) with bicubic interpolation, kept in [0, 1]."""
    from PIL import Image

    out = Image.fromarray(coverage.astype(np.float32), "F").resize(size, Image.Resampling.BICUBIC)
    return np.clip(np.asarray(out), 0, 1)


def _blur(coverage: np.ndarray, sigma: float) -> np.ndarray:
    from scipy import ndimage

    return ndimage.gaussian_filter(coverage, sigma) if sigma > 0 else coverage


def _scanned(
    digit: np.ndarray, rng, scale: tuple[int, int] = (4, 6), sigma=(0.8, 2.0)
) -> np.ndarray:
    """A 28x28 digit (0-255) as a scanner sees it: upscaled 4-6x, blurred a little."""
    k = int(rng.integers(scale[0], scale[1] + 1))
    side = 28 * k
    return _blur(_resize(digit / 255.0, (side, side)), float(rng.uniform(*sigma)) * k / 4)


def _paint(coverage: np.ndarray, paper, ink) -> np.ndarray:
    """Ink over paper: paper and ink are grey levels or RGB triples (0-255)."""
    paper = np.asarray(paper, dtype=np.float32)
    ink = np.asarray(ink, dtype=np.float32)
    a = coverage[..., None] if paper.ndim or ink.ndim else coverage
    return paper * (1 - a) + ink * a


def _noise(picture: np.ndarray, rng, sigma: float) -> np.ndarray:
    return picture + rng.normal(0, sigma, picture.shape).astype(np.float32)


def _to_uint8(picture: np.ndarray) -> np.ndarray:
    return np.clip(np.round(picture), 0, 255).astype(np.uint8)


def _encode(picture, fmt: str = "PNG", **options) -> bytes:
    """A PIL image, or an array (grey or RGB 0-255), as the bytes of a file in `fmt`."""
    from PIL import Image

    if isinstance(picture, np.ndarray):
        picture = Image.fromarray(_to_uint8(picture))
    buffer = io.BytesIO()
    picture.save(buffer, fmt, **options)
    return buffer.getvalue()


def _lines(shape, spacing: float, offset: float, width: int, vertical: bool = False) -> np.ndarray:
    """Coverage of evenly spaced printed lines (1 on a line), horizontal or vertical."""
    height, w = shape
    mask = np.zeros(shape, dtype=np.float32)
    length = w if vertical else height
    position = offset
    while position < length:
        start = int(round(position))
        if vertical:
            mask[:, start : start + width] = 1
        else:
            mask[start : start + width] = 1
        position += spacing
    return mask


def _page(coverage: np.ndarray, shape: tuple[int, int], top: int, left: int) -> np.ndarray:
    """`coverage` placed on an empty (paper) page of `shape` at (top, left), cut at the edges."""
    page = np.zeros(shape, dtype=np.float32)
    h, w = coverage.shape
    t0, l0 = max(top, 0), max(left, 0)
    t1, l1 = min(top + h, shape[0]), min(left + w, shape[1])
    page[t0:t1, l0:l1] = coverage[t0 - top : t1 - top, l0 - left : l1 - left]
    return page


def _ink_box(digit: np.ndarray, level: float = 0) -> tuple[int, int, int, int]:
    rows, cols = np.nonzero(digit > level)
    return rows.min(), rows.max() + 1, cols.min(), cols.max() + 1


# Each style: (digit 28x28 uint8, rng) -> the bytes of a picture file. `rotated` also changes the
# digit fed directly (see ROTATED_DIRECT).


def style_scan(digit, rng):
    c = _scanned(digit, rng)
    return _encode(_noise(_paint(c, rng.uniform(225, 250), rng.uniform(10, 50)), rng, 3))


def style_inverse(digit, rng):
    """Chalk on a blackboard, or a screenshot of a dark-mode drawing: light on dark."""
    c = _scanned(digit, rng)
    board = rng.uniform(20, 70)
    return _encode(_noise(_paint(c, (board, board + 10, board), (235, 235, 225)), rng, 5))


def style_pencil(digit, rng):
    """Grey, grainy pencil on white: the ink reaches 45-110 levels below the paper."""
    c = _scanned(digit, rng)
    grain = np.clip(rng.uniform(0.45, 1.0, c.shape), 0, 1).astype(np.float32)
    paper = rng.uniform(235, 252)
    ink = paper - rng.uniform(45, 110)
    return _encode(_noise(_paint(c * _blur(grain, 0.7), paper, ink), rng, 3))


def style_lined(digit, rng):
    """Blue ballpoint on ruled paper: light blue lines about as far apart as the digit is tall,
    one often through the digit, and a red margin line."""
    c = _scanned(digit, rng, scale=(5, 6))
    side = c.shape[0]
    return _encode(_noise(_ruled(c, (int(side * 1.4), int(side * 1.6)), rng), rng, 3))


def _ruled(c: np.ndarray, shape: tuple[int, int], rng, size: int = 0) -> np.ndarray:
    """The scanned digit `c` (`size` tall, default its picture's) in blue ballpoint somewhere
    on a ruled page of `shape` (RGB)."""
    side = c.shape[0]
    top, left = int(rng.integers(0, shape[0] - side)), int(rng.integers(0, shape[1] - side))
    ink = _page(c, shape, top, left)
    spacing = (size or side) * rng.uniform(0.45, 0.7)
    ruled = _lines(shape, spacing, rng.uniform(0, spacing), int(rng.integers(1, 4)))
    picture = _paint(ruled, (252, 252, 246), (140, 175, 225))
    if rng.random() < 0.5:
        margin = _lines(shape, shape[1] * 10, rng.uniform(0, shape[1] * 0.2), 2, vertical=True)
        picture = (
            picture * (1 - margin[..., None]) + np.float32([230, 120, 120]) * margin[..., None]
        )
    blue = np.float32([25, 45, 150]) + rng.uniform(-15, 15, 3).astype(np.float32)
    return picture * (1 - ink[..., None]) + blue * ink[..., None]


def tilt(rng) -> float:
    return float(rng.choice([-1, 1]) * rng.uniform(2, 6))


def style_tilted(digit, rng, angle: float | None = None):
    """Ruled paper photographed turned 2-6 degrees either way (a phone held askew): the lines
    and the digit turned together, saved as a JPEG."""
    from scipy import ndimage

    angle = tilt(rng) if angle is None else angle
    c = _scanned(digit, rng, scale=(5, 6))
    side = c.shape[0]
    shape = (int(side * 1.4), int(side * 1.6))
    big = (shape[0] + side, shape[1] + side)  # turned, then cut to `shape`: no empty corners
    page = np.empty((*big, 3), dtype=np.float32)
    page[:] = _ruled(np.pad(c, side // 2), big, rng, size=side)
    turned = ndimage.rotate(page, angle, reshape=False, order=1)
    cut = turned[side // 2 : side // 2 + shape[0], side // 2 : side // 2 + shape[1]]
    return _encode(_noise(cut, rng, 3), "JPEG", quality=85)


def _thinned(strokes: np.ndarray) -> np.ndarray:
    """The one-pixel middle line of `strokes` (boolean): Zhang and Suen's thinning (1984)."""
    p = np.pad(strokes, 1).astype(np.uint8)
    while True:
        changed = False
        for step in (0, 1):
            # The 8 neighbours clockwise from the one above: P2, P3, ..., P9.
            n = [p[:-2, 1:-1], p[:-2, 2:], p[1:-1, 2:], p[2:, 2:]]
            n += [p[2:, 1:-1], p[2:, :-2], p[1:-1, :-2], p[:-2, :-2]]
            count = sum(n)
            turns = sum((n[k] == 0) & (n[(k + 1) % 8] == 1) for k in range(8))
            if step == 0:
                side = (n[0] * n[2] * n[4] == 0) & (n[2] * n[4] * n[6] == 0)
            else:
                side = (n[0] * n[2] * n[6] == 0) & (n[0] * n[4] * n[6] == 0)
            drop = (p[1:-1, 1:-1] == 1) & (count >= 2) & (count <= 6) & (turns == 1) & side
            if drop.any():
                p[1:-1, 1:-1][drop] = 0
                changed = True
        if not changed:
            return p[1:-1, 1:-1].astype(bool)


def style_fine(digit, rng, skips: int = 0):
    """A fine pen on a large scan: the digit 250-340 pixels tall, its strokes 3-5 pixels wide
    (the middle line of MNIST's strokes, widened a little); with `skips`, that many gaps of
    6-10 pixels where the pen skipped."""
    return fine_pen(digit, rng, skips)[0]


def fine_pen(digit, rng, skips: int = 0) -> tuple[bytes, np.ndarray]:
    """`style_fine`'s picture, and its digit to feed directly: the same middle line drawn with
    the MNIST digit's own pen width at 28x28. Thinning changes some digits (an 8 with its loop
    filled in becomes a line with one loop), so the original is not the digit pictured."""
    from scipy import ndimage

    side = 28 * int(rng.integers(9, 13))
    strokes = _resize(digit / 255.0, (side, side)) > 0.5
    middle = _thinned(strokes)
    pen = ndimage.binary_dilation(middle, iterations=int(rng.integers(1, 3)))  # 3 or 5 px
    ys, xs = np.nonzero(middle)
    rows, cols = np.indices(pen.shape)
    for k in rng.choice(len(ys), size=min(skips, len(ys)), replace=False):
        pen &= (rows - ys[k]) ** 2 + (cols - xs[k]) ** 2 > (rng.uniform(6, 10) / 2) ** 2
    c = _blur(pen.astype(np.float32), 0.6)
    picture = _encode(_noise(_paint(c, rng.uniform(225, 250), rng.uniform(10, 60)), rng, 3))
    # MNIST's pen: as wide as the digit's strokes (the 90th percentile of their half-widths).
    reach = np.percentile(ndimage.distance_transform_edt(strokes)[strokes], 90)
    broad = ndimage.distance_transform_edt(~middle) <= reach
    small = _resize(_blur(broad.astype(np.float32), side / 56), (28, 28))
    return picture, 255 * small


def style_skipping(digit, rng):
    """`fine`, the pen skipping: its line broken in 3-6 places."""
    return style_fine(digit, rng, skips=int(rng.integers(3, 7)))


def style_squared(digit, rng):
    """Squared (graph) paper: grey-blue lines both ways, squares a third to half the digit's size."""
    c = _scanned(digit, rng, scale=(5, 6))
    side = c.shape[0]
    spacing = side * rng.uniform(0.3, 0.5)
    width = int(rng.integers(1, 3))
    grid = np.maximum(
        _lines(c.shape, spacing, rng.uniform(0, spacing), width),
        _lines(c.shape, spacing, rng.uniform(0, spacing), width, vertical=True),
    )
    line = np.float32([150, 170, 200]) * rng.uniform(0.7, 1.0)  # faint to strong print
    picture = _paint(grid, (250, 250, 250), line)
    ink = np.float32([20, 25, 40]) if rng.random() < 0.5 else np.float32([25, 45, 150])
    picture = picture * (1 - c[..., None]) + ink * c[..., None]
    return _encode(_noise(picture, rng, 3))


def style_shadow(digit, rng):
    """A phone photo under uneven light: the light falls to 25-50% across the page, in any
    direction, and the photo is saved as a JPEG."""
    c = _scanned(digit, rng)
    h, w = c.shape
    angle = rng.uniform(0, 2 * np.pi)
    ys, xs = np.mgrid[0:h, 0:w].astype(np.float32)
    ramp = np.cos(angle) * xs / w + np.sin(angle) * ys / h
    ramp = (ramp - ramp.min()) / (ramp.max() - ramp.min())
    light = 1 - rng.uniform(0.5, 0.75) * ramp
    reflectance = 0.93 * (1 - c) + 0.1 * c
    picture = _noise(255 * light * reflectance, rng, 4)
    rgb = picture[..., None] * np.float32([1.0, 0.97, 0.9])  # warm indoor light
    return _encode(rgb, "JPEG", quality=85)


def style_jpeg(digit, rng):
    """A scan saved as a low-quality JPEG (quality 8-25): blocks and ringing around the strokes."""
    c = _scanned(digit, rng)
    picture = _noise(_paint(c, rng.uniform(225, 250), rng.uniform(10, 50)), rng, 3)
    return _encode(
        np.repeat(picture[..., None], 3, axis=2), "JPEG", quality=int(rng.integers(8, 26))
    )


def style_fill(digit, rng):
    """A digit cut out of a form (as NIST's were): its box fills the picture, cut where the ink
    is half dark so the strokes run off all four edges; half of them written with a thick pen."""
    from scipy import ndimage

    if rng.random() < 0.5:
        digit = ndimage.grey_dilation(digit, size=(2, 2))
    top, bottom, left, right = _ink_box(digit, rng.uniform(60, 140))
    c = _scanned(digit, rng)
    k = c.shape[0] // 28
    crop = c[top * k : bottom * k, left * k : right * k]
    return _encode(_noise(_paint(crop, rng.uniform(225, 250), rng.uniform(10, 50)), rng, 3))


def style_edge(digit, rng):
    """A digit touching one edge of its picture (cut by a bad crop), with paper on the others."""
    top, bottom, left, right = _ink_box(digit, 30)
    c = _scanned(digit, rng)
    k = c.shape[0] // 28
    side = c.shape[0]
    shape = (side, side)
    edge = int(rng.integers(0, 4))  # which edge the strokes touch: top, bottom, left, right
    cut = int(rng.integers(0, k))  # and how much of them the crop cut off (under 1/28 of the side)
    shift = [-top * k - cut, side - bottom * k + cut, -left * k - cut, side - right * k + cut][edge]
    down, across = (shift, 0) if edge < 2 else (0, shift)
    ink = _page(c, shape, down, across)
    return _encode(_noise(_paint(ink, rng.uniform(225, 250), rng.uniform(10, 50)), rng, 3))


def style_small(digit, rng):
    """A small digit (40-70 pixels tall) anywhere on a large page (800x600) with paper grain."""
    k = rng.uniform(2.0, 3.5)
    side = int(28 * k)
    c = _blur(_resize(digit / 255.0, (side, side)), rng.uniform(0.5, 1.2))
    shape = (600, 800)
    ink = _page(
        c, shape, int(rng.integers(0, shape[0] - side)), int(rng.integers(0, shape[1] - side))
    )
    paper = rng.uniform(215, 245) + _blur(rng.normal(0, 6, shape).astype(np.float32), 3)
    return _encode(
        _noise(paper * (1 - ink) + rng.uniform(15, 60) * ink, rng, 4), "JPEG", quality=90
    )


def rotation(rng) -> float:
    return float(rng.choice([-1, 1]) * rng.uniform(5, 12))


def rotated_digit(digit: np.ndarray, angle: float) -> np.ndarray:
    """The 28x28 digit turned by `angle` degrees (counter-clockwise), as the model is fed it."""
    from scipy import ndimage

    return np.clip(ndimage.rotate(digit.astype(np.float32), angle, reshape=False, order=1), 0, 255)


def style_rotated(digit, rng):
    """A scan of a digit written 5-12 degrees off upright, either way."""
    return style_scan(rotated_digit(digit, rotation(rng)), rng)


def style_gray8(digit, rng):
    """The digit at MNIST's own size, 28x28, dark on white, 8-bit grayscale (a tiny scan)."""
    return _encode(255 - digit.astype(np.float32))


def style_gray16(digit, rng):
    """A scan as a 16-bit grayscale PNG, a scanner's default ("I;16")."""
    from PIL import Image

    c = _scanned(digit, rng)
    picture = np.clip(_noise(_paint(c, rng.uniform(225, 250), rng.uniform(10, 50)), rng, 3), 0, 255)
    return _encode(Image.fromarray((picture * 257).astype(np.uint16)))


def style_palette(digit, rng):
    """A scan in a 16-colour palette PNG (mode P), as drawing programs and optimisers write."""
    from PIL import Image

    c = _scanned(digit, rng)
    rgb = _to_uint8(_noise(_paint(c, (245, 245, 240), (20, 30, 90)), rng, 3))
    return _encode(Image.fromarray(rgb).quantize(16))


def style_cmyk(digit, rng):
    """A scan as a CMYK JPEG (print workflows)."""
    from PIL import Image

    c = _scanned(digit, rng)
    rgb = _to_uint8(_noise(_paint(c, (245, 245, 240), (20, 20, 30)), rng, 3))
    return _encode(Image.fromarray(rgb).convert("CMYK"), "JPEG", quality=90)


def style_rgba(digit, rng):
    """Dark ink on a transparent background (an exported drawing): the ink only in the alpha."""
    from PIL import Image

    c = _scanned(digit, rng)
    rgba = np.zeros(c.shape + (4,), dtype=np.uint8)
    rgba[..., :3] = (10, 10, 10)
    rgba[..., 3] = _to_uint8(255 * c)
    return _encode(Image.fromarray(rgba, "RGBA"))


def style_gif(digit, rng):
    """An animated GIF: the digit in the first frame, a blank page in the second."""
    from PIL import Image

    c = _scanned(digit, rng)
    first = Image.fromarray(_to_uint8(_paint(c, 245, 20))).convert("P")
    blank = Image.new("P", first.size, color=first.getpixel((0, 0)))
    buffer = io.BytesIO()
    first.save(buffer, "GIF", save_all=True, append_images=[blank], duration=500, loop=0)
    return buffer.getvalue()


STYLES = {
    "scan": (style_scan, "upscaled 4-6x and blurred, dark on white (8-bit PNG)"),
    "inverse": (style_inverse, "light on dark (chalk on a board)"),
    "pencil": (style_pencil, "grainy pencil-grey on white, 45-110 levels of contrast"),
    "lined": (style_lined, "blue ink on ruled paper, lines through the digit"),
    "squared": (style_squared, "on squared paper"),
    "shadow": (style_shadow, "uneven light, falling to 25-50% across the page (JPEG)"),
    "jpeg": (style_jpeg, "JPEG at quality 8-25"),
    "fill": (style_fill, "cut inside the digit's box (a form): strokes run off all four edges"),
    "edge": (style_edge, "touching one edge (a bad crop)"),
    "small": (style_small, "40-100 px tall, off-centre on an 800x600 page (JPEG)"),
    "rotated": (style_rotated, "turned 5-12 degrees either way"),
    "gray8": (style_gray8, "28x28 8-bit grayscale, dark on white"),
    "gray16": (style_gray16, "16-bit grayscale PNG (a scanner's default)"),
    "palette": (style_palette, "16-colour palette PNG"),
    "cmyk": (style_cmyk, "CMYK JPEG"),
    "rgba": (style_rgba, "ink on a transparent background (RGBA PNG)"),
    "gif": (style_gif, "animated GIF, the digit in the first frame"),
    "tilted": (style_tilted, "ruled paper photographed turned 2-6 degrees (JPEG)"),
    "fine": (style_fine, "a fine pen on a large scan: strokes 3-5 px on a 250-340 px digit"),
    "skipping": (style_skipping, "the fine pen skipping: its line broken in 3-6 places"),
}


def make_pictures(style: str, digits: np.ndarray, seed: int) -> tuple[list[bytes], np.ndarray]:
    """The pictures of `digits` in `style`, and the 28x28 digits to feed directly (0-255)."""
    make = STYLES[style][0]
    number = list(STYLES).index(style)
    pictures, direct = [], digits.astype(np.float32).copy()
    for i, digit in enumerate(digits):
        rng = np.random.default_rng([seed, number, i])
        if style == "rotated":
            turned = rotated_digit(digit, rotation(np.random.default_rng([seed, number, i, 1])))
            direct[i] = turned
            pictures.append(style_scan(turned, rng))
        elif style == "tilted":  # the digit is turned with the page: fed directly turned too
            angle = tilt(np.random.default_rng([seed, number, i, 1]))
            direct[i] = rotated_digit(digit, angle)
            pictures.append(style_tilted(digit, rng, angle))
        elif style in ("fine", "skipping"):  # the middle line: fed directly, with MNIST's pen
            skips = int(rng.integers(3, 7)) if style == "skipping" else 0
            picture, direct[i] = fine_pen(digit, rng, skips)
            pictures.append(picture)
        else:
            pictures.append(make(digit, rng))
    return pictures, direct


# --- Numbers ---


def make_number(digits: np.ndarray, rng) -> bytes:
    """Test digits side by side as one scanned picture: random gaps, about one in four touching
    (the strokes' boxes 0-3 pixels into each other, at 28x28 scale), a little up and down."""
    parts, gaps = [], []
    for digit in digits:
        _, _, left, right = _ink_box(digit, 30)
        parts.append(digit[:, left:right].astype(np.float32))
    for _ in range(len(digits) - 1):
        gaps.append(-int(rng.integers(0, 4)) if rng.random() < 0.25 else int(rng.integers(1, 9)))
    width = sum(p.shape[1] for p in parts) + sum(gaps) + 16
    row = np.zeros((36, width), dtype=np.float32)
    x = 8
    for n, part in enumerate(parts):
        dy = int(rng.integers(0, 9))
        w = part.shape[1]
        row[dy : dy + 28, x : x + w] = np.maximum(row[dy : dy + 28, x : x + w], part)
        x += w + (gaps[n] if n < len(gaps) else 0)
    k = int(rng.integers(4, 6))
    c = _blur(
        _resize(row / 255.0, (row.shape[1] * k, row.shape[0] * k)), rng.uniform(0.8, 1.6) * k / 4
    )
    return _encode(_noise(_paint(c, rng.uniform(225, 250), rng.uniform(10, 50)), rng, 3))


def bench_numbers(model, normalize: bool, x_test, y_test, count: int, seed: int) -> dict:
    """Numbers of 2-6 test digits read by numbers.read_number, against the digits fed directly."""
    try:
        from cnn_mnist.analysis import number_reading
    except ImportError:
        return {
            "available": False,
            "note": "this version of the library has no cnn_mnist.analysis.number_reading",
        }
    from cnn_mnist.tools.predict import probabilities

    extra = {}  # the model splits a 1 from the digit it touches (since issue 20's third round)
    if "classify" in inspect.signature(number_reading.read_number).parameters:
        extra["classify"] = lambda digits: probabilities(model, digits, normalize)
    rng = np.random.default_rng([seed, 1000])
    right_count = whole = read_right = alone_right = digits_in_right = total_digits = 0
    refused = 0
    seconds = 0.0
    for n in range(count):
        length = int(rng.integers(2, 7))
        chosen = rng.choice(len(x_test), length, replace=False)
        truth = [int(y_test[i]) for i in chosen]
        picture = make_number(x_test[chosen], np.random.default_rng([seed, 1001, n]))
        start = time.perf_counter()
        try:
            found = number_reading.read_number(picture, name=f"number-{n}", **extra)
        except images.ImageError:
            found = []
            refused += 1
        seconds += time.perf_counter() - start
        alone = probabilities(model, x_test[chosen] / np.float32(255), normalize).argmax(axis=1)
        total_digits += length
        alone_right_here = int((alone == np.array(truth)).sum())
        if len(found) == length:
            right_count += 1
            read = probabilities(model, np.stack([f.digit for f in found]), normalize).argmax(
                axis=1
            )
            hits = int((read == np.array(truth)).sum())
            read_right += hits
            alone_right += alone_right_here
            digits_in_right += length
            whole += hits == length
    return {
        "available": True,
        "numbers": count,
        "right_count": right_count / count,
        "whole_numbers_right": whole / count,
        "refused": refused,
        "digits_in_right_count": digits_in_right,
        "digit_accuracy": read_right / digits_in_right if digits_in_right else None,
        "digit_accuracy_alone": alone_right / digits_in_right if digits_in_right else None,
        "digits": total_digits,
        "ms_per_number": 1000 * seconds / count,
    }


# --- Running ---


def read_style(
    model, normalize: bool, pictures: list[bytes], direct: np.ndarray, labels, style: str
) -> dict:
    from cnn_mnist.tools.predict import probabilities

    seen, refused, reasons = [], 0, {}
    start = time.perf_counter()
    for i, picture in enumerate(pictures):
        try:
            seen.append(images.load_digit(picture, name=f"{style}-{i}"))
        except images.ImageError as exc:
            seen.append(None)
            refused += 1
            reason = str(exc).split(": ", 1)[-1][:60]
            reasons[reason] = reasons.get(reason, 0) + 1
    seconds = time.perf_counter() - start
    read = [i for i, d in enumerate(seen) if d is not None]
    right = 0
    if read:
        got = probabilities(model, np.stack([seen[i] for i in read]), normalize).argmax(axis=1)
        right = int((got == labels[read]).sum())
    direct_right = int(
        (probabilities(model, direct / np.float32(255), normalize).argmax(axis=1) == labels).sum()
    )
    n = len(pictures)
    return {
        "pictures": n,
        "accuracy": right / n,
        "direct_accuracy": direct_right / n,
        "points_below_direct": round(100 * (direct_right - right) / n, 2),
        "refused": refused,
        "refusals": reasons,
        "ms_per_picture": 1000 * seconds / n,
    }


def git_commit() -> str:
    try:
        out = subprocess.run(
            ["git", "-C", str(ROOT), "rev-parse", "--short", "HEAD"],
            capture_output=True,
            text=True,
            timeout=10,
        )
        dirty = subprocess.run(
            ["git", "-C", str(ROOT), "status", "--porcelain", "--", "cnn_mnist"],
            capture_output=True,
            text=True,
            timeout=10,
        ).stdout.strip()
        return out.stdout.strip() + ("+changes" if dirty else "")
    except (OSError, subprocess.SubprocessError):
        return "unknown"


def markdown(result: dict) -> str:
    lines = [
        f"Model `{result['model']}`, {result['count']} MNIST test digits per style "
        f"(seed {result['seed']}), library at {result['library']}; "
        f"{result['machine']['cpu']} ({result['machine']['class']}), {result['date']}.",
        "",
        "| style | pictures | read by `--image` | fed directly | points below | refused | "
        "ms per picture |",
        "| --- | --- | --- | --- | --- | --- | --- |",
    ]
    for style, r in result["styles"].items():
        lines.append(
            f"| {style}: {STYLES[style][1]} | {r['pictures']} | {r['accuracy']:.1%} | "
            f"{r['direct_accuracy']:.1%} | {r['points_below_direct']:.1f} | "
            f"{r['refused']} | {r['ms_per_picture']:.1f} |"
        )
    if result["styles"]:
        worst = max(result["styles"].items(), key=lambda kv: kv[1]["points_below_direct"])
        lines += [
            "",
            f"Worst style: {worst[0]}, {worst[1]['points_below_direct']:.1f} points "
            f"below direct; refused in all: "
            f"{sum(r['refused'] for r in result['styles'].values())}.",
        ]
    numbers = result.get("numbers")
    if numbers is not None:
        lines.append("")
        if not numbers["available"]:
            lines.append(f"Numbers: not measured ({numbers['note']}).")
        else:
            acc = numbers["digit_accuracy"]
            alone = numbers["digit_accuracy_alone"]
            lines += [
                "| numbers (2-6 digits) | right number of digits | whole number right | "
                "digits read right (right count) | same digits fed directly | refused | "
                "ms per number |",
                "| --- | --- | --- | --- | --- | --- | --- |",
                f"| {numbers['numbers']} ({numbers['digits']} digits) | "
                f"{numbers['right_count']:.1%} | {numbers['whole_numbers_right']:.1%} | "
                + (f"{acc:.1%} | {alone:.1%} | " if acc is not None else "- | - | ")
                + f"{numbers['refused']} | {numbers['ms_per_number']:.1f} |",
            ]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--model", default=DEFAULT_MODEL, help=f"saved model (default {DEFAULT_MODEL})"
    )
    parser.add_argument(
        "--count", type=int, default=500, help="test digits per style (default 500)"
    )
    parser.add_argument(
        "--styles", default="all", help=f"comma-separated, or 'all' (default): {','.join(STYLES)}"
    )
    parser.add_argument(
        "--numbers",
        type=int,
        default=200,
        help="numbers of 2-6 digits to read (default 200; 0: none)",
    )
    parser.add_argument("--seed", type=int, default=0, help="which digits and pictures (default 0)")
    parser.add_argument("--data", default=None, help="MNIST folder (default $CNN_MNIST_DATA)")
    parser.add_argument("--json", action="store_true", help="print the results as JSON")
    parser.add_argument(
        "--save",
        metavar="DIR",
        help="also write the pictures here, to look at (never commit them: they are MNIST digits)",
    )
    args = parser.parse_args(argv)

    styles = (
        list(STYLES)
        if args.styles == "all"
        else [s.strip() for s in args.styles.split(",") if s.strip()]
    )
    unknown = [s for s in styles if s not in STYLES]
    if unknown:
        parser.error(f"unknown style(s) {', '.join(unknown)}; the styles: {', '.join(STYLES)}")
    if not Path(args.model).is_file():
        parser.error(
            f"{args.model}: no such model file; train one (cnn train) or give --model PATH"
        )

    from cnn_mnist.stages.data import load_mnist
    from cnn_mnist.stages.handle import open_saved

    mnist = load_mnist(args.data, test_only=True)
    x_test, y_test = mnist.x_test, mnist.y_test.astype(int)
    chosen = np.random.default_rng(args.seed).choice(len(x_test), args.count, replace=False)
    digits, labels = x_test[chosen], y_test[chosen]
    saved = open_saved(args.model)
    model, _ = saved.predictor()
    normalize = saved.normalize

    result = {
        "model": args.model,
        "count": args.count,
        "seed": args.seed,
        "library": git_commit(),
        "date": datetime.date.today().isoformat(),
        "machine": {
            "cpu": cpu_name(),
            "class": machine_class(),
            "cores": os.cpu_count(),
            "python": platform.python_version(),
        },
        "styles": {},
    }
    for style in styles:
        pictures, direct = make_pictures(style, digits, args.seed)
        if args.save:
            folder = Path(args.save) / style
            folder.mkdir(parents=True, exist_ok=True)
            for i, picture in enumerate(pictures[:50]):
                suffix = {b"\x89P": "png", b"\xff\xd8": "jpg", b"GI": "gif"}.get(picture[:2], "img")
                (folder / f"{i:03d}-{labels[i]}.{suffix}").write_bytes(picture)
        result["styles"][style] = read_style(model, normalize, pictures, direct, labels, style)
    if args.numbers:
        result["numbers"] = bench_numbers(model, normalize, x_test, y_test, args.numbers, args.seed)
        if args.save:
            folder = Path(args.save) / "numbers"
            folder.mkdir(parents=True, exist_ok=True)
            rng = np.random.default_rng([args.seed, 1000])
            for n in range(min(args.numbers, 30)):
                length = int(rng.integers(2, 7))
                pick = rng.choice(len(x_test), length, replace=False)
                label = "".join(str(y_test[i]) for i in pick)
                (folder / f"{n:03d}-{label}.png").write_bytes(
                    make_number(x_test[pick], np.random.default_rng([args.seed, 1001, n]))
                )
    print(json.dumps(result, indent=2) if args.json else markdown(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
