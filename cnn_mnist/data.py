"""Stage 1: load MNIST and prepare it for the network.

MNIST comes from, in order: an explicit path (`--data`, `data.path`), `$CNN_MNIST_DATA`, or
Keras's own download-and-cache (`keras.datasets.mnist.load_data()`). A path is a folder with the
four original IDX files (gzipped or raw) or an `.npz` with x_train, y_train, x_test, y_test.
Every file is validated: magic number, dimensions, size, label range.
"""

from __future__ import annotations

import gzip
import os
import struct
import zlib
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from cnn_mnist.errors import DataError
from cnn_mnist.files import sha256

ENV_VAR = "CNN_MNIST_DATA"
NUM_CLASSES = 10
IMAGE_MAGIC, LABEL_MAGIC = 0x00000803, 0x00000801

# The four files of the MNIST distribution, by role.
IDX_FILES = {
    "x_train": "train-images-idx3-ubyte",
    "y_train": "train-labels-idx1-ubyte",
    "x_test": "t10k-images-idx3-ubyte",
    "y_test": "t10k-labels-idx1-ubyte",
}
# SHA-256 of the original files, gzipped and raw: a file with a standard name and the full
# record count claims to be MNIST, so it must be the real thing.
KNOWN_SHA256 = {
    "train-images-idx3-ubyte.gz": "0b367032e93c5d0cea0925647cfdb18614af8ee15f83e6f2fc2ad904a6835971",
    "train-labels-idx1-ubyte.gz": "1787548bbe0bff1ec2ecdc0ef292b02df999e2d1a6002d27500982c652b17203",
    "t10k-images-idx3-ubyte.gz": "1a1a05eab793c14bb050b398624a11b0ffd1a2953baed553b1b9bd079e2a20be",
    "t10k-labels-idx1-ubyte.gz": "b91679a0acfe4ba0e50a2437a903084cba1f5f92592b016a25a7dfd00455798b",
    "train-images-idx3-ubyte": "ba891046e6505d7aadcbbe25680a0738ad16aec93bde7f9b65e87a2fc25776db",
    "train-labels-idx1-ubyte": "65a50cbbf4e906d70832878ad85ccda5333a97f0f4c3dd2ef09a8a9eef7101c5",
    "t10k-images-idx3-ubyte": "0fa7898d509279e482958e8ce81c8e77db3f2f8254e26661ceb7762c4d494ce7",
    "t10k-labels-idx1-ubyte": "ff7bcfd416de33731a308c3f266cc351222c34898ecbeaf847f06e48f7ec33f2",
}
FULL_COUNTS = {"x_train": 60000, "y_train": 60000, "x_test": 10000, "y_test": 10000}

HOW_TO_GET = (
    "download the four MNIST files (train-images-idx3-ubyte.gz, train-labels-idx1-ubyte.gz, "
    "t10k-images-idx3-ubyte.gz, t10k-labels-idx1-ubyte.gz) into a folder and pass it with "
    f"--data PATH or set {ENV_VAR}=PATH"
)


@dataclass
class Mnist:
    """The raw arrays: uint8 images (N, 28, 28) and uint8 labels (N,), plus where they came from."""

    x_train: np.ndarray
    y_train: np.ndarray
    x_test: np.ndarray
    y_test: np.ndarray
    source: str
    sha256: dict[str, str] = field(default_factory=dict)


@dataclass
class Prepared:
    """A slice of MNIST ready for the network.

    The images stay uint8 (47 MB for the training set, not 188 MB as float32); `x_*` and `y_*`
    give the network's view: float32 (N, 28, 28, 1), scaled if `normalize`, and one-hot labels.
    """

    images_train: np.ndarray
    labels_train: np.ndarray
    images_test: np.ndarray
    labels_test: np.ndarray
    normalize: bool = True

    @property
    def x_train(self) -> np.ndarray:
        return prepare_images(self.images_train, self.normalize)

    @property
    def y_train(self) -> np.ndarray:
        return one_hot(self.labels_train)

    @property
    def x_test(self) -> np.ndarray:
        return prepare_images(self.images_test, self.normalize)

    @property
    def y_test(self) -> np.ndarray:
        return one_hot(self.labels_test)


def read_idx(path: str | Path, magic: int | None = None) -> np.ndarray:
    """Read one IDX file (gzipped or raw) of unsigned bytes into an array of its dimensions."""
    path = Path(path)
    try:
        raw = gzip.decompress(path.read_bytes()) if path.suffix == ".gz" else path.read_bytes()
    except (OSError, EOFError, zlib.error) as exc:
        raise DataError(f"{path}: cannot read ({exc}); the file is truncated or corrupt, "
                        "download it again") from None
    if len(raw) < 4:
        raise DataError(f"{path}: {len(raw)} bytes, too short for an IDX header; "
                        "the file is truncated, download it again")
    found = struct.unpack(">I", raw[:4])[0]
    ndim = found & 0xFF
    if found >> 8 != 0x08 or (magic is not None and found != magic):
        expected = f"0x{magic:08X}" if magic is not None else "0x000008NN (unsigned bytes)"
        raise DataError(f"{path}: not an MNIST IDX file of this kind (magic number 0x{found:08X}, "
                        f"expected {expected})")
    header = 4 + 4 * ndim
    if len(raw) < header:
        raise DataError(f"{path}: header cut short; the file is truncated, download it again")
    dims = struct.unpack(f">{ndim}I", raw[4:header])
    expected_size = header + int(np.prod(dims, dtype=np.int64))
    if len(raw) != expected_size:
        raise DataError(f"{path}: {len(raw):,} bytes, but its header ({'x'.join(map(str, dims))}) "
                        f"needs {expected_size:,}; the file is truncated or corrupt, download it again")
    return np.frombuffer(raw, dtype=np.uint8, offset=header).reshape(dims)


def _find_idx(folder: Path, stem: str) -> Path:
    for name in (stem + ".gz", stem, stem.replace("-idx", ".idx")):  # the last: a common rename
        if (folder / name).is_file():
            return folder / name
    raise DataError(f"{folder}: no {stem}.gz (or raw {stem}) here; expected the four MNIST "
                    f"IDX files. To fix: {HOW_TO_GET}")


def _empty_split() -> dict[str, np.ndarray]:
    return {"x_train": np.zeros((0, 28, 28), np.uint8), "y_train": np.zeros((0,), np.uint8)}


def load_idx_folder(folder: Path, test_only: bool = False) -> Mnist:
    """Load the IDX files from a folder, verifying checksums of the standard files."""
    arrays, sums, paths = (_empty_split() if test_only else {}), {}, {}
    for role, stem in IDX_FILES.items():
        if test_only and role.endswith("train"):
            continue
        path = _find_idx(folder, stem)
        array = read_idx(path, IMAGE_MAGIC if role.startswith("x") else LABEL_MAGIC)
        sums[path.name] = sha256(path)
        known = KNOWN_SHA256.get(path.name)
        if known and len(array) == FULL_COUNTS[role] and sums[path.name] != known:
            raise DataError(f"{path}: checksum does not match the original MNIST file "
                            f"(sha256 {sums[path.name][:12]}..., expected {known[:12]}...); "
                            "it is corrupt or altered, download it again")
        arrays[role] = array
        paths[role] = path
    for split in ("train", "test"):
        images, labels = f"x_{split}", f"y_{split}"
        if images in paths and len(arrays[images]) != len(arrays[labels]):
            raise DataError(f"{paths[labels]}: {len(arrays[labels]):,} labels for "
                            f"{len(arrays[images]):,} images in {paths[images].name}; expected one "
                            "label per image (a file from another set, or cut short)")
    return Mnist(**arrays, source=str(folder), sha256=sums)


def load_npz(path: Path) -> Mnist:
    """Load an .npz with x_train, y_train, x_test, y_test (the layout of Keras's mnist.npz)."""
    try:
        with np.load(path, allow_pickle=False) as npz:
            missing = [k for k in IDX_FILES if k not in npz.files]
            if missing:
                raise DataError(f"{path}: missing arrays {', '.join(missing)}; expected "
                                f"x_train, y_train, x_test, y_test (found: {', '.join(npz.files)})")
            arrays = {k: npz[k] for k in IDX_FILES}
    except DataError:
        raise
    except Exception as exc:  # zipfile.BadZipFile, ValueError, OSError, EOFError...
        raise DataError(f"{path}: not a readable .npz file ({exc}); download it again") from None
    return Mnist(**arrays, source=str(path), sha256={path.name: sha256(path)})


def load_keras() -> Mnist:
    """Keras's download-and-cache (~/.keras/datasets/mnist.npz, its checksum verified by Keras)."""
    from keras.datasets import mnist

    try:
        (x_train, y_train), (x_test, y_test) = mnist.load_data()
    except Exception as exc:  # Keras raises a bare Exception on a failed download
        reason = (str(exc).splitlines() or [type(exc).__name__])[0].split(" -- ")[-1]
        raise DataError(f"could not download MNIST ({reason}).\n"
                        f"Offline? {HOW_TO_GET[0].upper()}{HOW_TO_GET[1:]}.") from None
    cache = Path(os.environ.get("KERAS_HOME", Path.home() / ".keras")) / "datasets" / "mnist.npz"
    return Mnist(x_train, y_train, x_test, y_test, source=f"keras.datasets.mnist ({cache})")


def check(mnist: Mnist) -> Mnist:
    """Shapes, dtypes, matching counts and labels 0-9, naming the source on failure."""
    for split in ("train", "test"):
        x, y = getattr(mnist, f"x_{split}"), getattr(mnist, f"y_{split}")
        if x.ndim != 3 or x.shape[1:] != (28, 28):
            raise DataError(f"{mnist.source}: x_{split} has shape {x.shape}, expected (N, 28, 28)")
        if y.ndim != 1 or len(y) != len(x):
            raise DataError(f"{mnist.source}: {len(x):,} {split} images but y_{split} has shape "
                            f"{y.shape}; expected one label per image")
        if len(y) and (y.min() < 0 or y.max() >= NUM_CLASSES):
            raise DataError(f"{mnist.source}: y_{split} has labels from {y.min()} to {y.max()}, "
                            "expected digits 0-9")
        if x.dtype != np.uint8 and len(x) and (x.min() < 0 or x.max() > 255):
            raise DataError(f"{mnist.source}: x_{split} has pixel values outside 0-255")
    return mnist


def resolve_path(path: str | Path | None) -> Path | None:
    """The explicit path, else $CNN_MNIST_DATA, else None (meaning: Keras's download)."""
    chosen = path or os.environ.get(ENV_VAR) or None
    return Path(chosen).expanduser() if chosen else None


def load_mnist(path: str | Path | None = None, test_only: bool = False) -> Mnist:
    """Load and validate MNIST from `path`, $CNN_MNIST_DATA, or Keras's cache (in that order).

    `test_only` skips reading the training files where it can (for predict and evaluate).
    """
    where = resolve_path(path)
    if where is None:
        return check(load_keras())
    if where.is_dir():
        return check(load_idx_folder(where, test_only))
    if where.is_file() and where.suffix == ".npz":
        return check(load_npz(where))
    if where.exists():
        raise DataError(f"{where}: expected a folder of the four MNIST IDX files or an .npz file")
    source = "--data/data.path" if path else ENV_VAR
    relative = "" if where.is_absolute() else f", relative to the current folder {Path.cwd()}"
    raise DataError(f"{where}: no such file or folder (from {source}{relative}). "
                    f"To fix: {HOW_TO_GET}")


def one_hot(labels: np.ndarray, num_classes: int = NUM_CLASSES) -> np.ndarray:
    """Labels as one-hot rows, like keras.utils.to_categorical (no TensorFlow needed here)."""
    return np.eye(num_classes, dtype=np.float32)[labels]


def prepare_images(images: np.ndarray, normalize: bool = True) -> np.ndarray:
    """(N, 28, 28) uint8 -> (N, 28, 28, 1) float32, scaled to [0, 1] if `normalize`."""
    x = images.reshape(len(images), 28, 28, 1).astype(np.float32)
    return x / np.float32(255.0) if normalize else x


def prepare(mnist: Mnist, normalize: bool = True, limit_train: int | None = None,
            limit_test: int | None = None) -> Prepared:
    """Optionally take the first N images; the network's view is made batch by batch."""
    return Prepared(
        images_train=mnist.x_train[:limit_train],
        labels_train=mnist.y_train[:limit_train].astype(np.int64),
        images_test=mnist.x_test[:limit_test],
        labels_test=mnist.y_test[:limit_test].astype(np.int64),
        normalize=normalize,
    )
