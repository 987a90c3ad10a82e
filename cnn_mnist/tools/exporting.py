"""`cnn export`'s library: what was asked checked, where the export goes, the model read, its
test set run through the export the evaluate stage's way, and the export recorded in its run's
run.json. The conversion and its checks are the export stage's (stages/export.py), as `cnn
train` makes its .tflite."""

from __future__ import annotations

import json
import logging
import math
from pathlib import Path
from typing import Callable

import numpy as np

from cnn_mnist.core import files, paths
from cnn_mnist.core.errors import ExportError, ModelFileError, OutputError
from cnn_mnist.stages.data import load_for_model, load_mnist, prepare_images
from cnn_mnist.stages.evaluate import predict_probabilities, traced
from cnn_mnist.stages.export import Export, export_checked
from cnn_mnist.stages.formats import FORMATS, QUANTIZATIONS
from cnn_mnist.stages.handle import open_saved

log = logging.getLogger(__name__)

CALIBRATION_IMAGES = 300  # training images for int8's activation ranges


# --- what may be asked, and where it goes -------------------------------------------------------------------


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


def export_is_ours(fmt: str) -> Callable[[Path], bool]:
    """Whether what is at a path is a `cnn export` of format `fmt` (its card says so), which
    exporting again may replace."""

    def ours(path: Path) -> bool:
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


# --- the export ----------------------------------------------------------------------------------


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
