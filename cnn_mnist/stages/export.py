"""`cnn export`: the trained model as SavedModel, LiteRT or ONNX, checked against Keras.

One conversion (formats.py, through Keras's own `model.export`) serves `cnn export` and the
.tflite `cnn train` writes beside the model, and both are checked here the same way. Every
export is run by its own runtime on the
model's whole test set before it is put in place (`export_checked`): a float export must agree
with Keras to float rounding, a quantized one may lose at most `allow_drop` points of accuracy.
The export carries the model's card (card.py) in the format's own place (see formats.py), so
`cnn predict/evaluate/serve --model` read it as they read the .h5.
"""

from __future__ import annotations

import json
import logging
import math
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Callable

import numpy as np

from cnn_mnist.core import files
from cnn_mnist.core.errors import ExportError, ModelFileError, OutputError
from cnn_mnist.stages.card import ModelCard
from cnn_mnist.stages.formats import FORMATS, QUANTIZATIONS, atomic_export, write_export

log = logging.getLogger(__name__)

# Largest probability difference a float32 export may show against Keras: the same float32
# arithmetic in another order (fused kernels, another GEMM) differs by ~1e-7 per value.
FLOAT_TOLERANCE = 1e-4
ALLOWED_DROP = 0.5  # points of test accuracy a quantized export may lose by default
CALIBRATION_IMAGES = 300  # training images for int8's activation ranges
TIMED_IMAGES = 200  # test images timed one at a time (batch 1), after a warm-up


@dataclass
class Checks:
    """The export run by its own runtime on the test set, against Keras."""

    images: int
    keras_accuracy: float
    export_accuracy: float
    agreement: float  # share of test images where both predict the same class
    max_prob_diff: float  # largest difference in any probability
    bytes: int
    ms_per_image: float  # batch 1, this CPU
    keras_ms_per_image: float | None = None

    @property
    def accuracy_drop(self) -> float:
        """Points of test accuracy lost (negative: gained)."""
        return round((self.keras_accuracy - self.export_accuracy) * 100, 4)

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "accuracy_drop_points": self.accuracy_drop}


@dataclass
class Export:
    """One export: what, where, how big, and its checks (as run.json's `exports` has it)."""

    format: str
    quantize: str
    path: Path
    bytes: int
    checks: Checks
    recorded_in: Path | None = None  # the run.json it was added to

    def to_dict(self) -> dict[str, Any]:
        return {
            "format": self.format,
            "quantize": self.quantize,
            "path": str(self.path),
            "bytes": self.bytes,
            "checks": self.checks.to_dict(),
        }


# --- what may be asked -----------------------------------------------------------------------


def check_request(
    fmt: str, quantize: str, out: str | Path | None, allow_drop: float | None = None
) -> None:
    """Cheap checks of what was asked, before anything is read."""
    # Not `allow_drop < 0` alone: a NaN limit is never exceeded, so every export would pass.
    if allow_drop is not None and not (math.isfinite(allow_drop) and allow_drop >= 0):
        raise ExportError(
            f"--allow-drop {allow_drop:g}: expected points of accuracy, a number 0 or more"
        )
    if fmt not in FORMATS:
        raise ExportError(f"unknown export format {fmt!r}: expected one of {', '.join(FORMATS)}")
    if quantize not in QUANTIZATIONS:
        raise ExportError(
            f"unknown quantization {quantize!r}: expected one of {', '.join(QUANTIZATIONS)}"
        )
    if fmt == "saved_model" and quantize != "none":
        raise ExportError(
            "a SavedModel is exported in float32 only (quantization belongs to "
            "the converter that reads it): use --format litert or onnx with "
            f"--quantize {quantize}"
        )
    if out is not None and FORMATS[fmt] and Path(out).suffix != FORMATS[fmt]:
        raise ExportError(f"--out {out}: a {fmt} export is a file ending in {FORMATS[fmt]}")


def default_out(model_path: str | Path, fmt: str, quantize: str) -> Path:
    """Beside the model, named by format and precision: models/x_int8.tflite,
    models/x_float32.onnx, models/x_saved_model/. Never the .tflite `cnn train` keeps beside
    the model for predict's fast path."""
    model_path = Path(model_path)
    precision = "float32" if quantize == "none" else quantize
    if fmt == "saved_model":
        return model_path.with_name(f"{model_path.stem}_saved_model")
    return model_path.with_name(f"{model_path.stem}_{precision}{FORMATS[fmt]}")


# --- conversion ------------------------------------------------------------------------------


def export_card(card: ModelCard | None, fmt: str, quantize: str) -> ModelCard:
    """The model's card as the export carries it: what the .h5 has (the run, the config,
    dataset and class names; not the checksum of its own LiteRT export), the input it takes,
    and what kind of export it is."""
    from cnn_mnist.stages.save import EXPECTED_INPUT

    out = {k: v for k, v in (card.to_json() if card else {}).items() if k != "litert_sha256"}
    out.update(input_shape=list(EXPECTED_INPUT), export={"format": fmt, "quantize": quantize})
    return ModelCard.read(out)


# --- the checks ------------------------------------------------------------------------------


def _size(path: Path) -> int:
    if path.is_dir():
        return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())
    return path.stat().st_size


def ms_per_image(predictor, x: np.ndarray, count: int = TIMED_IMAGES) -> float:
    """Milliseconds per image, one image per call (batch 1), after a warm-up."""
    images = [x[i : i + 1] for i in range(min(count, len(x)))]
    for image in images[:10]:
        predictor(image)
    start = time.perf_counter()
    for image in images:
        predictor(image)
    return round((time.perf_counter() - start) / len(images) * 1000, 4)


def check(
    path: Path, x: np.ndarray, labels: np.ndarray, keras_probs: np.ndarray, keras_model=None
) -> Checks:
    """The export at `path` run by its own runtime on `x`, against Keras's `keras_probs`
    (and Keras's own time per image, where `keras_model` is given)."""
    from cnn_mnist.stages.evaluate import predict_probabilities, traced
    from cnn_mnist.stages.handle import SavedModel

    predictor, _ = SavedModel.open(path).predictor()
    probs = predict_probabilities(predictor, x)
    ours, theirs = probs.argmax(axis=1), keras_probs.argmax(axis=1)
    keras_ms = None
    if keras_model is not None:
        keras_ms = ms_per_image(traced(keras_model), x)
    return Checks(
        images=len(x),
        keras_accuracy=float((theirs == labels).mean()),
        export_accuracy=float((ours == labels).mean()),
        agreement=float((ours == theirs).mean()),
        max_prob_diff=float(np.abs(probs - keras_probs).max()),
        bytes=_size(path),
        ms_per_image=ms_per_image(predictor, x),
        keras_ms_per_image=keras_ms,
    )


def judge(checks: Checks, fmt: str, quantize: str, allow_drop: float | None = None) -> None:
    """A float export that differs from Keras beyond float rounding, or a quantized one that
    loses more than `allow_drop` points (default ALLOWED_DROP), is an error."""
    differ = round((1 - checks.agreement) * checks.images)
    if quantize == "none":
        if not checks.max_prob_diff <= FLOAT_TOLERANCE:  # NaN probabilities fail too
            raise ExportError(
                f"the {fmt} export does not answer as the Keras model does: largest probability "
                f"difference {checks.max_prob_diff:.2g} (float rounding is below "
                f"{FLOAT_TOLERANCE:g}), {differ} of {checks.images:,} predictions differ; "
                "nothing was written"
            )
        return
    allowed = ALLOWED_DROP if allow_drop is None else allow_drop
    if not checks.accuracy_drop <= allowed:  # a NaN limit or drop passes nothing
        raise ExportError(
            f"the {quantize} {fmt} export loses {checks.accuracy_drop:.2f} points of test "
            f"accuracy ({checks.keras_accuracy:.4f} -> {checks.export_accuracy:.4f}), more than "
            f"the {allowed:g} allowed: pass --allow-drop {checks.accuracy_drop:.2f} to keep it, "
            "or export another --quantize; nothing was written"
        )


def export_checked(
    model,
    fmt: str,
    quantize: str,
    path: str | Path,
    x: np.ndarray,
    labels: np.ndarray,
    keras_probs: np.ndarray,
    card: ModelCard | None = None,
    calibration: np.ndarray | None = None,
    allow_drop: float | None = None,
    time_keras: bool = False,
    before_replace: Callable[[], None] | None = None,
) -> Export:
    """Convert, check on the test set against Keras, judge; only then put it at `path`
    (`before_replace` checks, just before, that what is there may be replaced)."""
    from cnn_mnist.stages.save import float32_copy

    path, model = Path(path), float32_copy(model)
    try:
        with atomic_export(path, fmt, before_replace) as tmp:
            write_export(model, fmt, quantize, tmp, export_card(card, fmt, quantize), calibration)
            checks = check(tmp, x, labels, keras_probs, model if time_keras else None)
            judge(checks, fmt, quantize, allow_drop)
    except OSError as exc:
        raise files.write_error(exc, path, f"the {fmt} export", advise=True) from None
    return Export(fmt, quantize, path, checks.bytes, checks)


def export_is_ours(fmt: str) -> Callable[[Path], bool]:
    """Whether what is at a path is a `cnn export` of format `fmt` (its card says so), which
    exporting again may replace."""

    def ours(path: Path) -> bool:
        from cnn_mnist.stages.handle import open_saved

        try:
            export = open_saved(path).card.export
        except Exception:  # noqa: BLE001 - unreadable: not ours to replace
            return False
        return export is not None and export.format == fmt

    return ours


def check_out(out: Path, fmt: str, overwrite: bool) -> None:
    """What is at `out` may be replaced by this export (files.check_target)."""
    files.check_target(
        out,
        what=f"{fmt} export",
        folder=fmt == "saved_model",
        ours=export_is_ours(fmt),
        overwrite=overwrite,
        folder_kind=lambda p: (p / "saved_model.pb").is_file(),
    )


# --- `cnn export` ----------------------------------------------------------------------------


def record_export(log_dir: str | Path, run_id: str | None, export: Export) -> Path | None:
    """The export added to its run's run.json (`exports`, one entry per path), if the run is
    in `log_dir`."""
    if not run_id:
        return None
    record = Path(log_dir) / run_id / "run.json"
    try:
        data = json.loads(record.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    entry = export.to_dict()
    entry["path"] = str(Path(entry["path"]).resolve())
    exports = [e for e in data.get("exports") or [] if e.get("path") != entry["path"]]
    data["exports"] = [*exports, entry]
    try:
        return files.write_json(record, data)
    except OSError as exc:  # the export is written and checked; only its note is missing
        log.warning(
            "%s; the export is written, but not listed in its run's record",
            files.write_error(exc, record, "the export's entry"),
        )
        return None


def out_path(
    model_path: str | Path, fmt: str, quantize: str, out: str | Path | None, overwrite: bool
) -> Path:
    """Where the export goes (--out, or beside the model), checked before any work."""
    out = Path(out) if out is not None else default_out(model_path, fmt, quantize)
    if out.resolve() == Path(model_path).resolve():
        raise OutputError(f"--out {out}: that is the model itself; choose another path")
    if out.resolve() == Path(model_path).with_suffix(".tflite").resolve():
        raise OutputError(
            f"--out {out}: that is the .tflite `cnn train` keeps beside the model for "
            "`cnn predict`; choose another path"
        )
    files.check_place(out.parent, f"{fmt} export", "--out", out)  # made when it is written
    check_out(out, fmt, overwrite)
    return out


def export_model(
    model_path: str | Path,
    fmt: str,
    quantize: str = "none",
    out: str | Path | None = None,
    data_path: str | None = None,
    allow_drop: float | None = None,
    verbose: bool = False,
    log_dir: str | Path | None = None,
    overwrite: bool = False,
) -> Export:
    """`cnn export`: the saved Keras model at `model_path` as `fmt`, checked on its whole test
    set (read as its dataset), recorded in its run's run.json. What is at the export's path
    is replaced only if it is an earlier export of this format, or with `overwrite`."""
    from cnn_mnist.core import paths
    from cnn_mnist.stages.data import load_for_model, load_mnist, prepare_images
    from cnn_mnist.stages.handle import open_saved

    check_request(fmt, quantize, out, allow_drop)
    saved = open_saved(model_path)
    if not saved.is_keras:
        raise ModelFileError(
            f"{model_path}: `cnn export` needs the Keras model (.h5 or .keras) "
            "an export was made from, not an export"
        )
    out = out_path(model_path, fmt, quantize, out, overwrite)
    mnist = load_for_model(data_path, saved.dataset, None, f"model {model_path}")
    calibration = None
    if quantize == "int8":  # a few hundred training images, the same ones every time
        train = load_mnist(data_path, dataset=saved.dataset).x_train
        pick = np.random.default_rng(0).choice(
            len(train), min(CALIBRATION_IMAGES, len(train)), replace=False
        )
        calibration = prepare_images(train[np.sort(pick)], normalize=saved.normalize)
    from cnn_mnist.stages.evaluate import predict_probabilities, traced

    model, _ = saved.predictor(verbose=verbose, fast=False)
    x = prepare_images(mnist.x_test, normalize=saved.normalize)
    labels = mnist.y_test.astype(np.int64)
    keras_probs = predict_probabilities(traced(model), x)
    done = export_checked(
        model,
        fmt,
        quantize,
        out,
        x,
        labels,
        keras_probs,
        saved.card,
        calibration,
        allow_drop,
        time_keras=True,
        before_replace=lambda: check_out(out, fmt, overwrite),
    )
    done.recorded_in = record_export(log_dir or paths.LOG_DIR, saved.run_id, done)
    return done


def format_export(done: Export) -> str:
    """What `cnn export` prints: where, how big, and how it answers against Keras."""
    c = done.checks
    what = "float32" if done.quantize == "none" else done.quantize
    keras_ms = f" (Keras {c.keras_ms_per_image:.3f} ms)" if c.keras_ms_per_image else ""
    lines = [
        f"Exported {done.format} ({what}) to {done.path}{'/' if done.path.is_dir() else ''}"
        f" ({c.bytes / 1e6:.2f} MB)",
        f"Checked on {c.images:,} test images against Keras: accuracy "
        f"{c.export_accuracy:.4f} (Keras {c.keras_accuracy:.4f}, drop "
        f"{c.accuracy_drop:.2f} points), same prediction on {c.agreement:.2%}, largest "
        f"probability difference {c.max_prob_diff:.2g}",
        f"Time per image at batch 1: {c.ms_per_image:.3f} ms{keras_ms}",
    ]
    if done.recorded_in:
        lines.append(f"Recorded in {done.recorded_in}")
    return "\n".join(lines)
