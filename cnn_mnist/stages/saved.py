"""One handle on a saved model, whatever its format: opened once, its metadata read once.

`open_saved(path)` takes a Keras model (.h5, .keras, as `cnn train` saves it) or one of `cnn
export`'s files (.tflite, .onnx, a SavedModel folder) and reads what the model is: its dataset,
class names, input normalization, run id and input shape. Nothing here imports TensorFlow until
a Keras model (`keras_model`) or a predictor of a Keras or SavedModel file is asked for; a
.tflite runs on LiteRT and an .onnx on ONNX Runtime.

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
from typing import Any

import numpy as np

from cnn_mnist.stages import formats, save
from cnn_mnist.core.errors import ModelFileError

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
    except Exception:  # noqa: BLE001 - unreadable here means the runtime will say what is wrong
        return {}
    return {}  # .onnx: read from its session's metadata, see SavedModel.open


# --- runtimes --------------------------------------------------------------------------------


def _reason(exc: Exception) -> str:
    return str(exc).splitlines()[0][:160] if str(exc) else type(exc).__name__


class LiteRTModel:
    """A .tflite run by the LiteRT interpreter (no TensorFlow).

    Called like a Keras model on a batch; gives the same probabilities to float32 precision.
    """

    def __init__(self, path: str | Path, threads: int | None = None) -> None:
        from ai_edge_litert.interpreter import Interpreter

        from cnn_mnist.core.runtime import stderr_captured

        with stderr_captured():  # "INFO: Created TensorFlow Lite XNNPACK delegate for CPU."
            self.interpreter = Interpreter(
                model_path=str(path), num_threads=threads or os.cpu_count() or 1
            )
        self.input = self.interpreter.get_input_details()[0]["index"]
        self.output = self.interpreter.get_output_details()[0]["index"]
        self.batch = None

    def __call__(self, x: np.ndarray, training: bool = False) -> np.ndarray:
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
    """An .onnx run by ONNX Runtime on the CPU (no TensorFlow); called like a Keras model."""

    def __init__(self, path: str | Path, threads: int | None = None) -> None:
        import onnxruntime as ort

        options = ort.SessionOptions()
        options.log_severity_level = 3  # no warnings on stderr about unused initializers
        if threads:
            options.intra_op_num_threads = threads
        self.session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
        self.input = self.session.get_inputs()[0].name

    def metadata(self) -> dict[str, Any]:
        text = self.session.get_modelmeta().custom_metadata_map.get(METADATA_KEY)
        return json.loads(text) if text else {}

    def __call__(self, x: np.ndarray, training: bool = False) -> np.ndarray:
        return self.session.run(None, {self.input: np.ascontiguousarray(x, dtype=np.float32)})[0]


class SavedModelRunner:
    """A SavedModel folder (Keras's `tf_saved_model` export) run by TensorFlow."""

    def __init__(self, path: str | Path) -> None:
        import tensorflow as tf

        self.loaded = tf.saved_model.load(str(path))
        self.serve = self.loaded.serve

    def __call__(self, x: np.ndarray, training: bool = False) -> np.ndarray:
        return np.asarray(self.serve(np.ascontiguousarray(x, dtype=np.float32)))


# --- the handle ------------------------------------------------------------------------------


@dataclass
class SavedModel:
    """A saved model: where it is, its format, what it is (from its metadata), and, once asked
    for, its Keras model or a predictor (called on a batch, gives probabilities)."""

    path: Path
    format: str  # h5, keras, litert, onnx, saved_model
    metadata: dict[str, Any] = field(default_factory=dict)
    _keras: Any = None
    _onnx: Any = None  # the session that read an .onnx's metadata, kept for its predictions

    @classmethod
    def open(cls, path: str | Path) -> "SavedModel":
        path, fmt = check_path(path)
        handle = cls(path, fmt, _read_metadata(path, fmt))
        if fmt == "onnx":  # its metadata lives in the file's protobuf: ONNX Runtime reads it
            try:
                handle._onnx = OnnxModel(path)
                handle.metadata = handle._onnx.metadata()
            except ModuleNotFoundError:
                raise ModelFileError(
                    f"{path}: reading .onnx needs onnxruntime (pip install onnxruntime)"
                ) from None
            except Exception as exc:  # noqa: BLE001 - onnxruntime raises its own types
                raise ModelFileError(
                    f"{path}: not a readable ONNX model ({_reason(exc)}); "
                    "export it again with `cnn export`"
                ) from None
        return handle

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
        """The Keras model (loaded once); ModelFileError for an export, which has none."""
        if not self.is_keras:
            raise ModelFileError(
                f"{self.path}: {what} needs a Keras model (.h5 or .keras); "
                f"this is a {FORMAT_NAMES[self.format]} export: pass the model "
                "it was exported from with --model"
            )
        if self._keras is None:
            self._keras = save.load_model(self.path)
        return self._keras

    def predictor(
        self, threads: int | None = None, verbose: bool = False, fast: bool = True
    ) -> tuple[Any, str]:
        """(a callable on a batch giving probabilities, its backend). A Keras model runs on
        its checked LiteRT export beside it where `fast` and there is one, else on Keras."""
        from cnn_mnist.core.runtime import import_tensorflow

        if self.format == "onnx":
            return (OnnxModel(self.path, threads) if threads else self._onnx), "onnx"
        if self.format == "litert":
            try:
                return LiteRTModel(self.path, threads), "litert"
            except ModuleNotFoundError:
                raise ModelFileError(
                    f"{self.path}: reading .tflite needs ai-edge-litert "
                    "(pip install ai-edge-litert)"
                ) from None
            except Exception as exc:  # noqa: BLE001 - the interpreter raises ValueError/RuntimeError
                raise ModelFileError(
                    f"{self.path}: not a readable LiteRT model "
                    f"({_reason(exc)}); export it again with `cnn export`"
                ) from None
        if self.format == "saved_model":
            import_tensorflow(verbose)
            try:
                return SavedModelRunner(self.path), "saved_model"
            except Exception as exc:  # noqa: BLE001 - TensorFlow raises many types
                raise ModelFileError(
                    f"{self.path}: not a readable SavedModel ({_reason(exc)}); "
                    "export it again with `cnn export`"
                ) from None
        if fast:
            lite = self.litert_beside()
            if lite is not None:
                try:
                    return LiteRTModel(lite, threads), "litert"
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
