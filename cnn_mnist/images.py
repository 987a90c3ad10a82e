"""Your own pictures of digits, made into MNIST-like inputs the way MNIST itself was made.

grayscale -> light digit on dark (inverted when the background is light) -> background level
removed -> cropped to the digit's strokes (connected components above a threshold chosen from
the picture, so specks of dust or paper grain far from the digit are left out) -> scaled to fit a
20x20 box, keeping the aspect ratio -> placed in 28x28 so its centre of mass is at the centre ->
scaled to [0, 1].
One implementation for files and for uploaded bytes (`load_digit` takes either).
No TensorFlow here: pictures are checked before the model is loaded.
"""

from __future__ import annotations

import re
import warnings
from pathlib import Path

import numpy as np

from cnn_mnist.errors import CnnError


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
MIN_CONTRAST = 40  # of 255: less than this between paper and ink is a blank picture
INK_FRACTION = 0.25  # pixels fainter than this fraction of the darkest ink are paper noise
MIN_DIGIT_SIDE = 10  # pixels: when the largest dark part is smaller than this, or than
MIN_DIGIT_RATIO = 0.02  # this fraction of the picture's longer side, there are only specks
NEAR_FRACTION = 0.25  # parts this close to the digit (x its longer side) belong to it, like an i's dot
PART_FRACTION = 0.05  # ... unless they are smaller than this fraction of the digit's largest stroke
LARGE_FRACTION = 0.25  # parts at least this fraction of the largest stroke belong to it wherever they are


def read_grayscale(source: str | Path | bytes, name: str | None = None) -> np.ndarray:
    """Any image Pillow reads (PNG, JPEG, ...) as float32 0-255 luminance, upright.

    `source` is a path or the file's bytes (an upload); `name` is what messages call it
    (the path, or "upload" for bytes, by default).
    """
    import io

    from PIL import Image, ImageOps, UnidentifiedImageError

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
            image = Image.open(file)  # reads the header only: nothing is decoded yet
        with image:
            _check_size(image.size, name)
            image = ImageOps.exif_transpose(image)  # phone photos carry their rotation in EXIF
            image.thumbnail((MAX_SIDE, MAX_SIDE))
            if image.mode in ("RGBA", "LA", "PA") or "transparency" in image.info:
                image = _flatten_alpha(image.convert("RGBA"))
            return np.asarray(image.convert("L"), dtype=np.float32)
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
        # Over Pillow's own limit (179 megapixels), Image.open refuses before we see the size.
        found = re.search(r"\((\d+) pixels\)", str(exc))
        size = f"{int(found.group(1)) / 1e6:.0f} megapixels" if found else "too many pixels"
        raise PictureTooLarge(_too_large(name, size)) from None
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as exc:
        raise NotAPicture(f"{name}: not an image Pillow can read ({type(exc).__name__}); "
                         "expected a PNG or JPEG picture of a digit") from None


def _check_size(size: tuple[int, int], name: str) -> None:
    width, height = size
    if width * height > MAX_PIXELS:
        raise PictureTooLarge(_too_large(name, f"{width}x{height} = {width * height / 1e6:.0f} megapixels"))


def _too_large(name: str, size: str) -> str:
    return (f"{name}: picture too large to read ({size}); the limit is "
            f"{MAX_PIXELS / 1e6:.0f} megapixels: shrink it, e.g. to {MAX_SIDE} pixels on the longer side")


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

    Strokes are the connected parts above a threshold chosen from the picture (Otsu's, and at
    least INK_FRACTION of the darkest ink). The largest part is the digit; other parts belong to
    it when they are large, or near it and not tiny (a 5's detached bar, an i's dot). The mask
    then takes in each kept stroke's fainter edge, down to INK_FRACTION (hysteresis).
    """
    from scipy import ndimage

    faint = INK_FRACTION * ink.max()
    strong, count = ndimage.label(ink > max(otsu_threshold(ink), faint, MIN_CONTRAST / 2),
                                  structure=np.ones((3, 3)))
    sizes = np.bincount(strong.ravel())[1:]
    boxes = ndimage.find_objects(strong)
    largest = int(np.argmax(sizes))
    box = boxes[largest]
    side = max(s.stop - s.start for s in box)
    min_side = max(MIN_DIGIT_SIDE, MIN_DIGIT_RATIO * max(ink.shape))
    if side < min_side:
        raise NoDigit(f"{source}: no digit found, only specks or dust; expected a digit at least "
                         f"{MIN_DIGIT_RATIO:.0%} of the picture's size (and {MIN_DIGIT_SIDE} pixels) tall, "
                         "dark on light or light on dark: crop the picture closer around it")

    # Parts that belong to the digit: large ones anywhere, and others not tiny within a margin of
    # the large ones' box. The box does not grow with what it takes in, so specks cannot chain.
    starts = np.array([[rows.start, cols.start] for rows, cols in boxes])
    stops = np.array([[rows.stop, cols.stop] for rows, cols in boxes])
    keep = sizes >= LARGE_FRACTION * sizes[largest]
    low, high = starts[keep].min(axis=0), stops[keep].max(axis=0)
    margin = NEAR_FRACTION * side
    near = np.all((starts < high + margin) & (stops > low - margin), axis=1)
    keep |= near & (sizes >= PART_FRACTION * sizes[largest])

    weak, _ = ndimage.label(ink >= faint, structure=np.ones((3, 3)))
    touched = np.unique(weak[np.concatenate([[False], keep])[strong]])
    return np.isin(weak, touched[touched > 0])


def to_mnist(gray: np.ndarray, source: str = "image") -> np.ndarray:
    """A grayscale picture (0-255) -> a 28x28 float32 digit in [0, 1], light on dark."""
    from PIL import Image

    border = np.concatenate([gray[0], gray[-1], gray[:, 0], gray[:, -1]])
    if np.median(border) > 127:  # light paper: MNIST digits are light on dark
        gray, border = 255.0 - gray, 255.0 - border
    paper = np.percentile(border, 90)  # the background level, above most of the paper's noise
    ink = np.clip(gray - paper, 0, None)
    if ink.max() < MIN_CONTRAST:
        raise NoDigit(f"{source}: no digit found (the picture is blank or has too little "
                         "contrast); expected a dark digit on light paper, or light on dark")
    ink = np.where(digit_mask(ink, source), ink, 0).astype(np.float32)
    rows, cols = np.nonzero(ink)
    ink = ink[rows.min(): rows.max() + 1, cols.min(): cols.max() + 1]

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
    canvas[top: top + small.shape[0], left: left + small.shape[1]] = small
    return canvas / canvas.max()


def load_digit(source: str | Path | bytes, name: str | None = None) -> np.ndarray:
    """Read a picture (a path, or an upload's bytes) and make it an MNIST-like 28x28 digit in [0, 1].

    `name` is what error messages call the picture: the path, or "upload" for bytes, by default.
    """
    if name is None:
        name = "upload" if isinstance(source, (bytes, bytearray, memoryview)) else str(source)
    return to_mnist(read_grayscale(source, name), source=name)


def save_digit_png(digit: np.ndarray, path: str | Path) -> Path:
    """The 28x28 input as the model saw it (white digit on black), as a PNG."""
    import io

    from PIL import Image

    from cnn_mnist import files

    buffer = io.BytesIO()
    Image.fromarray((np.clip(digit, 0, 1) * 255).round().astype(np.uint8), "L").save(buffer, "PNG")
    return files.write_bytes(path, buffer.getvalue())
