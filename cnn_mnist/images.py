"""Your own pictures of digits, made into MNIST-like inputs the way MNIST itself was made.

grayscale -> light digit on dark (inverted when the background is light) -> background level
removed -> cropped to the digit -> scaled to fit a 20x20 box, keeping the aspect ratio -> placed
in 28x28 so its centre of mass is at the centre -> scaled to [0, 1].
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


MAX_PIXELS = 40_000_000  # width x height; larger pictures are refused before they are decoded
MAX_SIDE = 1024  # larger photos are shrunk first: the digit ends up 20 pixels tall anyway
MIN_CONTRAST = 40  # of 255: less than this between paper and ink is a blank picture
INK_FRACTION = 0.25  # pixels fainter than this fraction of the darkest ink are paper noise


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
        raise ImageError(_too_large(name, size)) from None
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as exc:
        raise ImageError(f"{name}: not an image Pillow can read ({type(exc).__name__}); "
                         "expected a PNG or JPEG picture of a digit") from None


def _check_size(size: tuple[int, int], name: str) -> None:
    width, height = size
    if width * height > MAX_PIXELS:
        raise ImageError(_too_large(name, f"{width}x{height} = {width * height / 1e6:.0f} megapixels"))


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


def to_mnist(gray: np.ndarray, source: str = "image") -> np.ndarray:
    """A grayscale picture (0-255) -> a 28x28 float32 digit in [0, 1], light on dark."""
    from PIL import Image

    border = np.concatenate([gray[0], gray[-1], gray[:, 0], gray[:, -1]])
    if np.median(border) > 127:  # light paper: MNIST digits are light on dark
        gray, border = 255.0 - gray, 255.0 - border
    paper = np.percentile(border, 90)  # the background level, above most of the paper's noise
    ink = np.clip(gray - paper, 0, None)
    if ink.max() < MIN_CONTRAST:
        raise ImageError(f"{source}: no digit found (the picture is blank or has too little "
                         "contrast); expected a dark digit on light paper, or light on dark")
    ink[ink < INK_FRACTION * ink.max()] = 0
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
