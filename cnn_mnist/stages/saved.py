"""One handle on a saved model, whatever its format: opened once, its metadata read once.

`open_saved(path)` takes a Keras model (.h5, .keras, as `cnn train` saves it) or one of `cnn
export`'s files (.tflite, .onnx, a SavedModel folder) and reads what the model is: its dataset,
class names, input normalization, run id and input shape. Nothing here imports TensorFlow until
a Keras model (`keras_model`) or a predictor of a Keras or SavedModel file is asked for; a
.tflite runs on LiteRT and an .onnx on ONNX Runtime. Whatever its format, the model is checked
to be a classifier of 28x28x1 digits giving probabilities (signature.py) before any prediction.

Where the metadata lives (the same JSON object as in the .h5, see save.py):
- .h5 / .keras: an HDF5 attribute / a `cnn_mnist.json` entry in the zip (save.py);
- .tflite: an entry named `cnn_mnist` in the flatbuffer's own `metadata` list;
- .onnx: `metadata_props`, key `cnn_mnist`;
- SavedModel: the asset `assets/cnn_mnist.json`.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import numpy as np

from cnn_mnist.core.datasets import TITLES
from cnn_mnist.core.errors import ModelFileError
from cnn_mnist.stages import formats, save, signature

METADATA_KEY = save.METADATA_KEY
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


def check_path(path: str | Path) -> tuple[Path, str]:
    """Cheap checks before any runtime is imported; (the path, its format)."""
    path = Path(path)
    if not path.exists():
        raise ModelFileError(
            f"model file not found: {path}; train one with `cnn train` or pass --model PATH"
        )
    if path.is_dir() and (path / "saved_model.pb").is_file():
        return path, "saved_model"
    if path.is_dir() or path.suffix not in FORMAT_OF_SUFFIX:
        raise ModelFileError(
            f"{path}: expected a Keras model file ending in .h5 or .keras, or "
            "an export of one (.tflite, .onnx, a SavedModel folder)"
        )
    if path.stat().st_size == 0:
        raise ModelFileError(f"{path}: the file is empty; train again with `cnn train`")
    return path, FORMAT_OF_SUFFIX[path.suffix]


# --- metadata in each format -----------------------------------------------------------------


def litert_metadata(data: bytes) -> dict[str, Any]:
    """The `cnn_mnist` entry of a .tflite's metadata list, read from the flatbuffer by hand
    (LiteRT's Python package has no reader for it, and TensorFlow is not wanted here).

    TFLite schema: Model.buffers is field 4, Model.metadata field 6; Metadata.name 0,
    Metadata.buffer 1; Buffer.data 0 (inline), offset 1 and size 2 (data past the flatbuffer).
    """
    from flatbuffers import encode, number_types, table

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
            return json.loads(bytes(buf[start : start + length]))
        offset = buffer.Get(number_types.Uint64Flags, buffer.Pos + buffer.Offset(6))
        size = buffer.Get(number_types.Uint64Flags, buffer.Pos + buffer.Offset(8))
        return json.loads(bytes(buf[offset : offset + size]))
    return {}


def _read_metadata(path: Path, fmt: str) -> dict[str, Any]:
    if fmt in ("h5", "keras"):
        return save.read_metadata(path)
    try:
        if fmt == "litert":
            return litert_metadata(path.read_bytes())
        if fmt == "saved_model":
            asset = path / SAVED_MODEL_ASSET
            return json.loads(asset.read_text()) if asset.is_file() else {}
    except Exception:  # noqa: BLE001 - the runtime has read the file: no metadata, then
        return {}
    return {}  # .onnx: read from its session's metadata, see SavedModel.open


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

        from cnn_mnist.core.runtime import stderr_captured

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
        self.batch = None
        # Exported for a batch of one: its graph may reshape to batch 1, so one image a call.
        self.single = bool(self.inputs) and self.inputs[0][0][:1] == (1,)

    def __call__(self, x: np.ndarray, training: bool = False) -> np.ndarray:
        if self.single and len(x) != 1:
            return _one_at_a_time(self, x)
        from cnn_mnist.core.runtime import stderr_captured

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

    def metadata(self) -> dict[str, Any]:
        text = self.session.get_modelmeta().custom_metadata_map.get(METADATA_KEY)
        return json.loads(text) if text else {}

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
        self.single = bool(self.inputs) and self.inputs[0][0][:1] == (1,)  # a batch of one

    def __call__(self, x: np.ndarray, training: bool = False) -> np.ndarray:
        if self.single and len(x) != 1:
            return _one_at_a_time(self, x)
        return np.asarray(self.serve(np.ascontiguousarray(x, dtype=np.float32)))


# --- the handle ------------------------------------------------------------------------------


@dataclass
class SavedModel:
    """A saved model: where it is, its format, what it is (from its metadata), and, once asked
    for, its Keras model or a predictor (called on a batch, gives probabilities).

    Whatever its format, it is checked to be a classifier of its dataset (signature.py) before
    any prediction: what an export takes as it is opened, what a Keras model takes as it is
    loaded, and that its outputs are probabilities of its classes on the first predictor (or
    Keras model) asked for."""

    path: Path
    format: str  # h5, keras, litert, onnx, saved_model
    metadata: dict[str, Any] = field(default_factory=dict)
    _keras: Any = None
    _onnx: Any = None  # the session that read an .onnx's metadata, kept for its predictions
    _lite: Any = None  # the interpreter that checked a .tflite as it was opened, not yet lent
    _checked: bool = False  # its outputs were found to be probabilities of its classes

    @classmethod
    def open(cls, path: str | Path) -> "SavedModel":
        path, fmt = check_path(path)
        if fmt == "onnx":  # its metadata lives in the file's protobuf: ONNX Runtime reads it
            runner = _runtime(path, fmt, lambda: OnnxModel(path))
            signature.check_input(path, runner.inputs)
            return cls(path, fmt, _runtime(path, fmt, runner.metadata), _onnx=runner)
        if fmt == "litert":  # the interpreter first: it refuses a file that is no flatbuffer
            runner = _runtime(path, fmt, lambda: LiteRTModel(path))
            signature.check_input(path, runner.inputs)
            return cls(path, fmt, _read_metadata(path, fmt), _lite=runner)
        return cls(path, fmt, _read_metadata(path, fmt))

    @property
    def is_keras(self) -> bool:
        return self.format in ("h5", "keras")

    @property
    def dataset(self) -> str:
        return save.dataset_of(self.metadata)

    @property
    def class_names(self) -> list[str]:
        return save.class_names_of(self.metadata)

    @property
    def normalize(self) -> bool:
        return save.normalize_of(self.metadata)

    @property
    def run_id(self) -> str | None:
        return self.metadata.get("run_id")

    @property
    def input_shape(self) -> tuple[int, ...]:
        shape = self.metadata.get("input_shape")
        return tuple(shape) if shape else save.EXPECTED_INPUT

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
            model = save.load_model(self.path)  # refuses another input or output shape
            self.check_outputs(model)
            self._keras = model
        return self._keras

    def check_outputs(self, predictor: Callable[..., Any]) -> None:
        """Once per handle: `predictor` (this model's) gives probabilities of its classes."""
        if self._checked:
            return
        quantized = (self.metadata.get("export") or {}).get("quantize") == "int8"
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
        from cnn_mnist.core.runtime import import_tensorflow

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
        from cnn_mnist.core import files

        lite = self.path.with_suffix(".tflite")
        expected = self.metadata.get("litert_sha256")
        if not self.is_keras or not expected or not lite.is_file():
            return None
        return lite if files.sha256(lite) == expected else None


def open_saved(path: str | Path | SavedModel) -> SavedModel:
    """The handle on the model at `path` (a handle is returned as it is)."""
    return path if isinstance(path, SavedModel) else SavedModel.open(path)
