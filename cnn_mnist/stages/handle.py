"""One handle on a saved model, whatever its format: opened once, its card read once.

`open_saved(path)` is the one door to a model file: a Keras model (.h5, .keras, as `cnn train`
saves it) or one of `cnn export`'s files (.tflite, .onnx, a SavedModel folder), told apart by
its kind, with one error naming every kind accepted for anything else. Nothing else in the
package reads a model file (tests/test_layout.py checks): save.py and formats.py write them,
and every command asks the handle what a model is (its card, card.py: dataset, class names,
input normalization, run id, input shape; for a file without a card, what the file shows), for
its Keras model (`keras_model`), a predictor, or its number of weights (`params`). `card_of`
reads only the card, without the checks, where what is at a path may be replaced.

Nothing here imports TensorFlow until a Keras model (`keras_model`) or a predictor of a Keras or
SavedModel file is asked for; a .tflite runs on LiteRT and an .onnx on ONNX Runtime. Whatever
its format, the model is checked to be a classifier of 28x28x1 digits giving probabilities
(signature.py) before any prediction.

Where the card lives (the same JSON object in every format):
- .h5 / .keras: an HDF5 attribute / a `cnn_mnist.json` entry in the zip (save.py);
- .tflite: an entry named `cnn_mnist` in the flatbuffer's own `metadata` list;
- .onnx: `metadata_props`, key `cnn_mnist`;
- SavedModel: the asset `assets/cnn_mnist.json` (formats.py).
"""

from __future__ import annotations

import io
import os
import zipfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import numpy as np
from flatbuffers import encode, number_types, table

from cnn_mnist.core import files
from cnn_mnist.core.datasets import DIGITS, TITLES
from cnn_mnist.core.errors import ModelFileError
from cnn_mnist.core.runtime import import_tensorflow, stderr_captured
from cnn_mnist.stages import formats, signature
from cnn_mnist.stages.card import METADATA_KEY, ModelCard
from cnn_mnist.stages.save import EXPECTED_INPUT

SAVED_MODEL_ASSET = formats.SAVED_MODEL_ASSET
KERAS_SUFFIXES = (".h5", ".keras")
FORMAT_OF_SUFFIX = {".h5": "h5", ".keras": "keras", ".tflite": "litert", ".onnx": "onnx"}
FORMAT_NAMES = {
    "h5": "Keras (.h5)",
    "keras": "Keras (.keras)",
    "litert": "LiteRT (.tflite)",
    "onnx": "ONNX",
    "saved_model": "SavedModel",
}


def kind_of(path: Path) -> str | None:
    """The format of what is at `path`, by its kind (a SavedModel folder, a file's suffix);
    None for anything else."""
    if path.is_dir():
        return "saved_model" if (path / "saved_model.pb").is_file() else None
    return FORMAT_OF_SUFFIX.get(path.suffix)


def check_path(path: str | Path) -> tuple[Path, str]:
    """Cheap checks before any runtime is imported; (the path, its format)."""
    path = Path(path)
    if not path.exists():
        raise ModelFileError(
            f"model file not found: {path}; train one with `cnn train` or pass --model PATH"
        )
    fmt = kind_of(path)
    if fmt is None:
        raise ModelFileError(
            f"{path}: expected a Keras model file ending in .h5 or .keras, or "
            "an export of one (.tflite, .onnx, a SavedModel folder)"
        )
    if fmt != "saved_model" and path.stat().st_size == 0:
        raise ModelFileError(f"{path}: the file is empty; train again with `cnn train`")
    return path, fmt


# --- the card in each format -----------------------------------------------------------------


def litert_card(data: bytes) -> ModelCard:
    """The `cnn_mnist` entry of a .tflite's metadata list, read from the flatbuffer by hand
    (LiteRT's Python package has no reader for it, and TensorFlow is not wanted here).

    TFLite schema: Model.buffers is field 4, Model.metadata field 6; Metadata.name 0,
    Metadata.buffer 1; Buffer.data 0 (inline), offset 1 and size 2 (data past the flatbuffer).
    """
    buf = bytearray(data)
    model = table.Table(buf, encode.Get(number_types.UOffsetTFlags.packer_type, buf, 0))

    def vector(t: table.Table, slot: int) -> list[table.Table]:
        o = t.Offset(4 + 2 * slot)
        if not o:
            return []
        start = t.Vector(o)
        return [table.Table(buf, t.Indirect(start + 4 * i)) for i in range(t.VectorLen(o))]

    for entry in vector(model, 6):
        o = entry.Offset(4)
        if not o or entry.String(o + entry.Pos).decode() != METADATA_KEY:
            continue
        o = entry.Offset(6)
        index = entry.Get(number_types.Uint32Flags, o + entry.Pos) if o else 0
        buffer = vector(model, 4)[index]
        o = buffer.Offset(4)
        if o:
            start, length = buffer.Vector(o), buffer.VectorLen(o)
            return ModelCard.from_text(bytes(buf[start : start + length]))
        offset = buffer.Get(number_types.Uint64Flags, buffer.Pos + buffer.Offset(6))
        size = buffer.Get(number_types.Uint64Flags, buffer.Pos + buffer.Offset(8))
        return ModelCard.from_text(bytes(buf[offset : offset + size]))
    return ModelCard()


def _keras_card(path: Path) -> ModelCard:
    """What save.py stored with a Keras model: an HDF5 attribute, or an entry of the zip."""
    if path.suffix == ".h5":
        import h5py

        with h5py.File(path, "r") as h5:
            return ModelCard.from_text(h5.attrs.get(METADATA_KEY))
    with zipfile.ZipFile(path) as archive:
        name = f"{METADATA_KEY}.json"
        return ModelCard.from_text(archive.read(name) if name in archive.namelist() else None)


def _saved_model_card(path: Path) -> ModelCard:
    asset = path / SAVED_MODEL_ASSET
    return ModelCard.from_text(asset.read_text()) if asset.is_file() else ModelCard()


CARD_READERS: dict[str, Callable[[Path], ModelCard]] = {
    "h5": _keras_card,
    "keras": _keras_card,
    "litert": lambda path: litert_card(path.read_bytes()),
    "onnx": lambda path: OnnxModel(path).card(),  # ONNX Runtime reads the file's protobuf
    "saved_model": _saved_model_card,
}


def _read_card(path: Path, fmt: str) -> ModelCard:
    """The card in the model file at `path`; an empty one where it has none, or it cannot be
    read here (opening the model then says what is wrong)."""
    try:
        return CARD_READERS[fmt](path)
    except Exception:  # noqa: BLE001 - h5py, zipfile, flatbuffers: a file from elsewhere
        return ModelCard()


def card_of(path: str | Path) -> ModelCard:
    """The card of the model file at `path`, without `open_saved`'s checks: an empty card where
    there is no model file, or one without a card, or one that cannot be read. For whether
    what is at a path may be replaced (`cnn train`, `cnn runs`), never for predicting."""
    path = Path(path)
    fmt = kind_of(path)
    return _read_card(path, fmt) if fmt is not None and path.exists() else ModelCard()


def _keras_params(path: Path) -> int:
    """The number of weights in a Keras model file, read from its HDF5 (no TensorFlow)."""

    import h5py

    if path.suffix == ".h5":
        h5, group = h5py.File(path, "r"), "model_weights"
    else:
        with zipfile.ZipFile(path) as archive:
            h5 = h5py.File(io.BytesIO(archive.read("model.weights.h5")), "r")
        group = "layers"
    with h5:
        sizes: list[int] = []
        h5[group].visititems(
            lambda _, item: sizes.append(item.size) if isinstance(item, h5py.Dataset) else None
        )
    return int(sum(sizes))


def _load_keras(path: Path):
    """The Keras model in the file at `path` (check_path has passed), uncompiled;
    ModelFileError if it is broken, or not a digit classifier's shape."""
    import keras

    try:
        model = keras.models.load_model(path, compile=False)
    except Exception as exc:  # noqa: BLE001 - h5py/zipfile/keras raise many types for a broken file
        raise ModelFileError(
            f"{path}: not a readable Keras model ({_reason(exc)}); the file is "
            "truncated or corrupt: train again with `cnn train`"
        ) from None
    shape_in: tuple | None
    shape_out: tuple | None
    try:
        shape_in, shape_out = tuple(model.input_shape[1:]), tuple(model.output_shape[1:])
    except (AttributeError, ValueError):
        shape_in = shape_out = None
    if shape_in != EXPECTED_INPUT:
        raise ModelFileError(
            f"{path}: the model takes inputs of shape {shape_in}, expected "
            f"{EXPECTED_INPUT} (one 28x28 grayscale digit)"
        )
    if shape_out != (10,):
        raise ModelFileError(
            f"{path}: the model has outputs of shape {shape_out}, expected (10,) "
            "(one probability per class)"
        )
    return model


# --- runtimes --------------------------------------------------------------------------------


def _reason(exc: Exception) -> str:
    return str(exc).splitlines()[0][:160] if str(exc) else type(exc).__name__


# Each export format: its name, what a file of it is, and the package that reads it.
RUNTIMES = {
    "litert": ("LiteRT model", ".tflite", "ai-edge-litert"),
    "onnx": ("ONNX model", ".onnx", "onnxruntime"),
    "saved_model": ("SavedModel", "a SavedModel", "tensorflow"),
}


def _runtime(path: Path, fmt: str, build: Callable[[], Any]) -> Any:
    """`build()`, a runner of the export at `path`, or ModelFileError: one line saying the
    runtime is not installed, or that the file is not a model it can read."""
    name, files, package = RUNTIMES[fmt]
    try:
        return build()
    except ModuleNotFoundError:
        raise ModelFileError(
            f"{path}: reading {files} needs {package} (pip install {package})"
        ) from None
    except Exception as exc:  # noqa: BLE001 - each runtime raises its own types
        raise ModelFileError(
            f"{path}: not a readable {name} ({_reason(exc)}); export it again with `cnn export`"
        ) from None


def _one_at_a_time(run: Callable[[np.ndarray], np.ndarray], x: np.ndarray) -> np.ndarray:
    """`run` (a model that takes a batch of exactly one) on each image of `x`."""
    return np.concatenate([run(x[i : i + 1]) for i in range(len(x))])


class LiteRTModel:
    """A .tflite run by the LiteRT interpreter (no TensorFlow).

    Called like a Keras model on a batch; gives the same probabilities to float32 precision.
    `inputs`: what each input takes (shape, batch first, and dtype; see signature.check_input).
    """

    def __init__(self, path: str | Path, threads: int | None = None) -> None:
        from ai_edge_litert.interpreter import Interpreter

        with stderr_captured():  # "INFO: Created TensorFlow Lite XNNPACK delegate for CPU."
            self.interpreter = Interpreter(
                model_path=str(path), num_threads=threads or os.cpu_count() or 1
            )
        details = self.interpreter.get_input_details()
        self.inputs = [
            (signature.dims(d["shape_signature"]), np.dtype(d["dtype"]).name) for d in details
        ]
        self.input = details[0]["index"] if details else None
        self.output = self.interpreter.get_output_details()[0]["index"]
        self.batch: int | None = None
        # Exported for a batch of one: its graph may reshape to batch 1, so one image a call.
        self.single = bool(self.inputs) and self.inputs[0][0][:1] == (1,)

    def __call__(self, x: np.ndarray, training: bool = False) -> np.ndarray:
        if self.single and len(x) != 1:
            return _one_at_a_time(self, x)

        if self.batch != len(x):
            self.interpreter.resize_tensor_input(self.input, list(x.shape))
            with stderr_captured():
                self.interpreter.allocate_tensors()
            self.batch = len(x)
        self.interpreter.set_tensor(self.input, np.ascontiguousarray(x, dtype=np.float32))
        self.interpreter.invoke()
        return self.interpreter.get_tensor(self.output).copy()


class OnnxModel:
    """An .onnx run by ONNX Runtime on the CPU (no TensorFlow); called like a Keras model.
    `inputs`: as LiteRTModel's."""

    def __init__(self, path: str | Path, threads: int | None = None) -> None:
        import onnxruntime as ort

        options = ort.SessionOptions()
        options.log_severity_level = 3  # no warnings on stderr about unused initializers
        if threads:
            options.intra_op_num_threads = threads
        self.session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
        inputs = self.session.get_inputs()
        self.inputs = [(signature.dims(i.shape), signature.onnx_dtype(i.type)) for i in inputs]
        self.input = inputs[0].name if inputs else ""
        self.single = bool(self.inputs) and self.inputs[0][0][:1] == (1,)  # a batch of one

    def card(self) -> ModelCard:
        """The card in the file's `metadata_props`, as the session read it."""
        return ModelCard.from_text(
            self.session.get_modelmeta().custom_metadata_map.get(METADATA_KEY)
        )

    def __call__(self, x: np.ndarray, training: bool = False) -> np.ndarray:
        if self.single and len(x) != 1:
            return _one_at_a_time(self, x)
        return self.session.run(None, {self.input: np.ascontiguousarray(x, dtype=np.float32)})[0]


class SavedModelRunner:
    """A SavedModel folder (Keras's `tf_saved_model` export) run by TensorFlow. `inputs`: as
    LiteRTModel's, from its `serve` function's signature (None where it declares none)."""

    def __init__(self, path: str | Path) -> None:
        import tensorflow as tf

        self.loaded = tf.saved_model.load(str(path))
        self.serve = self.loaded.serve
        specs = getattr(self.serve, "input_signature", None)
        self.inputs = None
        if specs is not None:
            self.inputs = [
                (signature.dims(s.shape.as_list()), s.dtype.name) for s in tf.nest.flatten(specs)
            ]
        self.single = bool(self.inputs and self.inputs[0][0][:1] == (1,))  # a batch of one

    def __call__(self, x: np.ndarray, training: bool = False) -> np.ndarray:
        if self.single and len(x) != 1:
            return _one_at_a_time(self, x)
        return np.asarray(self.serve(np.ascontiguousarray(x, dtype=np.float32)))


# --- the handle ------------------------------------------------------------------------------


@dataclass
class SavedModel:
    """A saved model: where it is, its format, what it is (its card, or what the file shows),
    and, once asked for, its Keras model or a predictor (called on a batch, gives
    probabilities).

    Whatever its format, it is checked to be a classifier of its dataset (signature.py) before
    any prediction: what an export takes as it is opened, what a Keras model takes as it is
    loaded, and that its outputs are probabilities of its classes on the first predictor (or
    Keras model) asked for."""

    path: Path
    format: str  # h5, keras, litert, onnx, saved_model
    card: ModelCard = field(default_factory=ModelCard)
    _keras: Any = None
    _onnx: Any = None  # the session that read an .onnx's card, kept for its predictions
    _lite: Any = None  # the interpreter that checked a .tflite as it was opened, not yet lent
    _checked: bool = False  # its outputs were found to be probabilities of its classes

    @classmethod
    def open(cls, path: str | Path) -> "SavedModel":
        """The one door: the model at `path`, by its kind (check_path)."""
        path, fmt = check_path(path)
        if fmt == "onnx":  # its card lives in the file's protobuf: ONNX Runtime reads it
            runner = _runtime(path, fmt, lambda: OnnxModel(path))
            signature.check_input(path, runner.inputs)
            return cls(path, fmt, _runtime(path, fmt, runner.card), _onnx=runner)
        if fmt == "litert":  # the interpreter first: it refuses a file that is no flatbuffer
            runner = _runtime(path, fmt, lambda: LiteRTModel(path))
            signature.check_input(path, runner.inputs)
            return cls(path, fmt, _read_card(path, fmt), _lite=runner)
        return cls(path, fmt, _read_card(path, fmt))

    @property
    def is_keras(self) -> bool:
        return self.format in ("h5", "keras")

    def _trained_with(self, key: str, default: Any) -> Any:
        """A `data:` setting of the config the model was trained with; `default` without one."""
        data = (self.card.config or {}).get("data")
        return data.get(key, default) if isinstance(data, dict) else default

    @property
    def dataset(self) -> str:
        """What the model was trained on: mnist, fashion_mnist or custom ("mnist" for a model
        saved before datasets were recorded, or by other means)."""
        return self.card.dataset or self._trained_with("dataset", None) or "mnist"

    @property
    def class_names(self) -> list[str]:
        """The model's ten class names, label 0 to 9 (the digits for a model without them)."""
        names = self.card.class_names
        return list(names) if names is not None and len(names) == 10 else list(DIGITS)

    @property
    def normalize(self) -> bool:
        """How the model was trained to see pixels: [0, 1], unless its config says raw 0-255."""
        return bool(self._trained_with("normalize", True))

    @property
    def run_id(self) -> str | None:
        return self.card.run_id

    @property
    def input_shape(self) -> tuple[int, ...]:
        return tuple(self.card.input_shape) if self.card.input_shape else EXPECTED_INPUT

    @property
    def params(self) -> int | None:
        """The number of weights of a Keras model, read from its file (no TensorFlow); None
        for an export, or a file whose weights are not where Keras saves them."""
        if not self.is_keras:
            return None
        try:
            return _keras_params(self.path)
        except Exception:  # noqa: BLE001 - a model saved by other means: unknown
            return None

    def keras_model(self, what: str = "this"):
        """The Keras model (loaded once, and checked); ModelFileError for an export, which has
        none."""
        if not self.is_keras:
            raise ModelFileError(
                f"{self.path}: {what} needs a Keras model (.h5 or .keras); "
                f"this is a {FORMAT_NAMES[self.format]} export: pass the model "
                "it was exported from with --model"
            )
        if self._keras is None:
            model = _load_keras(self.path)  # refuses another input or output shape
            self.check_outputs(model)
            self._keras = model
        return self._keras

    def check_outputs(self, predictor: Callable[..., Any]) -> None:
        """Once per handle: `predictor` (this model's) gives probabilities of its classes."""
        if self._checked:
            return
        export = self.card.export
        quantized = export is not None and export.quantize == "int8"
        signature.check_outputs(
            self.path,
            predictor,
            len(self.class_names),
            TITLES.get(self.dataset, self.dataset),
            self.normalize,
            signature.INT8_TOLERANCE if quantized else signature.TOLERANCE,
        )
        self._checked = True

    def predictor(
        self, threads: int | None = None, verbose: bool = False, fast: bool = True
    ) -> tuple[Any, str]:
        """(a callable on a batch giving probabilities, its backend). A Keras model runs on
        its checked LiteRT export beside it where `fast` and there is one, else on Keras.
        The first one asked for is checked to give probabilities (check_outputs)."""
        runner, backend = self._runner(threads, verbose, fast)
        self.check_outputs(runner)
        return runner, backend

    def _runner(self, threads: int | None, verbose: bool, fast: bool) -> tuple[Any, str]:
        if self.format == "onnx":
            if not threads:
                return self._onnx, "onnx"
            return _runtime(self.path, "onnx", lambda: OnnxModel(self.path, threads)), "onnx"
        if self.format == "litert":
            lent, self._lite = (self._lite, None) if not threads else (None, self._lite)
            return lent or _runtime(
                self.path, "litert", lambda: LiteRTModel(self.path, threads)
            ), "litert"
        if self.format == "saved_model":
            import_tensorflow(verbose)
            runner = _runtime(self.path, "saved_model", lambda: SavedModelRunner(self.path))
            if runner.inputs is not None:
                signature.check_input(self.path, runner.inputs)
            return runner, "saved_model"
        if fast:
            lite = self.litert_beside()
            if lite is not None:
                try:
                    runner = LiteRTModel(lite, threads)
                    signature.check_input(lite, runner.inputs)
                    return runner, "litert"
                except Exception:  # noqa: BLE001 - no LiteRT here, or a broken export: use Keras
                    pass
        import_tensorflow(verbose)
        return self.keras_model(), "keras"

    def litert_beside(self) -> Path | None:
        """The .tflite exported with this very model, if it is beside it.

        `cnn train` records the export's SHA-256 inside the model file, so a stale or foreign
        .tflite (another run's, or a model replaced by hand) is never used in its place.
        """
        lite = self.path.with_suffix(".tflite")
        expected = self.card.litert_sha256
        if not self.is_keras or not expected or not lite.is_file():
            return None
        return lite if files.sha256(lite) == expected else None


def open_saved(path: str | Path | SavedModel) -> SavedModel:
    """The handle on the model at `path` (a handle is returned as it is)."""
    return path if isinstance(path, SavedModel) else SavedModel.open(path)
