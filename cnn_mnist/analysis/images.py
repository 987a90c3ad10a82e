"""Your own pictures of digits, made into MNIST-like inputs the way MNIST itself was made.

Any picture Pillow reads (every bit depth and mode, an animation's first frame) -> grayscale ->
light ink on dark: which is the ink is judged from the whole picture (its long tail away from
the paper), the border deciding only where the picture cannot -> the paper's level found at each
pixel from the whole picture (a closing: the light may fall off across the page), taken away,
and the ink divided by it (light multiplies: a stroke in shadow is as faint as its paper) ->
printed lines of ruled and squared paper removed -> cropped to the digit's strokes (connected
components above a threshold chosen from the picture, so specks of dust or paper grain far from
the digit are left out) -> scaled to fit a 20x20 box, keeping the aspect ratio -> placed in
28x28 so its centre of mass is at the centre -> scaled to [0, 1].
One implementation for files and for uploaded bytes (`load_digit` takes either).
No TensorFlow here: pictures are checked before the model is loaded.
"""

from __future__ import annotations

import io
import re
import warnings
from pathlib import Path

import numpy as np

from cnn_mnist.core import files
from cnn_mnist.core.errors import CnnError


class ImageError(CnnError):
    """A picture that cannot be read, or that has no digit on it."""


class NotAPicture(ImageError):
    """Bytes or a file that Pillow cannot read as a picture."""


class PictureTooLarge(ImageError):
    """More than MAX_PIXELS pixels: refused from the header, before anything is decoded."""


class NoDigit(ImageError):
    """A readable picture with no digit on it: blank, too little contrast, or only specks."""


MAX_PIXELS = 40_000_000  # width x height; larger pictures are refused before they are decoded
MAX_SIDE = 1024  # larger photos are shrunk first: the digit ends up 20 pixels tall anyway
MIN_CONTRAST = 24  # of 255, once smoothed: less between paper and ink is a blank picture
NOISE_MARGIN = 4  # ... or less than this many times the pixels' noise (its robust deviation)
SMOOTH = 1.0  # pixels (Gaussian sigma): where the strokes are is decided on the picture so smoothed
TAILS_VOTE = 0.6  # x the picture's range: one tail this much longer than the other is the ink
BORDER_VOTE = 0.55  # ... else a border this much on one side of the mid-level is paper
PAPER_WINDOW = 0.4  # x the longer side: wider than any stroke, so the paper shows in every window
LINE_COVER = 0.95  # a row or column inked across this much of the picture may be a printed line
LINE_WIDTH = 0.04  # ... if its band is at most this thick (x the picture's size), or 2 pixels
LINE_SPAN = 0.5  # ... of the picture it crosses (a tilted line may leave it), crossing this much
LINE_TILT = 8.0  # degrees: printed lines are looked for this far from level (a phone askew)
LINE_LEVEL = 0.1  # ink above this fraction of the darkest counts towards a line's cover
THINNEST = 1.8  # pixels at 20x20: thinner strokes are widened to this (MNIST test digits: 2.0-4.5)
HAIRLINE = 1.0  # ... and hairlines thinner than this (a fine pen on a large scan: 0.3-0.8)
PEN = 2.4  # ... to this: measured on bench/handwriting.py's fine and skipping styles
MAX_GAIN = 4.0  # paper in shadow is brightened at most this much (as the best-lit paper)
JOIN = 0.01  # x the longer side (2 pixels at least): strokes this close are one part
INK_FRACTION = 0.25  # pixels fainter than this fraction of the darkest ink are paper noise
MIN_DIGIT_SIDE = 10  # pixels: when the largest dark part is smaller than this, or than
MIN_DIGIT_RATIO = 0.02  # this fraction of the picture's longer side, there are only specks
NEAR_FRACTION = (
    0.25  # parts this close to the digit (x its longer side) belong to it, like an i's dot
)
PART_FRACTION = 0.05  # ... unless they are smaller than this fraction of the digit's largest stroke
LARGE_FRACTION = (
    0.25  # parts at least this fraction of the largest stroke belong to it wherever they are
)


def read_grayscale(source: str | Path | bytes, name: str | None = None) -> np.ndarray:
    """Any image Pillow reads as float32 0-255 luminance, upright: every bit depth (1, 8, 16,
    32-bit integer or float) and mode (grey, RGB, palette, CMYK, with or without transparency),
    the first frame of an animation.

    `source` is a path or the file's bytes (an upload); `name` is what messages call it
    (the path, or "upload" for bytes, by default).
    """

    from PIL import Image, ImageOps, UnidentifiedImageError

    file: io.BytesIO | Path
    if isinstance(source, (bytes, bytearray, memoryview)):
        name = name or "upload"
        file = io.BytesIO(bytes(source))
    else:
        path = Path(source)
        name = name or str(path)
        if not path.is_file():
            raise ImageError(f"{name}: no such image file")
        file = path
    try:
        with warnings.catch_warnings():
            # Pillow warns from 89 megapixels on; ours is the refusal below, with the size.
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            image: Image.Image = Image.open(file)  # reads the header only: nothing is decoded yet
        with image:
            _check_size(image.size, name)
            image.seek(0)  # an animation's first frame
            image = ImageOps.exif_transpose(image)  # phone photos carry their rotation in EXIF
            if image.mode in WIDE_MODES:
                return _shrink(_wide_luminance(image))
            image.thumbnail((MAX_SIDE, MAX_SIDE))
            if image.mode in ("RGBA", "LA", "PA") or "transparency" in image.info:
                image = _flatten_alpha(image.convert("RGBA"))
            try:
                gray = image.convert("L")
            except ValueError:  # a mode with no direct conversion to grey (HSV, ...)
                gray = image.convert("RGB").convert("L")
            return np.asarray(gray, dtype=np.float32)
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
        # Over Pillow's own limit (179 megapixels), Image.open refuses before we see the size.
        found = re.search(r"\((\d+) pixels\)", str(exc))
        size = f"{int(found.group(1)) / 1e6:.0f} megapixels" if found else "too many pixels"
        raise PictureTooLarge(_too_large(name, size)) from None
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError, EOFError) as exc:
        raise NotAPicture(
            f"{name}: not an image Pillow can read ({type(exc).__name__}); "
            "expected a PNG or JPEG picture of a digit"
        ) from None


def picture_size(source: str | Path | bytes) -> tuple[int, int]:
    """The width and height of a picture `read_grayscale` has read, before it was shrunk to
    MAX_SIDE (upright, as its EXIF says): the frame a number's digit boxes are given in."""

    from PIL import Image

    file = (
        io.BytesIO(bytes(source)) if isinstance(source, (bytes, bytearray, memoryview)) else source
    )
    with Image.open(file) as image:  # the header only
        width, height = image.size
        if image.getexif().get(0x0112, 1) in (5, 6, 7, 8):  # EXIF orientation: turned a quarter
            width, height = height, width
    return width, height


# Modes whose values go past 255: Pillow's convert("L") clips them, so a 16-bit scan turned white.
WIDE_MODES = ("I;16", "I;16L", "I;16B", "I;16N", "I", "F")


def _wide_luminance(image) -> np.ndarray:
    """A 16-bit, 32-bit integer or float picture as 0-255: 16-bit by its full range (65535),
    integers that stay within 0-255 as they are, floats within 0-1 as fractions."""
    values = np.asarray(image, dtype=np.float64)
    top = float(values.max()) if values.size else 0.0
    if image.mode.startswith("I;16") or 255 < top <= 65535:
        values = values / 257.0
    elif top > 65535:
        values = values * (255.0 / top)
    elif image.mode == "F" and top <= 1.0:
        values = values * 255.0
    return np.clip(values, 0, 255).astype(np.float32)


def _shrink(gray: np.ndarray) -> np.ndarray:
    """Larger than MAX_SIDE: shrunk (area averaging) so that its longer side is MAX_SIDE."""
    from PIL import Image

    height, width = gray.shape
    if max(height, width) <= MAX_SIDE:
        return gray
    scale = MAX_SIDE / max(height, width)
    size = (max(1, round(width * scale)), max(1, round(height * scale)))
    return np.asarray(
        Image.fromarray(gray, "F").resize(size, Image.Resampling.BOX), dtype=np.float32
    )


def _check_size(size: tuple[int, int], name: str) -> None:
    width, height = size
    if width * height > MAX_PIXELS:
        raise PictureTooLarge(
            _too_large(name, f"{width}x{height} = {width * height / 1e6:.0f} megapixels")
        )


def _too_large(name: str, size: str) -> str:
    return (
        f"{name}: picture too large to read ({size}); the limit is "
        f"{MAX_PIXELS / 1e6:.0f} megapixels: shrink it, e.g. to {MAX_SIDE} pixels on the longer side"
    )


def _flatten_alpha(rgba):
    """Transparent pixels become paper: white behind dark ink, black behind light ink."""
    from PIL import Image

    pixels = np.asarray(rgba, dtype=np.float32)
    alpha = pixels[..., 3] / 255.0
    ink = pixels[..., :3].mean(axis=2)[alpha > 0.5]
    paper = 0.0 if ink.size and ink.mean() > 127 else 255.0
    rgb = pixels[..., :3] * alpha[..., None] + paper * (1 - alpha[..., None])
    return Image.fromarray(rgb.astype(np.uint8), "RGB")


def otsu_threshold(values: np.ndarray, bins: int = 256) -> float:
    """The level that best splits `values` into two classes (Otsu 1979: largest between-class variance)."""
    counts, edges = np.histogram(values, bins=bins)
    centres = (edges[:-1] + edges[1:]) / 2
    weight = np.cumsum(counts)  # pixels at or below each level
    mass = np.cumsum(counts * centres)
    total, total_mass = weight[-1], mass[-1]
    with np.errstate(divide="ignore", invalid="ignore"):
        below = mass / weight
        above = (total_mass - mass) / (total - weight)
        between = weight * (total - weight) * (below - above) ** 2
    return float(edges[1:][np.nanargmax(between[:-1])])


def digit_mask(ink: np.ndarray, source: str = "image") -> np.ndarray:
    """Which pixels of `ink` (0 = paper) are the digit: its strokes, without specks far from it.

    Strokes are the parts above a threshold chosen from the picture (Otsu's, and at least
    INK_FRACTION of the darkest ink); when the largest is only a speck, there is no digit.
    Parts within JOIN of each other are one (_joined), and the largest is the digit; other parts
    belong to it when they are large, or near it and not tiny (a 5's detached bar, an i's dot,
    the pieces of a line where the pen skipped: _belonging).
    The mask then takes in each kept stroke's fainter edge, down to INK_FRACTION (hysteresis).
    """
    from scipy import ndimage

    faint = INK_FRACTION * ink.max()
    parts, _ = ndimage.label(
        ink > max(otsu_threshold(ink), faint, MIN_CONTRAST / 2), structure=np.ones((3, 3))
    )
    if _side_of_largest(parts) < max(MIN_DIGIT_SIDE, MIN_DIGIT_RATIO * max(ink.shape)):
        raise NoDigit(
            f"{source}: no digit found, only specks or dust; expected a digit at least "
            f"{MIN_DIGIT_RATIO:.0%} of the picture's size (and {MIN_DIGIT_SIDE} pixels) tall, "
            "dark on light or light on dark: crop the picture closer around it"
        )
    strong = _joined(parts, max(ink.shape))
    sizes = np.bincount(strong.ravel())[1:]
    boxes = ndimage.find_objects(strong)
    side = max(s.stop - s.start for s in boxes[int(np.argmax(sizes))])

    keep = _belonging(boxes, sizes, side)
    weak, _ = ndimage.label(ink >= faint, structure=np.ones((3, 3)))
    touched = np.unique(weak[np.concatenate([[False], keep])[strong]])
    return np.isin(weak, touched[touched > 0])


def _belonging(boxes, sizes: np.ndarray, side: int) -> np.ndarray:
    """Which of the parts (their `boxes` and `sizes`; the largest `side` long) belong to the
    digit: large ones anywhere, and those not tiny within a margin of the parts kept. The margin
    grows with what it takes in, so a 2's hook broken where the pen skipped is kept piece by
    piece, though its top is further than the margin from the rest; specks never make it grow."""
    starts = np.array([[rows.start, cols.start] for rows, cols in boxes])
    stops = np.array([[rows.stop, cols.stop] for rows, cols in boxes])
    keep = sizes >= LARGE_FRACTION * sizes.max()
    piece = sizes >= PART_FRACTION * sizes.max()
    margin = NEAR_FRACTION * side
    while True:
        low, high = starts[keep].min(axis=0), stops[keep].max(axis=0)
        near = np.all((starts < high + margin) & (stops > low - margin), axis=1)
        if not (near & piece & ~keep).any():
            return keep
        keep |= near & piece


def _side_of_largest(parts: np.ndarray) -> int:
    """The longer side of the box of the largest of the labelled `parts` (by pixels)."""
    from scipy import ndimage

    box = ndimage.find_objects(parts)[int(np.argmax(np.bincount(parts.ravel())[1:]))]
    return max(s.stop - s.start for s in box)


def _joined(parts: np.ndarray, size: int) -> np.ndarray:
    """The labelled `parts` relabelled, those not tiny (PART_FRACTION of the largest) within
    JOIN x `size` of each other as one: a fine pen's line, broken where the scan lost it
    (specks stay apart, judged on their own)."""
    from scipy import ndimage

    strokes = parts > 0
    sizes = np.bincount(parts.ravel())[1:]
    large = np.isin(parts, 1 + np.flatnonzero(sizes >= PART_FRACTION * sizes.max(initial=0)))
    near = ndimage.distance_transform_edt(~large) <= max(2.0, JOIN * size)
    groups, joined = ndimage.label(near, structure=np.ones((3, 3)))
    labels = np.where(large, groups, np.where(strokes, parts + joined, 0)).ravel()
    numbered = np.unique(np.concatenate([[0], labels]), return_inverse=True)[1]  # 1, 2, ...
    return numbered[1:].reshape(parts.shape)


def _resized(values: np.ndarray, size: tuple[int, int], resample) -> np.ndarray:
    from PIL import Image

    return np.asarray(Image.fromarray(values.astype(np.float32), "F").resize(size, resample))


def _polarity_evidence(gray: np.ndarray) -> tuple[float, float]:
    """(the share of the border lighter than the picture's mid-level, the ink tails' verdict:
    how much further the darkest point lies below the local median than the lightest above it,
    over the picture's range)."""
    from PIL import Image
    from scipy import ndimage

    low, high = float(gray.min()), float(gray.max())
    border = np.concatenate([gray[0], gray[-1], gray[:, 0], gray[:, -1]])
    light = float((border > (low + high) / 2).mean())
    height, width = gray.shape
    factor = max(1, int(np.ceil(max(height, width) / 48)))
    small = _resized(
        gray, (max(1, width // factor), max(1, height // factor)), Image.Resampling.BOX
    )
    local = ndimage.median_filter(small, max(3, max(small.shape) // 3), mode="nearest")
    flat = gray - _resized(local, (width, height), Image.Resampling.BILINEAR)
    return light, (-float(flat.min()) - float(flat.max())) / max(high - low, 1e-6)


def ink_is_dark(gray: np.ndarray) -> bool:
    """Whether the ink is darker than the paper (`gray` smoothed, so no single pixel's noise).

    The paper is most of each part of a picture, so the ink is the longer tail away from the
    local median (taken over a third of the picture, which follows the light across a page in
    shadow). Where the tails are near even (a digit filling its picture, as much ink as paper),
    the border decides when BORDER_VOTE of it is on one side of the mid-level: it is still
    mostly paper. (The border alone misjudges a page half in shadow.)"""
    light, tails = _polarity_evidence(gray)
    if abs(tails) < TAILS_VOTE and (light >= BORDER_VOTE or light <= 1 - BORDER_VOTE):
        return light >= BORDER_VOTE
    return tails > 0


def paper_level(gray: np.ndarray) -> np.ndarray:
    """The paper's level at each pixel of a dark-on-light picture, from the whole picture: a
    closing (largest then smallest value in a window of PAPER_WINDOW of the picture's longer
    side) takes out the strokes, narrower than the window, and keeps the light's slow changes
    across the page (a shadow, a lamp to one side). Worked out at about 128 pixels."""
    from PIL import Image
    from scipy import ndimage

    height, width = gray.shape
    factor = max(1, int(np.ceil(max(height, width) / 128)))
    small = gray
    if factor > 1:
        size = (max(1, width // factor), max(1, height // factor))
        small = np.asarray(Image.fromarray(gray, "F").resize(size, Image.Resampling.BOX))
    window = max(3, int(round(PAPER_WINDOW * max(small.shape))))
    closed = ndimage.minimum_filter(
        ndimage.maximum_filter(small, window, mode="nearest"), window, mode="nearest"
    )
    closed = ndimage.uniform_filter(closed, max(1, window // 2), mode="nearest")  # no blocks
    # Near an edge the closing sees the light only on one side, and takes the brighter: where
    # the light falls off towards that edge it would call the paper there ink. The light's
    # smooth surface (fitted to the paper alone) is the lesser there. It is taken only where it
    # is the lesser by more than MIN_CONTRAST: on a picture that is mostly ink (a digit filling
    # its frame) the fit sinks a little below the paper, and the closing knows better.
    closed = np.minimum(closed, light_surface(small) + MIN_CONTRAST)
    if closed.shape != gray.shape:
        closed = np.asarray(
            Image.fromarray(closed.astype(np.float32), "F").resize(
                (width, height), Image.Resampling.BILINEAR
            )
        )
    return closed.astype(np.float32)


def light_surface(gray: np.ndarray, rounds: int = 5) -> np.ndarray:
    """The light across a dark-on-light picture as a smooth surface (a quadratic in x and y),
    fitted to the paper alone: each round leaves out the pixels darker than the last fit by more
    than twice the paper's spread (the ink), so the fit rises to the paper's level."""
    height, width = gray.shape
    ys, xs = np.mgrid[0:height, 0:width].astype(np.float64) / max(height, width, 1)
    basis = np.stack([np.ones_like(xs), xs, ys, xs * xs, xs * ys, ys * ys], axis=-1).reshape(-1, 6)
    values = gray.astype(np.float64).ravel()
    keep = np.ones(values.size, dtype=bool)
    fit = np.full(values.size, values.mean())
    for _ in range(rounds):
        if keep.sum() < basis.shape[1] * 4:
            break
        coef, *_ = np.linalg.lstsq(basis[keep], values[keep], rcond=None)
        fit = basis @ coef
        residual = values - fit
        spread = 1.4826 * float(np.median(np.abs(residual[keep])))
        keep = residual > -max(2 * spread, 2.0)
    return fit.reshape(gray.shape).astype(np.float32)


def remove_lines(*inks: np.ndarray) -> list[np.ndarray]:
    """Ruled and squared paper's printed lines taken out of each of `inks` (0 = paper: one
    picture's ink, then the same smoothed: the first's tilt serves all, found once as it is costly).

    A line is a thin band of rows (or columns) inked across LINE_COVER of the picture, at most
    LINE_WIDTH of its size thick, and not at its edge: a digit's strokes are thicker, or do not
    run across the whole picture (at the edge it is a stroke the crop cut: a 7's bar). Lines
    need not be level (a phone held askew): each column is first moved up or down so that they
    are (_line_tilt, on the first of `inks`), and moved back after; a tilted line may leave the
    picture at its side, so its cover counts the picture it crosses. Each band is replaced by
    the lesser of the ink just above and just below it (left and right), so a stroke that
    crosses the line stays whole and the line between strokes goes."""
    outs = [ink.copy() for ink in inks]
    tilt = 0.0  # the rows' lines'
    for axis in (0, 1):  # 0: horizontal lines (rows); 1: vertical lines (columns)
        views = [out if axis == 0 else out.T for out in outs]
        # A page's lines are square to each other: a margin line leans as the rows do (the
        # other way, in the transposed view), and is looked for there first.
        for square in ([-tilt] if axis == 1 and tilt else []) + [None]:
            degrees = _line_tilt(views[0] > _line_level(views[0])) if square is None else square
            for view in views:
                _remove_level_lines(view, _moves(view.shape[1], degrees))
            tilt = degrees if axis == 0 else tilt
    return outs


def _line_level(view: np.ndarray) -> float:
    return max(MIN_CONTRAST / 2, LINE_LEVEL * float(view.max()))


def _remove_level_lines(view: np.ndarray, shift: np.ndarray) -> None:
    """remove_lines for one axis of one picture (in place), its columns moved down by `shift`."""
    level = _line_level(view)
    rows = np.arange(view.shape[0])[:, None] + shift[None, :]  # where each pixel goes
    columns = np.arange(view.shape[1])[None, :]
    levelled = np.zeros((view.shape[0] + int(shift.max()), view.shape[1]), view.dtype)
    levelled[rows, columns] = view
    for band in _bands(np.count_nonzero(levelled > level, axis=1), shift, view.shape[0]):
        top, bottom = max(band[0] - 1, 0), min(band[-1] + 2, len(levelled))  # and its blur
        above = levelled[top - 1] if top > 0 else np.zeros(view.shape[1], view.dtype)
        below = levelled[bottom] if bottom < len(levelled) else np.zeros_like(above)
        levelled[top:bottom] = np.minimum(above, below)
    view[...] = levelled[rows, columns]


def _moves(width: int, degrees: float) -> np.ndarray:
    """Rows to move each of `width` columns down by to level a line tilted `degrees`."""
    move = np.rint(-np.tan(np.radians(degrees)) * np.arange(width)).astype(int)
    return move - move.min()


def _line_tilt(inked: np.ndarray) -> float:
    """The tilt (degrees, up to LINE_TILT) of the printed lines of `inked`. Candidates: the tilt
    with the row that has the most ink more than the rows a little apart have (a thin line,
    not a dark band), every quarter degree, then every twentieth around the best, for a thin
    and a blurred line; of those and level, the one that finds the most lines across the
    picture (level when no tilt finds any)."""
    ys, xs = np.nonzero(inked)
    height, width = inked.shape

    def lines(moves: np.ndarray) -> int:
        counts = np.bincount(ys + moves[xs], minlength=height + int(moves.max()))
        return len(_bands(counts, moves, height))

    best = (lines(_moves(width, 0.0)), 0.0)
    step = max(1, len(ys) // 20_000)  # every step-th inked pixel is enough to find the tilt
    sampled_ys, sampled_xs = ys[::step], xs[::step]
    for apart in (max(3, int(0.01 * height)), max(6, int(0.02 * height))):

        def peak(degrees: float) -> int:  # the most ink on a row, more than `apart` rows away
            counts = np.bincount(sampled_ys + _moves(width, degrees)[sampled_xs])
            ridge = counts[apart:-apart] - np.maximum(counts[: -2 * apart], counts[2 * apart :])
            return int(ridge.max(initial=0))  # not at the edge: a shadow's, a bar the crop cut

        coarse = max(sorted(np.arange(-LINE_TILT, LINE_TILT + 0.125, 0.25), key=abs), key=peak)
        near = sorted(np.arange(-0.5, 0.525, 0.05), key=abs)  # the nearest to coarse first
        degrees = float(max((coarse + d for d in near), key=peak))
        # The peak may be a tenth of a degree off (a stroke along the line): a long line then
        # straddles two rows and no row is covered; of the nearest tilts, the one finding most.
        found, _, degrees = max(  # within 0.2 degrees, the nearest first
            (lines(_moves(width, degrees + d)), -abs(d), degrees + d) for d in near[:9]
        )
        if found > best[0] or (found and best[1] == 0.0):  # level's may be a dark band
            best = (found, degrees)
    return best[1]


def _bands(counts: np.ndarray, moves: np.ndarray, height: int) -> list[np.ndarray]:
    """The printed lines of a picture `height` tall whose columns were moved down by `moves`,
    from each row's `counts` of inked pixels: bands of rows inked across LINE_COVER of the
    picture they cross (at least LINE_SPAN of its width), at most LINE_WIDTH of its height thick
    (else a digit's bar), not mostly its top or bottom row (else a bar the crop cut: a 7's)."""
    size, width = len(counts), len(moves)
    crossed = np.cumsum(np.bincount(moves, minlength=size + height)[:size])
    crossed -= np.cumsum(np.bincount(moves + height, minlength=size + height)[:size])
    cover = np.where(crossed >= LINE_SPAN * width, counts / np.maximum(crossed, 1), 0.0)
    rows = np.flatnonzero(cover >= LINE_COVER)
    if rows.size == 0:
        return []
    thickest = max(2, int(LINE_WIDTH * height))
    bands = np.split(rows, np.flatnonzero(np.diff(rows) > 1) + 1)

    def at_edge(band: np.ndarray) -> bool:  # the picture's top or bottom row within a row of it
        top, bottom = moves, moves + height - 1  # where they went, column by column
        near = ((top >= band[0] - 1) & (top <= band[-1] + 1)).mean()
        return bool(max(near, ((bottom >= band[0] - 1) & (bottom <= band[-1] + 1)).mean()) >= 0.5)

    return [b for b in bands if len(b) <= thickest and not at_edge(b)]


def ink_of(gray: np.ndarray, source: str = "image") -> tuple[np.ndarray, np.ndarray]:
    """A grayscale picture (0-255) -> its ink, light on dark (0 = paper), printed lines removed;
    and the same smoothed a little, to decide where the strokes are without the sensor's noise.

    Raises NoDigit when there is too little contrast for a digit (a blank page)."""
    from scipy import ndimage

    gray = np.asarray(gray, dtype=np.float32)  # Pillow's "F" pictures are float32 (not float64)
    smooth = ndimage.gaussian_filter(gray, SMOOTH)
    if not ink_is_dark(smooth):  # MNIST digits are light on dark: the ink is what stands out
        gray, smooth = 255.0 - gray, 255.0 - smooth
    paper = paper_level(smooth)
    # Light multiplies: in a shadow the ink is as much fainter as the paper is darker. Dividing
    # by the paper's level (as the best-lit paper) gives the strokes one strength across the page.
    gain = np.clip(paper.max() / np.maximum(paper, 1.0), 1.0, MAX_GAIN)
    ink, smooth_ink = remove_lines(np.clip(paper - gray, 0, None), np.clip(paper - smooth, 0, None))
    ink *= gain
    residual = gray - smooth  # the sensor's (or paper's) noise, and the strokes' edges
    noise = 1.4826 * float(np.median(np.abs(residual - np.median(residual))))
    if smooth_ink.max() < max(MIN_CONTRAST, NOISE_MARGIN * noise):  # before the light is evened
        raise NoDigit(
            f"{source}: no digit found (the picture is blank or has too little "
            "contrast); expected a dark digit on light paper, or light on dark"
        )
    return ink.astype(np.float32), (smooth_ink * gain).astype(np.float32)


def centre_digit(ink: np.ndarray) -> np.ndarray:
    """The MNIST recipe for a digit's ink (light on dark, 0 elsewhere): cropped to it, scaled
    to fit 20x20 keeping its aspect ratio (hairlines widened first: _thickened), centre of mass
    at the centre of 28x28, in [0, 1]."""
    from PIL import Image

    ink = _thickened(_cropped(ink.astype(np.float32)))
    height, width = ink.shape
    scale = 20.0 / max(height, width)
    size = (max(1, round(width * scale)), max(1, round(height * scale)))
    small = np.asarray(Image.fromarray(ink, mode="F").resize(size, Image.Resampling.LANCZOS))
    small = np.clip(small, 0, None)

    total = small.sum()
    ys, xs = np.indices(small.shape)
    cy, cx = (ys * small).sum() / total, (xs * small).sum() / total
    top = int(np.clip(round(14 - cy), 0, 28 - small.shape[0]))
    left = int(np.clip(round(14 - cx), 0, 28 - small.shape[1]))
    canvas = np.zeros((28, 28), dtype=np.float32)
    canvas[top : top + small.shape[0], left : left + small.shape[1]] = small
    return canvas / canvas.max()


def _cropped(ink: np.ndarray) -> np.ndarray:
    rows, cols = np.nonzero(ink)
    return ink[rows.min() : rows.max() + 1, cols.min() : cols.max() + 1]


def _thickened(ink: np.ndarray) -> np.ndarray:
    """`ink` (cropped) with its strokes widened to THINNEST pixels once it is fit in 20x20 (PEN
    for hairlines), if they would be thinner: a fine pen on a large picture shrinks to hairlines
    MNIST's strokes never are. The pen is widened before the box is taken, as MNIST's box holds
    its pen: the digit's middle line then spans what it spans in MNIST, not the whole 20 pixels."""
    from scipy import ndimage

    side = max(ink.shape)
    width = stroke_width(ink > 0.5 * ink.max()) * 20.0 / side  # once fit in 20x20
    if width >= THINNEST:
        return ink
    target = PEN if width < HAIRLINE else THINNEST
    # Widened by `grow` pixels, the digit is side + grow long and its strokes
    # (width * side / 20 + grow) wide: solved for strokes `target` wide at 20x20.
    grow = int(round(side * (target - width) / (20.0 - target)))
    if grow < 2:
        return ink
    return _cropped(ndimage.grey_dilation(np.pad(ink, grow // 2 + 1), size=(grow, grow)))


def stroke_width(strokes: np.ndarray) -> float:
    """How wide the strokes of a boolean picture are, in pixels: twice the 90th percentile of
    their pixels' distance to the paper (a stroke's middle, not its ends and joins)."""
    from scipy import ndimage

    return 2 * float(np.percentile(ndimage.distance_transform_edt(strokes)[strokes], 90))


def to_mnist(gray: np.ndarray, source: str = "image") -> np.ndarray:
    """A grayscale picture (0-255) -> a 28x28 float32 digit in [0, 1], light on dark."""
    ink, smooth = ink_of(gray, source)
    return centre_digit(np.where(digit_mask(ink, source), ink, 0))


def load_digit(source: str | Path | bytes, name: str | None = None) -> np.ndarray:
    """Read a picture (a path, or an upload's bytes) and make it an MNIST-like 28x28 digit in [0, 1].

    `name` is what error messages call the picture: the path, or "upload" for bytes, by default.
    """
    if name is None:
        name = "upload" if isinstance(source, (bytes, bytearray, memoryview)) else str(source)
    return to_mnist(read_grayscale(source, name), source=name)


def digit_png(digit: np.ndarray) -> bytes:
    """The 28x28 input as the model saw it (white digit on black), as PNG bytes."""

    from PIL import Image

    buffer = io.BytesIO()
    Image.fromarray((np.clip(digit, 0, 1) * 255).round().astype(np.uint8), "L").save(buffer, "PNG")
    return buffer.getvalue()


def save_digit_png(digit: np.ndarray, path: str | Path) -> Path:
    """The 28x28 input as the model saw it, written to `path` as a PNG."""
    return files.write_bytes(path, digit_png(digit))
