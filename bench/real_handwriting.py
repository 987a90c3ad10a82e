"""Probe: real handwriting, not MNIST, read as `cnn predict --image` reads it.

    pip install scikit-learn   # its load_digits ships the data; not a dependency of cnn-mnist
    python bench/real_handwriting.py [--model M.h5 ...] [--count 1797]

scikit-learn's `load_digits` is UCI's optdigits: 1,797 digits written by 43 people on NIST's
forms, each cut to its box (so it fills its picture), kept as 8x8 counts of a 32x32 bitmap.
Each is made into a scan: upscaled to 96x96, blurred, dark ink on white paper with the
sensor's noise, as an 8-bit PNG. Every model named is read two ways: through
`cnn_mnist.analysis.images.load_digit` (`cnn predict --image`'s path) and through the plain MNIST
recipe (background taken away, fit in 20x20, centre of mass in 28x28). Deterministic.
"""

from __future__ import annotations

import argparse
import io
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # this repository's library


def picture(counts: np.ndarray, rng, side: int = 96) -> bytes:
    """An 8x8 optdigits digit (counts 0-16) as a scanned picture's PNG bytes."""
    from PIL import Image
    from scipy import ndimage

    ink = Image.fromarray((counts / 16.0).astype(np.float32), "F")
    big = np.asarray(ink.resize((side, side), Image.Resampling.BICUBIC))
    big = np.clip(ndimage.gaussian_filter(big, side / 64), 0, 1)
    paper, dark = rng.uniform(225, 250), rng.uniform(10, 50)
    pixels = paper * (1 - big) + dark * big + rng.normal(0, 3, big.shape)
    buffer = io.BytesIO()
    Image.fromarray(np.clip(np.round(pixels), 0, 255).astype(np.uint8)).save(buffer, "PNG")
    return buffer.getvalue()


def plain(data: bytes) -> np.ndarray:
    """The plain MNIST recipe, for comparison: the paper's level taken away, then centred."""
    from PIL import Image

    from cnn_mnist.analysis import images

    ink = 255 - np.asarray(Image.open(io.BytesIO(data)).convert("L"), dtype=np.float32)
    ink = np.clip(ink - np.percentile(ink, 5), 0, None)
    ink[ink < 0.1 * ink.max()] = 0
    return images.centre_digit(ink)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--model", nargs="+", default=["models/digits_recognition_cnn.h5"])
    parser.add_argument("--count", type=int, default=1797, help="digits (default all 1,797)")
    args = parser.parse_args()
    try:
        from sklearn.datasets import load_digits
    except ImportError:
        sys.exit("this probe reads scikit-learn's load_digits: pip install scikit-learn")
    from cnn_mnist.analysis import images
    from cnn_mnist.stages.handle import open_saved
    from cnn_mnist.tools.predict import probabilities

    data = load_digits()
    chosen = np.random.default_rng(0).choice(len(data.images), args.count, replace=False)
    pictures = [picture(data.images[i], np.random.default_rng(int(i))) for i in chosen]
    ours = np.stack([images.load_digit(p) for p in pictures])  # raises if one is refused
    base = np.stack([plain(p) for p in pictures])
    truth = data.target[chosen]
    print(f"{args.count} optdigits digits (43 writers) as scans\n")
    print("| model | read by `--image` | plain MNIST recipe |\n| --- | --- | --- |")
    for path in args.model:
        saved = open_saved(path)
        model, _ = saved.predictor()
        normalize = saved.normalize
        read = probabilities(model, ours, normalize).argmax(axis=1)
        recipe = probabilities(model, base, normalize).argmax(axis=1)
        print(f"| {path} | {np.mean(read == truth):.1%} | {np.mean(recipe == truth):.1%} |")


if __name__ == "__main__":
    main()
