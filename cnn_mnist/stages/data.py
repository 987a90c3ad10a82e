"""Step 2: load the dataset (MNIST by default) and prepare it for the network.

`data.dataset` says which: mnist, fashion_mnist or custom (any 28x28 ten-class set). The data
comes from, in order: an explicit path (`--data`, `data.path`), the dataset's environment
variable ($CNN_MNIST_DATA, $CNN_FASHION_DATA), or Keras's own download-and-cache
(`keras.datasets.mnist`, `keras.datasets.fashion_mnist`). A path is a folder with the four IDX
files (gzipped or raw) or an `.npz` with x_train, y_train, x_test, y_test. Every file is
validated: magic number, dimensions, size, label range; a known dataset's files also by the
checksum of their content (see datasets.py), and files of another known dataset are named.
"""

from __future__ import annotations

import gzip
import hashlib
import logging
import os
import struct
import zlib
from collections.abc import Set
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from cnn_mnist.core import datasets
from cnn_mnist.core.datasets import ENV_VARS, KNOWN, TITLES, KnownFile
from cnn_mnist.core.errors import CnnError, DataError, WrongDataset
from cnn_mnist.core.files import sha256
from cnn_mnist.core.runtime import import_tensorflow

if TYPE_CHECKING:
    from cnn_mnist.config.schema import AugmentConfig

log = logging.getLogger(__name__)


class BadIndex(CnnError):
    """An --index that is not a number, negative, or past the end of the test set."""

    exit_code = 2


def check_indices(indices: list[int], count: int) -> None:
    """Every index within the test set: 0 to count - 1."""
    for index in indices:
        if not 0 <= index < count:
            raise BadIndex(
                f"--index {index} is out of range: the test set has {count:,} "
                f"images, so valid indices are 0 to {count - 1}"
            )


ENV_VAR = ENV_VARS["mnist"]
NUM_CLASSES = 10
IMAGE_MAGIC, LABEL_MAGIC = 0x00000803, 0x00000801

# The four files of the MNIST distribution, by role.
IDX_FILES = {
    "x_train": "train-images-idx3-ubyte",
    "y_train": "train-labels-idx1-ubyte",
    "x_test": "t10k-images-idx3-ubyte",
    "y_test": "t10k-labels-idx1-ubyte",
}
# SHA-256 of the original MNIST files, gzipped and raw (the raw ones are the content checksums
# in datasets.KNOWN, which is what is checked).
KNOWN_SHA256 = {
    **{f"{stem}.gz": spec.published[0] for stem, spec in KNOWN["mnist"].items()},
    **{stem: spec.sha256 for stem, spec in KNOWN["mnist"].items()},
}

HOW_TO_GET = (
    "download the four MNIST files (train-images-idx3-ubyte.gz, train-labels-idx1-ubyte.gz, "
    "t10k-images-idx3-ubyte.gz, t10k-labels-idx1-ubyte.gz) into a folder and pass it with "
    f"--data PATH or set {ENV_VAR}=PATH"
)
HOW_TO_GET_OTHER = {
    "fashion_mnist": "get Fashion-MNIST's four files (train-images-idx3-ubyte.gz, ...; on Debian "
    "`apt-get install dataset-fashion-mnist` puts them in "
    "/usr/share/datasets/fashion-mnist) and pass the folder with --data PATH or "
    f"set {ENV_VARS['fashion_mnist']}=PATH",
    "custom": "pass a folder of the four IDX files (train-images-idx3-ubyte.gz, ...) or an .npz "
    "with x_train, y_train, x_test, y_test with --data PATH (or data.path)",
}


def how_to_get(dataset: str = "mnist") -> str:
    """What to do to get `dataset`'s files."""
    return HOW_TO_GET_OTHER.get(dataset, HOW_TO_GET)


@dataclass
class Mnist:
    """The raw arrays: uint8 images (N, 28, 28) and uint8 labels (N,), plus where they came from."""

    x_train: np.ndarray
    y_train: np.ndarray
    x_test: np.ndarray
    y_test: np.ndarray
    source: str
    sha256: dict[str, str] = field(default_factory=dict)  # of each file as it is on disk
    dataset: str = "mnist"  # what data.dataset said, verified by checksum where it can be


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
    # data.augment: applied to the training batches as they are made (train.make_dataset).
    augment: "AugmentConfig | None" = None

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
    return parse_idx(idx_bytes(path)[0], path, magic)


def idx_bytes(path: str | Path) -> tuple[bytes, bytes]:
    """(the IDX bytes, the file's own bytes): the same unless the file is a .gz."""
    path = Path(path)
    try:
        data = path.read_bytes()
        return (gzip.decompress(data) if path.suffix == ".gz" else data), data
    except (OSError, EOFError, zlib.error) as exc:
        raise DataError(
            f"{path}: cannot read ({exc}); the file is truncated or corrupt, download it again"
        ) from None


def parse_idx(raw: bytes, path: str | Path, magic: int | None = None) -> np.ndarray:
    """The array in an IDX file's bytes, its header checked against its size."""
    if len(raw) < 4:
        raise DataError(
            f"{path}: {len(raw)} bytes, too short for an IDX header; "
            "the file is truncated, download it again"
        )
    found = struct.unpack(">I", raw[:4])[0]
    ndim = found & 0xFF
    if found >> 8 != 0x08 or (magic is not None and found != magic):
        expected = f"0x{magic:08X}" if magic is not None else "0x000008NN (unsigned bytes)"
        raise DataError(
            f"{path}: not an MNIST IDX file of this kind (magic number 0x{found:08X}, "
            f"expected {expected})"
        )
    header = 4 + 4 * ndim
    if len(raw) < header:
        raise DataError(f"{path}: header cut short; the file is truncated, download it again")
    dims = struct.unpack(f">{ndim}I", raw[4:header])
    expected_size = header + int(np.prod(dims, dtype=np.int64))
    if len(raw) != expected_size:
        raise DataError(
            f"{path}: {len(raw):,} bytes, but its header ({'x'.join(map(str, dims))}) "
            f"needs {expected_size:,}; the file is truncated or corrupt, download it again"
        )
    return np.frombuffer(raw, dtype=np.uint8, offset=header).reshape(dims)


def to_idx(array: np.ndarray, magic: int) -> bytes:
    """An array as the bytes of an IDX file: the content a known dataset's checksum is of."""
    header = struct.pack(">I", magic) + struct.pack(f">{array.ndim}I", *array.shape)
    return header + np.ascontiguousarray(array, dtype=np.uint8).tobytes()


def verify(
    where: str | Path,
    stem: str,
    records: int,
    content_sha256: str,
    dataset: str,
    wrapper: Set[str] = frozenset(),
    known: dict[str, dict[str, KnownFile]] | None = None,
    required: bool = True,
) -> None:
    """Check one file's content against the known datasets' checksums.

    Images of another known dataset are named as such; labels are not: a set is a known one
    when its images are, and rotated, permuted or corrupted MNIST keeps MNIST's own labels. A
    file with the standard name and the
    full record count of the dataset asked for claims to be that dataset, so (if `required`)
    it must match its checksum; a slice or a custom set has no checksum to match.
    """
    known = KNOWN if known is None else known
    found = datasets.identify(stem, content_sha256, wrapper, known)
    if found is not None and found != dataset and "labels" not in stem:
        raise WrongDataset(
            f"{where}: this is {TITLES[found]} ({stem}, found by checksum), not "
            f"{TITLES[dataset]}: set data.dataset: {found} (or pass --dataset {found})",
            found=found,
            expected=dataset,
            where=str(where),
        )
    spec = known.get(dataset, {}).get(stem)
    if required and spec and records == spec.records and found != dataset:
        raise DataError(
            f"{where}: checksum does not match the original {TITLES[dataset]} file "
            f"(sha256 of its IDX data {content_sha256[:12]}..., expected "
            f"{spec.sha256[:12]}...); it is corrupt or altered, download it again"
        )


def _find_idx(folder: Path, stem: str, dataset: str = "mnist") -> Path:
    for name in (stem + ".gz", stem, stem.replace("-idx", ".idx")):  # the last: a common rename
        if (folder / name).is_file():
            return folder / name
    raise DataError(
        f"{folder}: no {stem}.gz (or raw {stem}) here; expected the four "
        f"{_title(dataset)}IDX files. To fix: {how_to_get(dataset)}"
    )


def _empty_split() -> dict[str, np.ndarray]:
    return {"x_train": np.zeros((0, 28, 28), np.uint8), "y_train": np.zeros((0,), np.uint8)}


def load_idx_folder(
    folder: Path,
    test_only: bool = False,
    dataset: str = "mnist",
    known: dict[str, dict[str, KnownFile]] | None = None,
) -> Mnist:
    """Load the IDX files from a folder, verifying a known dataset's files by their content."""
    arrays, sums, paths = (_empty_split() if test_only else {}), {}, {}
    for role, stem in IDX_FILES.items():
        if test_only and role.endswith("train"):
            continue
        path = _find_idx(folder, stem, dataset)
        raw, data = idx_bytes(path)
        array = parse_idx(raw, path, IMAGE_MAGIC if role.startswith("x") else LABEL_MAGIC)
        sums[path.name] = hashlib.sha256(data).hexdigest()
        # A .gz also by its own checksums: the authors publish those of their .gz files.
        wrapper = datasets.wrapper_digests(data) if data is not raw else set()
        verify(path, stem, len(array), hashlib.sha256(raw).hexdigest(), dataset, wrapper, known)
        arrays[role] = array
        paths[role] = path
    for split in ("train", "test"):
        images, labels = f"x_{split}", f"y_{split}"
        if images in paths and len(arrays[images]) != len(arrays[labels]):
            raise DataError(
                f"{paths[labels]}: {len(arrays[labels]):,} labels for "
                f"{len(arrays[images]):,} images in {paths[images].name}; expected one "
                "label per image (a file from another set, or cut short)"
            )
    return Mnist(**arrays, source=str(folder), sha256=sums, dataset=dataset)


def load_npz(
    path: Path, dataset: str = "mnist", known: dict[str, dict[str, KnownFile]] | None = None
) -> Mnist:
    """Load an .npz with x_train, y_train, x_test, y_test (the layout of Keras's mnist.npz);
    uint8 arrays are checked by content like IDX files."""
    try:
        with np.load(path, allow_pickle=False) as npz:
            missing = [k for k in IDX_FILES if k not in npz.files]
            if missing:
                raise DataError(
                    f"{path}: missing arrays {', '.join(missing)}; expected "
                    f"x_train, y_train, x_test, y_test (found: {', '.join(npz.files)})"
                )
            arrays = {k: npz[k] for k in IDX_FILES}
    except DataError:
        raise
    except Exception as exc:  # noqa: BLE001 - zipfile.BadZipFile, ValueError, OSError, EOFError...
        raise DataError(f"{path}: not a readable .npz file ({exc}); download it again") from None
    for role, array in arrays.items():
        if array.dtype == np.uint8 and array.ndim in (1, 3):
            content = to_idx(array, IMAGE_MAGIC if role.startswith("x") else LABEL_MAGIC)
            # An .npz of MNIST loads as before (Keras verifies its own mnist.npz); the other
            # known datasets publish no .npz, so a complete one must match their files' content.
            verify(
                f"{path} ({role})",
                IDX_FILES[role],
                len(array),
                hashlib.sha256(content).hexdigest(),
                dataset,
                known=known,
                required=dataset != "mnist",
            )
    return Mnist(**arrays, source=str(path), sha256={path.name: sha256(path)}, dataset=dataset)


def load_keras(
    dataset: str = "mnist", test_only: bool = False, cache_dir: str | Path | None = None
) -> Mnist:
    """Keras's download-and-cache: mnist.npz (its checksum verified by Keras), or
    Fashion-MNIST's four files (which Keras does not verify: they are checked here)."""
    import_tensorflow()  # quietly, unless a command already did (with or without --verbose)
    if dataset == "fashion_mnist":
        return load_keras_fashion(test_only, cache_dir)
    from keras.datasets import mnist

    try:
        (x_train, y_train), (x_test, y_test) = mnist.load_data()
    except Exception as exc:  # noqa: BLE001 - Keras raises a bare Exception on a failed download
        raise DataError(
            f"could not download MNIST ({_reason(exc)}).\n"
            f"Offline? {HOW_TO_GET[0].upper()}{HOW_TO_GET[1:]}."
        ) from None
    cache = Path(os.environ.get("KERAS_HOME", Path.home() / ".keras")) / "datasets" / "mnist.npz"
    return Mnist(x_train, y_train, x_test, y_test, source=f"keras.datasets.mnist ({cache})")


def _reason(exc: Exception) -> str:
    return (str(exc).splitlines() or [type(exc).__name__])[0].split(" -- ")[-1]


# Where and under which names keras.datasets.fashion_mnist downloads and caches its files.
FASHION_ORIGIN = "https://storage.googleapis.com/tensorflow/tf-keras-datasets/"
FASHION_CACHE = os.path.join("datasets", "fashion-mnist")


def load_keras_fashion(
    test_only: bool = False,
    cache_dir: str | Path | None = None,
    known: dict[str, dict[str, KnownFile]] | None = None,
) -> Mnist:
    """keras.datasets.fashion_mnist's files, fetched into its cache by Keras's own get_file
    (~/.keras/datasets/fashion-mnist/; `cache_dir` in place of ~/.keras), then checked by their
    content and loaded like a local folder."""
    from keras.utils import get_file

    folder = None
    for role, stem in IDX_FILES.items():
        if test_only and role.endswith("train"):
            continue
        try:
            folder = Path(
                get_file(
                    f"{stem}.gz",
                    origin=FASHION_ORIGIN + f"{stem}.gz",
                    cache_subdir=FASHION_CACHE,
                    cache_dir=None if cache_dir is None else str(cache_dir),
                )
            ).parent
        except Exception as exc:  # noqa: BLE001 - Keras raises a bare Exception on a failed download
            how = how_to_get("fashion_mnist")
            raise DataError(
                f"could not download Fashion-MNIST ({_reason(exc)}).\nOffline? "
                f"{how[0].upper()}{how[1:]}."
            ) from None
    assert folder is not None  # the test files are always fetched
    try:
        loaded = load_idx_folder(folder, test_only, "fashion_mnist", known)
    except DataError as exc:
        raise DataError(
            f"{exc}\n(The file is in Keras's cache, {folder}: delete it and run "
            "again to download it anew.)"
        ) from None
    loaded.source = f"keras.datasets.fashion_mnist ({folder})"
    return loaded


def check(mnist: Mnist) -> Mnist:
    """Shapes, dtypes, matching counts and labels 0-9, naming the source on failure."""
    for split in ("train", "test"):
        x, y = getattr(mnist, f"x_{split}"), getattr(mnist, f"y_{split}")
        if x.dtype.kind not in "uif" or y.dtype.kind not in "uif":  # an .npz of strings, objects
            raise DataError(
                f"{mnist.source}: x_{split} and y_{split} hold {x.dtype} and "
                f"{y.dtype}; expected numbers (pixel values 0-255, labels 0-9)"
            )
        if split == "test" and not len(x):  # train may be empty: test_only skips its files
            raise DataError(f"{mnist.source}: x_test has no images; expected at least one")
        if x.ndim != 3 or x.shape[1:] != (28, 28):
            raise DataError(f"{mnist.source}: x_{split} has shape {x.shape}, expected (N, 28, 28)")
        if y.ndim != 1 or len(y) != len(x):
            raise DataError(
                f"{mnist.source}: {len(x):,} {split} images but y_{split} has shape "
                f"{y.shape}; expected one label per image"
            )
        if len(y) and (y.min() < 0 or y.max() >= NUM_CLASSES or np.any(y != np.round(y))):
            what = "digits" if mnist.dataset == "mnist" else "labels"
            raise DataError(
                f"{mnist.source}: y_{split} has labels from {y.min()} to {y.max()}"
                f"{'' if np.all(y == np.round(y)) else ', not all whole'}, "
                f"expected {what} 0-9"
            )
        if x.dtype != np.uint8 and len(x) and (x.min() < 0 or x.max() > 255):
            raise DataError(f"{mnist.source}: x_{split} has pixel values outside 0-255")
    return mnist


def resolve_path(path: str | Path | None, dataset: str = "mnist") -> Path | None:
    """The explicit path, else the dataset's variable ($CNN_MNIST_DATA, $CNN_FASHION_DATA),
    else None (meaning: Keras's download)."""
    variable = ENV_VARS.get(dataset)
    chosen = path or (os.environ.get(variable) if variable else None) or None
    return Path(chosen).expanduser() if chosen else None


def load_mnist(
    path: str | Path | None = None,
    test_only: bool = False,
    dataset: str = "mnist",
    known: dict[str, dict[str, KnownFile]] | None = None,
) -> Mnist:
    """Load and validate `dataset` from `path`, its environment variable, or Keras's cache (in
    that order); a custom dataset needs a path. `test_only` skips reading the training files
    where it can (for predict and evaluate). `known`: the checksums (default datasets.KNOWN)."""
    where = resolve_path(path, dataset)
    if where is None and dataset == "custom":
        raise DataError(f"data.dataset custom needs its files: {how_to_get('custom')}")
    if where is None:
        return check(load_keras(dataset, test_only))
    if where.is_dir():
        loaded = check(load_idx_folder(where, test_only, dataset, known))
    elif where.is_file() and where.suffix == ".npz":
        loaded = check(load_npz(where, dataset, known))
    elif where.exists():
        raise DataError(
            f"{where}: expected a folder of the four {_title(dataset)}IDX files or an .npz file"
        )
    else:
        source = "--data/data.path" if path else ENV_VARS.get(dataset, "data.path")
        relative = "" if where.is_absolute() else f", relative to the current folder {Path.cwd()}"
        raise DataError(
            f"{where}: no such file or folder (from {source}{relative}). "
            f"To fix: {how_to_get(dataset)}"
        )
    if dataset == "custom":
        log.info(
            "%s: no checksum is known for a custom dataset; only its structure was checked "
            "(magic numbers, dimensions, sizes, labels 0-9)",
            where,
        )
    return loaded


def load_for_model(
    path: str | Path | None,
    model_dataset: str,
    dataset: str | None = None,
    model: str = "the model",
) -> Mnist:
    """The test data for a model trained on `model_dataset`, read as `dataset` (default: the
    model's); test data of another dataset than the model's is refused."""
    try:
        loaded = load_mnist(path, test_only=True, dataset=dataset or model_dataset)
    except WrongDataset as exc:
        if dataset:  # as told, but the files are another set: the loader's message says which
            raise
        raise WrongDataset(
            f"{model} was trained on {TITLES[model_dataset]}, but {exc.where} is "
            f"{TITLES[exc.found]} (found by checksum): give it {TITLES[model_dataset]}'s test "
            f"files with --data PATH, or use a model trained on {TITLES[exc.found]}",
            found=exc.found,
            expected=model_dataset,
            where=exc.where,
        ) from None
    if loaded.dataset != model_dataset:
        raise WrongDataset(
            f"{model} was trained on {TITLES[model_dataset]}, not {TITLES[loaded.dataset]}: "
            f"drop --dataset {loaded.dataset} and give it {TITLES[model_dataset]}'s test files "
            "(--data PATH)",
            found=loaded.dataset,
            expected=model_dataset,
            where=loaded.source,
        )
    return loaded


def _title(dataset: str) -> str:
    return "" if dataset == "custom" else f"{TITLES[dataset]} "


def one_hot(labels: np.ndarray, num_classes: int = NUM_CLASSES) -> np.ndarray:
    """Labels as one-hot rows, like keras.utils.to_categorical (no TensorFlow needed here)."""
    return np.eye(num_classes, dtype=np.float32)[labels]


def prepare_images(images: np.ndarray, normalize: bool = True) -> np.ndarray:
    """(N, 28, 28) uint8 -> (N, 28, 28, 1) float32, scaled to [0, 1] if `normalize`."""
    x = images.reshape(len(images), 28, 28, 1).astype(np.float32)
    return x / np.float32(255.0) if normalize else x


def check_trainable(mnist: Mnist) -> Mnist:
    """Training needs training images (a test-only load, for predict and evaluate, has none)."""
    if not len(mnist.x_train):
        raise DataError(f"{mnist.source}: x_train has no images; expected at least one to train on")
    return mnist


def prepare(
    mnist: Mnist,
    normalize: bool = True,
    limit_train: int | None = None,
    limit_test: int | None = None,
    augment: "AugmentConfig | None" = None,
) -> Prepared:
    """Optionally take the first N images; the network's view is made batch by batch (and
    augmented as `augment` says, training batches only)."""
    if (
        normalize
        and mnist.x_train.dtype.kind == "f"
        and len(mnist.x_train)
        and mnist.x_train.max() <= 1.0
    ):  # scaled twice, it would train on near-black images
        raise DataError(
            f"{mnist.source}: the images hold values 0 to 1 (already scaled); "
            "expected pixel values 0-255, which data.normalize scales: save "
            "(x * 255).round().astype('uint8'), or set data.normalize: false"
        )
    return Prepared(
        images_train=mnist.x_train[:limit_train],
        labels_train=mnist.y_train[:limit_train].astype(np.int64),
        images_test=mnist.x_test[:limit_test],
        labels_test=mnist.y_test[:limit_test].astype(np.int64),
        normalize=normalize,
        augment=augment,
    )
