"""Writing a Keras model in the formats people deploy, through Keras's own `model.export`.

One conversion for `cnn export` and for the .tflite `cnn train` writes beside the model
(export.py runs and checks what is written here; handle.py reads it back). Each export carries
the model's card (card.py) in its format's own place:
- .tflite: an entry `cnn_mnist` in the flatbuffer's `metadata` list;
- .onnx: `metadata_props`, key `cnn_mnist`;
- SavedModel: the asset `assets/cnn_mnist.json`.

int8 is full-integer post-training quantization, the activations' ranges calibrated on the
images given (LiteRT's representative dataset; ONNX Runtime's static quantization with a
calibration reader), so convolutions run in int8 too, not only the dense layers.
"""

from __future__ import annotations

import contextlib
import errno
import io
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any, Callable, Iterator

import numpy as np

from cnn_mnist.core import files
from cnn_mnist.core.errors import ExportError
from cnn_mnist.core.runtime import signals_deferred, stderr_captured
from cnn_mnist.stages.card import METADATA_KEY, ModelCard

SAVED_MODEL_ASSET = f"assets/{METADATA_KEY}.json"
FORMATS = {"saved_model": "", "litert": ".tflite", "onnx": ".onnx"}  # format: file suffix
QUANTIZATIONS = ("none", "float16", "int8")
ONNX_OPSET = 17  # ONNX Runtime >= 1.14 and every current ONNX Runtime for C++/C#/Java/JS


def _reason(exc: BaseException) -> str:
    text = str(exc).strip()
    lines = [line for line in text.splitlines() if "error" in line.lower()] or text.splitlines()
    return lines[0][:200] if lines else type(exc).__name__


def _calibration_images(calibration: np.ndarray | None) -> np.ndarray:
    """int8's calibration images (export.py always gives them for int8)."""
    if calibration is None:
        raise ValueError("int8 quantization needs calibration images")
    return calibration


def _representative(calibration: np.ndarray):
    def batches():
        for image in calibration:
            yield [image[None].astype(np.float32)]

    return batches


def _litert(model, path: Path, quantize: str, calibration: np.ndarray | None) -> None:
    import tensorflow as tf

    options: dict[str, Any] = {}
    if quantize == "float16":
        options = {
            "optimizations": [tf.lite.Optimize.DEFAULT],
            "target_spec": {"supported_types": [tf.float16]},
        }
    elif quantize == "int8":  # full integer: every op in int8, float32 only at the edges
        options = {
            "optimizations": [tf.lite.Optimize.DEFAULT],
            "representative_dataset": _representative(_calibration_images(calibration)),
            "target_spec": {"supported_ops": [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]},
        }
    model.export(str(path), format="litert", verbose=False, **options)


def embed_litert_card(path: Path, card: ModelCard) -> None:
    """The card as an entry `cnn_mnist` of the flatbuffer's own metadata list (read back by
    saved.litert_card without TensorFlow)."""
    from tensorflow.lite.python import schema_py_generated as schema
    from tensorflow.lite.tools import flatbuffer_utils

    model = flatbuffer_utils.read_model_from_bytearray(bytearray(path.read_bytes()))
    buffer = schema.BufferT()
    buffer.data = np.frombuffer(card.to_text().encode(), dtype=np.uint8)
    model.buffers.append(buffer)
    entry = schema.MetadataT()
    entry.name, entry.buffer = METADATA_KEY, len(model.buffers) - 1
    model.metadata = [m for m in (model.metadata or []) if m.name != METADATA_KEY.encode()]
    model.metadata.append(entry)
    path.write_bytes(flatbuffer_utils.convert_object_to_bytearray(model))


class _Calibration:
    """ONNX Runtime's CalibrationDataReader over the calibration images, one at a time."""

    def __init__(self, name: str, calibration: np.ndarray) -> None:
        self.items = iter([{name: image[None].astype(np.float32)} for image in calibration])

    def get_next(self):
        return next(self.items, None)


def _onnx(model, path: Path, quantize: str, calibration: np.ndarray | None) -> None:
    import onnx

    model.export(str(path), format="onnx", verbose=False, opset_version=ONNX_OPSET)
    if quantize == "float16":
        from onnxruntime.transformers.float16 import convert_float_to_float16

        onnx.save(convert_float_to_float16(onnx.load(str(path)), keep_io_types=True), str(path))
    elif quantize == "int8":  # static: activations calibrated too, so convolutions run in int8
        from onnxruntime.quantization import QuantFormat, QuantType, quantize_static

        float_path = path.with_name(path.stem + ".float.onnx")
        os.replace(path, float_path)
        try:
            name = onnx.load(str(float_path)).graph.input[0].name
            quantize_static(
                str(float_path),
                str(path),
                _Calibration(name, _calibration_images(calibration)),
                quant_format=QuantFormat.QDQ,
                per_channel=True,
                activation_type=QuantType.QInt8,
                weight_type=QuantType.QInt8,
            )
        finally:
            float_path.unlink(missing_ok=True)


def _embed_onnx_card(path: Path, card: ModelCard) -> None:
    import onnx

    proto = onnx.load(str(path))
    del proto.metadata_props[:]
    entry = proto.metadata_props.add()
    entry.key, entry.value = METADATA_KEY, card.to_text()
    proto.producer_name = "cnn-mnist"
    onnx.save(proto, str(path))


# Ops that move values between float32 and int8, or only compute shapes: not float compute.
_EDGES = {"QUANTIZE", "DEQUANTIZE", "SHAPE", "STRIDED_SLICE", "PACK", "RESHAPE"}
_ONNX_COMPUTE = {"Conv", "MatMul", "Gemm"}  # the layers with weights: must run in int8


def float_ops(path: Path, fmt: str) -> list[str]:
    """The compute ops an int8 export still runs in float: the converters quietly leave in
    float what they cannot quantize, which would not be a full-integer model."""
    if fmt == "litert":
        from ai_edge_litert.interpreter import Interpreter

        with stderr_captured():
            interpreter = Interpreter(model_path=str(path))
        dtypes = {t["index"]: t["dtype"] for t in interpreter.get_tensor_details()}
        return sorted(
            {
                op["op_name"]
                for op in interpreter._get_ops_details()
                if op["op_name"] not in _EDGES
                and any(dtypes.get(i) == np.float32 for i in op["outputs"])
            }
        )
    import onnx

    graph = onnx.load(str(path)).graph
    dequantized = {n.output[0] for n in graph.node if n.op_type == "DequantizeLinear"}
    return sorted(
        {
            n.op_type
            for n in graph.node
            if n.op_type in _ONNX_COMPUTE and not all(i in dequantized for i in n.input[:2])
        }
    )


def write_export(
    model,
    fmt: str,
    quantize: str,
    path: Path,
    card: ModelCard | None = None,
    calibration: np.ndarray | None = None,
) -> None:
    """The conversion itself, into `path` (a temporary one); `model` computes in float32."""
    try:
        # Ctrl-C or SIGTERM waits for the converter: interrupted inside TensorFlow's graph
        # code, tf2onnx can crash the process (a segmentation fault), leaving its files.
        with (
            signals_deferred(),
            stderr_captured(replay=False),  # the error says why; the converters' logs do not
            contextlib.redirect_stdout(io.StringIO()),
        ):
            if fmt == "litert":
                _litert(model, path, quantize, calibration)
            elif fmt == "onnx":
                _onnx(model, path, quantize, calibration)
            else:
                model.export(str(path), format="tf_saved_model", verbose=False)
    except ModuleNotFoundError as exc:
        raise ExportError(
            f"the {fmt} export needs the package {exc.name} (pip install -e . installs it)"
        ) from None
    except Exception as exc:  # noqa: BLE001 - the converters raise many types
        if files.no_space(exc):  # a full disk, not a model the converter refuses
            raise OSError(errno.ENOSPC, "No space left on device", str(path)) from None
        what = {"none": "float32", "float16": "float16", "int8": "int8"}[quantize]
        raise ExportError(
            f"the {fmt} converter refused the {what} export of this model "
            f"({_reason(exc)}); try another --quantize"
        ) from None
    left = float_ops(path, fmt) if quantize == "int8" else []
    if left:
        raise ExportError(
            f"the {fmt} converter could not quantize every layer of this model to "
            f"int8: {', '.join(left)} would still compute in float; export it "
            "with --quantize float16 or none"
        )
    if card is not None:
        if fmt == "litert":
            embed_litert_card(path, card)
        elif fmt == "onnx":
            _embed_onnx_card(path, card)
        else:
            (path / SAVED_MODEL_ASSET).parent.mkdir(exist_ok=True)
            (path / SAVED_MODEL_ASSET).write_text(card.to_text())


@contextlib.contextmanager
def atomic_export(
    path: Path, fmt: str, before_replace: Callable[[], None] | None = None
) -> Iterator[Path]:
    """A temporary path beside `path` (file or, for a SavedModel, folder) moved over it when
    the block succeeds; on failure nothing is left and an earlier export stays as it was.
    `before_replace` runs just before the move (files.atomic_path): whoever calls this has
    checked what may be replaced (files.check_target); nothing here deletes anything else."""
    if fmt != "saved_model":
        with files.atomic_path(path, before_replace) as tmp:
            yield tmp
        return
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent))
    old = Path(tempfile.mkdtemp(prefix=f".{path.name}.", suffix=".old", dir=path.parent))
    try:
        shutil.rmtree(tmp)  # Keras writes the folder itself
        yield tmp
        if before_replace is not None:
            before_replace()
        if path.is_dir():  # a SavedModel (or an empty folder): moved aside, then removed
            os.replace(path, old / "previous")
        os.replace(tmp, path)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
        shutil.rmtree(old, ignore_errors=True)


def convert(
    model,
    fmt: str,
    quantize: str,
    path: str | Path,
    card: ModelCard | None = None,
    calibration: np.ndarray | None = None,
) -> Path:
    """The (float32) model exported to `path`, unchecked (export.export_checked checks);
    atomic."""
    path = Path(path)
    with atomic_export(path, fmt) as tmp:
        write_export(model, fmt, quantize, tmp, card, calibration)
    return path
