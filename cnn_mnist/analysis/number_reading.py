"""Whole numbers: the digits of a picture written in a row (a year, a postcode), found and each
made MNIST-like with the same preparation as one digit (images.ink_of, images.centre_digit).

ink -> connected strokes (specks left out) -> parts whose columns overlap mostly merged (a 5's
detached bar, a 7's cross-stroke), and a mark too short to be a digit joined to its nearer
neighbour -> a part much wider than the row's digits are tall (their median height: two
touching digits set a little apart in height make one taller part) split at the column
profile's thinnest points; a part one digit wide (a 1 touching or leaning into its neighbour)
split along the straight or slanted line that crosses least ink -> left to right.
Where the caller's `classify` is given, the model decides what the strokes leave open: which
neighbour a short mark joins, whether a part a little wider than a digit is one (a wide 0) or
two, whether one about two digits wide holds two or three, where two touching digits part, and
whether a 1 touches its neighbour: whichever reading it reads more surely (the product of each
digit's top probability).
No TensorFlow here: `classify` is any function from 28x28 digits to class probabilities.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from cnn_mnist.analysis.images import (
    NoDigit,
    centre_digit,
    ink_of,
    otsu_threshold,
    picture_size,
    read_grayscale,
    stroke_width,
)

MERGE_OVERLAP = 0.5  # parts sharing this much of the narrower one's columns are one digit
SPECK_FRACTION = 0.15  # parts shorter than this fraction of the tallest are specks (or a dot)
SPLIT_WIDTH = 1.1  # a part wider than this x the row's height may be two touching digits
SURELY_TWO = 1.3  # ... and is, wider than this; between the two, if the model reads two better
TWO_OR_THREE = (1.7, 2.1)  # x the row's height: two digits or three, whichever the model reads
MAX_DIGITS = 12
# A part one digit wide may be two (_touching_cut; measured on bench/handwriting.py's numbers):
NARROWEST = 0.45  # ... unless it is narrower than this x the row's height
SLANTS = np.linspace(-0.5, 0.5, 11)  # cuts tried: columns moved per row, upright to slanted
THIN = 3.0  # ... crossing less ink than this many strokes' width, in one run
TALL = 0.7  # ... with at least this x the row's height of ink on each side
SHORTEST = 0.45  # a mark less tall than this x the row's height is part of a digit, never one
FAR = 0.5  # ... and one further than this x the row's height from any digit is a stray mark


@dataclass
class Digit:
    """One digit of a number: as the model sees it, and where it is in the picture."""

    digit: np.ndarray  # 28x28 in [0, 1]
    box: tuple[int, int, int, int]  # left, top, right, bottom (exclusive) in the picture's pixels


def _split(mask: np.ndarray, height: int) -> list[tuple[int, int]]:
    """Column ranges of `mask` (one part): split where two digits touch, by the column profile,
    into as many as its width holds digits three quarters as wide as tall."""
    width = mask.shape[1]
    if width <= SPLIT_WIDTH * height:
        return [(0, width)]
    return _profile_cuts(mask, max(2, int(round(width / (0.75 * height)))))


def _profile_cuts(mask: np.ndarray, pieces: int) -> list[tuple[int, int]]:
    """Column ranges of `mask` cut into `pieces` at the column profile's thinnest points."""
    width = mask.shape[1]
    profile = mask.sum(axis=0).astype(float)
    cuts = []
    for k in range(1, pieces):  # look for the thinnest column near each expected boundary
        centre = k * width / pieces
        low, high = int(centre - 0.25 * width / pieces), int(centre + 0.25 * width / pieces) + 1
        cuts.append(low + int(np.argmin(profile[low:high])))
    edges = [0, *cuts, width]
    return [(a, b) for a, b in zip(edges[:-1], edges[1:]) if b > a]


def _touching_cut(mask: np.ndarray, height: int, every: bool = False):
    """Where a part no wider than a digit may be two (a 1 touching or leaning into its
    neighbour): of the straight lines, upright or slanted like handwriting, with a digit's
    height of ink on each side, the one crossing least ink (under THIN strokes, in one run).
    Returns what lies left of it (a boolean array like `mask`), or None; with `every`, the
    least-ink line of every slant that has one, best first."""

    width = mask.shape[1]
    ys = np.nonzero(mask.any(axis=1))[0]
    if width < NARROWEST * height or len(ys) == 0:
        return [] if every else None
    stroke = stroke_width(mask)
    inked = mask[ys[0] : ys[-1] + 1]
    rows = np.arange(len(inked))
    has_ink = inked.any(axis=1)
    first = np.where(has_ink, inked.argmax(axis=1), width)  # each row's leftmost ink
    last = np.where(has_ink, width - 1 - inked[:, ::-1].argmax(axis=1), -1)  # and rightmost
    centres = np.arange(int(0.2 * width), int(0.8 * width) + 1)
    found: list[tuple[float, int, float]] = []
    for slant in SLANTS:
        line = centres[:, None] + slant * (rows - rows.mean())[None, :]  # (centres, rows)
        at = np.rint(line).astype(int)
        hit = inked[rows[None, :], np.clip(at, 0, width - 1)] & (at >= 0) & (at < width)
        runs = np.count_nonzero(np.diff(hit.astype(int), axis=1) == 1, axis=1) + hit[:, 0]
        tall = _extent(first[None, :] < line) >= TALL * height  # ink left of the line
        tall &= _extent(last[None, :] >= line) >= TALL * height  # and right of it
        cost = np.where((runs <= 1) & tall, hit.sum(axis=1), np.inf)
        k = int(np.argmin(cost))
        if cost[k] < THIN * stroke:
            found.append((float(cost[k]), int(centres[k]), float(slant)))
    found.sort()
    lefts = [
        np.arange(width)[None, :]
        < (c + slant * (np.arange(mask.shape[0]) - ys[0] - rows.mean()))[:, None]
        for _, c, slant in found
    ]
    if every:
        return lefts
    return lefts[0] if lefts else None


def _extent(rows: np.ndarray) -> np.ndarray:
    """The number of rows from the first True to the last, of each row of `rows`."""
    first, last = rows.argmax(axis=1), rows.shape[1] - rows[:, ::-1].argmax(axis=1)
    return np.where(rows.any(axis=1), last - first, 0)


def segment(
    ink: np.ndarray, source: str = "image", classify=None
) -> list[tuple[np.ndarray, tuple[int, int, int, int]]]:
    """The digits in `ink` (0 = paper), left to right: each one's ink (the rest 0) and box.
    `classify` (28x28 digits -> class probabilities), when given, decides what the strokes
    leave open (the module's docstring says what)."""
    labels, merged, ranges, height = _parts(ink, source, classify)
    digits = []
    for part, (a, b) in zip(merged, ranges):
        mask = np.isin(labels, part)
        if classify is not None and TWO_OR_THREE[0] <= (b - a) / height < TWO_OR_THREE[1]:
            regions = _two_or_three(ink, mask, a, b, classify)
        else:
            spans = _split(mask[:, a:b], height)
            regions = [_columns(ink.shape, a + left, a + right) for left, right in spans]
        if len(regions) == 1:  # one digit wide: a 1 may touch its neighbour
            regions = _maybe_two(ink, mask, regions[0], a, b, height, classify)
        elif len(regions) == 2 and classify is not None:  # two touching: where, the model says
            regions = _best_two(ink, mask, regions, a, b, height, classify)
        for region in regions:
            found = _piece(ink, mask, region)
            if found is not None:
                digits.append(found)
    if len(digits) > MAX_DIGITS:
        raise NoDigit(
            f"{source}: {len(digits)} separate marks, more than the {MAX_DIGITS} digits "
            "of a number: crop the picture to the number"
        )
    return digits


def _two_or_three(ink, mask, a, b, classify) -> list[np.ndarray]:
    """Columns a to b of `mask` cut into two or three by the column profile, whichever
    `classify` reads more surely. Measured on bench/handwriting.py's numbers (3,000, seeds 0, 1
    and 3): at 1.7-2.1 x the row's height, 120 parts were two digits, 28 three and 2 four; the
    model chose right 22 more times than the width alone. Narrower, it reads three too often."""
    cuts = [
        [
            _columns(mask.shape, a + left, a + right)
            for left, right in _profile_cuts(mask[:, a:b], n)
        ]
        for n in (2, 3)
    ]
    sure = _sureness(ink, mask, cuts[0] + cuts[1], classify)
    if sure is not None and np.prod(sure[2:]) > np.prod(sure[:2]):
        return cuts[1]
    return cuts[0]


def _maybe_two(ink, mask, region, a, b, height, classify) -> list[np.ndarray]:
    """`region` (columns a to b of `mask`), or its two halves if it may be two touching digits
    (_touching_cut) and `classify` reads them more surely as two."""
    if classify is None:
        return [region]
    left = _touching_cut(mask[:, a:b], height)
    if left is None:
        return [region]
    inside = np.zeros_like(mask)
    inside[:, a:b] = left
    pair = [region & inside, region & ~inside]
    return pair if _two_read_better(ink, mask, region, pair, classify) else [region]


def _best_two(ink, mask, regions, a, b, height, classify) -> list[np.ndarray]:
    """Of the column profile's cut (`regions`) and the least-ink lines (_touching_cut), the cut
    whose two halves `classify` reads most surely; or the whole, if it reads more surely."""
    whole = regions[0] | regions[1]
    pairs = [regions]
    for left in _touching_cut(mask[:, a:b], height, every=True):
        inside = np.zeros_like(mask)
        inside[:, a:b] = left
        pairs.append([whole & inside, whole & ~inside])
    sure = _sureness(ink, mask, [whole] + [region for pair in pairs for region in pair], classify)
    if sure is None:
        return regions
    both = sure[1::2] * sure[2::2]
    # A digit written wide (a 0, a 5 with its bar: MNIST has many) is one if the model reads it
    # more surely so; measured on bench/handwriting.py's numbers, 1.1-1.3 x the row's height.
    wide = b - a > SURELY_TWO * height
    return pairs[int(np.argmax(both))] if wide or both.max() > sure[0] else [whole]


def _columns(shape, left: int, right: int) -> np.ndarray:
    region = np.zeros(shape, dtype=bool)
    region[:, left:right] = True
    return region


def _two_read_better(ink, mask, whole, pair, classify) -> bool:
    """Whether `classify` reads the part as the two regions of `pair` more surely than as one
    digit (`whole`)."""
    sure = _sureness(ink, mask, [whole, *pair], classify)
    return sure is not None and bool(sure[1] * sure[2] > sure[0])


def _sureness(ink, mask, regions, classify) -> np.ndarray | None:
    """How surely `classify` (28x28 digits -> class probabilities) reads each region's strokes
    as a digit (its top probability); None if a region has none."""
    pieces = [_piece(ink, mask, region) for region in regions]
    if any(p is None for p in pieces):
        return None
    return np.asarray(classify(np.stack([centre_digit(p[0]) for p in pieces]))).max(axis=1)


def _parts(ink: np.ndarray, source: str, classify=None):
    """Connected strokes (specks left out) grouped into digits: parts sharing columns merged, and
    a mark shorter than SHORTEST x the row's height (a 5's bar, a 9's detached tail) joined to
    its nearer neighbour (or, with `classify`, the one the model reads better). Returns the
    labels, the groups' labels, their column ranges and the row's height (its tallest stroke)."""
    from scipy import ndimage

    level = max(otsu_threshold(ink), 0.25 * float(ink.max()))
    labels, count = ndimage.label(ink > level, structure=np.ones((3, 3)))
    if count == 0:
        raise NoDigit(f"{source}: no digits found")
    boxes = ndimage.find_objects(labels)
    tallest = max(b[0].stop - b[0].start for b in boxes)
    parts = [
        [i + 1]
        for i, b in enumerate(boxes)
        if max(b[0].stop - b[0].start, b[1].stop - b[1].start) >= SPECK_FRACTION * tallest
    ]
    spans = {p[0]: (boxes[p[0] - 1][1].start, boxes[p[0] - 1][1].stop) for p in parts}
    parts.sort(key=lambda p: spans[p[0]][0])
    merged: list[list[int]] = []
    ranges: list[tuple[int, int]] = []
    for part in parts:
        a, b = spans[part[0]]
        if merged:
            c, d = ranges[-1]
            overlap = min(b, d) - max(a, c)
            if overlap >= MERGE_OVERLAP * min(b - a, d - c):
                merged[-1] += part
                ranges[-1] = (min(a, c), max(b, d))
                continue
        merged.append(list(part))
        ranges.append((a, b))
    choose = None if classify is None else _chooser(ink, labels, classify)
    _join_short(boxes, merged, ranges, tallest, choose)
    # The row's height: its groups' median, as touching digits set a little apart in height
    # make one taller part.
    heights = [
        max(boxes[i - 1][0].stop for i in g) - min(boxes[i - 1][0].start for i in g) for g in merged
    ]
    return labels, merged, ranges, int(np.median(heights))


def _join_short(boxes, merged, ranges, height: int, choose=None) -> None:
    """Groups less tall than SHORTEST x `height` joined (in place) to the nearer neighbour, or
    dropped if it is further than FAR x `height` away. With both neighbours near, `choose`
    (_chooser), when given, says which."""
    k = 0
    while k < len(merged) and len(merged) > 1:
        rows = [boxes[i - 1][0] for i in merged[k]]
        if max(r.stop for r in rows) - min(r.start for r in rows) >= SHORTEST * height:
            k += 1
            continue
        gaps = [
            ranges[k][0] - ranges[k - 1][1] if k > 0 else np.inf,
            ranges[k + 1][0] - ranges[k][1] if k + 1 < len(merged) else np.inf,
        ]
        into = k - 1 if gaps[0] <= gaps[1] else k + 1
        if choose is not None and max(gaps) <= FAR * height:
            into = choose(merged[k - 1], merged[k], merged[k + 1]) + k
        if min(gaps) <= FAR * height:  # else a stray mark (a smudge, the page's corner): dropped
            merged[into] += merged[k]
            ranges[into] = (min(ranges[into][0], ranges[k][0]), max(ranges[into][1], ranges[k][1]))
        del merged[k], ranges[k]
        k = max(0, k - 1)


def _chooser(ink, labels, classify):
    """A function (left, mark, right) -> -1 if the mark (a 5's bar, a 7's cross-stroke) joins
    the group left of it, +1 right: where `classify` reads the two digits that make more surely."""

    def choose(left, mark, right) -> int:
        regions = [np.isin(labels, g) for g in (left + mark, right, left, mark + right)]
        sure = _sureness(ink, np.isin(labels, left + mark + right), regions, classify)
        if sure is None:
            return -1
        return -1 if sure[0] * sure[1] >= sure[2] * sure[3] else 1

    return choose


def _piece(ink: np.ndarray, mask: np.ndarray, region: np.ndarray):
    """The strokes of `mask` inside `region` with their faint edges, and their box."""
    from scipy import ndimage

    part = mask & region
    if not part.any():
        return None
    weak = ndimage.binary_dilation(part, iterations=2) & (ink > 0) & region
    ys, xs = np.nonzero(weak)
    box = (int(xs.min()), int(ys.min()), int(xs.max()) + 1, int(ys.max()) + 1)
    return np.where(weak, ink, 0).astype(np.float32), box


def read_number(source: str | Path | bytes, name: str | None = None, classify=None) -> list[Digit]:
    """A picture (a path or an upload's bytes) of digits in a row -> its digits, left to right,
    each made MNIST-like as `cnn predict --image` makes one digit. `classify`: see segment."""
    if name is None:
        name = "upload" if isinstance(source, (bytes, bytearray, memoryview)) else str(source)
    gray = read_grayscale(source, name)
    ink, _ = ink_of(gray, name)
    width, height = picture_size(source)
    # A photo over MAX_SIDE is read shrunk; its boxes are given in the picture's own pixels.
    sx, sy = width / gray.shape[1], height / gray.shape[0]
    return [
        Digit(
            centre_digit(piece),
            (
                int(box[0] * sx),
                int(box[1] * sy),
                min(width, math.ceil(box[2] * sx)),
                min(height, math.ceil(box[3] * sy)),
            ),
        )
        for piece, box in segment(ink, name, classify)
    ]
