"""`cnn export`'s library: what may be asked, where the export may go and what it may replace,
and its note in the run's run.json."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from cnn_mnist.core.errors import ExportError, ModelFileError, OutputError
from cnn_mnist.stages import handle
from cnn_mnist.tools import exporting


def test_bad_requests(own_run, idx_folder, tmp_path):
    model, logs, _ = own_run
    cases = [
        (
            dict(fmt="tfjs"),
            ExportError,
            "unknown export format 'tfjs': expected one of saved_model, litert, onnx",
        ),
        (dict(fmt="onnx", quantize="int4"), ExportError, "unknown quantization 'int4'"),
        (
            dict(fmt="saved_model", quantize="int8"),
            ExportError,
            "SavedModel is exported in float32 only",
        ),
        (
            dict(fmt="onnx", out=tmp_path / "m.tflite"),
            ExportError,
            "a onnx export is a file ending in .onnx",
        ),
        (
            dict(fmt="onnx", out=tmp_path / "file" / "m.onnx"),
            OutputError,
            "cannot write the onnx export",
        ),
        (
            dict(fmt="litert", out=model.with_suffix(".tflite"), allow_drop=-2),
            ExportError,
            "--allow-drop -2: expected points of accuracy",
        ),
    ]
    (tmp_path / "file").write_text("a file where a folder should be")
    for kwargs, kind, message in cases:
        with pytest.raises(kind, match=message.replace("(", r"\(").replace(".", r"\.")):
            exporting.export_model(
                model, data_path=str(idx_folder), log_dir=logs, **{"quantize": "none", **kwargs}
            )
    (tmp_path / "notes.h5").write_text("not a model")
    with pytest.raises(ModelFileError, match="notes.h5: not a readable Keras model"):
        exporting.export_model(tmp_path / "notes.h5", "onnx", data_path=str(idx_folder))
    lite = exporting.export_model(model, "litert", data_path=str(idx_folder), log_dir=logs).path
    with pytest.raises(ModelFileError, match="needs the Keras model .* not an export"):
        exporting.export_model(lite, "onnx", data_path=str(idx_folder))
    assert sorted(p.name for p in model.parent.iterdir()) == ["tiny.h5", "tiny_float32.tflite"]


@pytest.mark.parametrize("allow_drop", [float("nan"), float("inf"), float("-inf"), -0.5])
def test_an_allow_drop_that_is_not_a_finite_number_is_refused_first(tmp_path, allow_drop):
    # Before: NaN passed `allow_drop < 0`, and as a limit no drop exceeds, every export passed.
    # Refused before the model or any data is read (neither exists here).
    with pytest.raises(ExportError) as info:
        exporting.export_model(
            tmp_path / "missing.h5",
            "litert",
            "int8",
            data_path=str(tmp_path / "no-data"),
            allow_drop=allow_drop,
        )
    assert str(info.value) == (
        f"--allow-drop {allow_drop:g}: expected points of accuracy, a number 0 or more"
    )


def _tree(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in folder.rglob("*") if p.is_file()}


def test_a_folder_holding_other_files_is_never_replaced(own_run, idx_folder):
    """`--out models` deleted the model being exported, and everything beside it."""
    model, logs, _ = own_run
    before = _tree(model.parent)
    for overwrite in (False, True):
        with pytest.raises(OutputError, match="is a folder holding other files.*tiny.h5"):
            exporting.export_model(
                model,
                "saved_model",
                out=model.parent,
                data_path=str(idx_folder),
                log_dir=logs,
                overwrite=overwrite,
            )
        assert _tree(model.parent) == before
    assert not [p for p in model.parent.parent.iterdir() if p.name.startswith(".")]


def test_out_is_never_the_tflite_train_keeps_beside_the_model(own_run, idx_folder):
    model, logs, _ = own_run
    lite = model.with_suffix(".tflite")
    with pytest.raises(OutputError, match="the .tflite `cnn train` keeps beside the model"):
        exporting.export_model(model, "litert", out=lite, data_path=str(idx_folder), log_dir=logs)
    assert not lite.exists()


def test_a_file_is_not_replaced_by_a_folder_nor_left_as_a_hidden_old(own_run, idx_folder):
    model, logs, _ = own_run
    mine = model.parent / "notes.bin"
    mine.write_bytes(b"the user's")
    with pytest.raises(OutputError, match="is a file; the saved_model export is a folder"):
        exporting.export_model(
            model, "saved_model", out=mine, data_path=str(idx_folder), log_dir=logs
        )
    assert mine.read_bytes() == b"the user's"
    assert sorted(p.name for p in model.parent.iterdir()) == ["notes.bin", "tiny.h5"]


@pytest.mark.parametrize("fmt, name", [("onnx", "app.onnx"), ("saved_model", "serving")])
def test_out_replaces_its_own_export_and_anything_else_only_with_overwrite(
    own_run, idx_folder, fmt, name
):
    model, logs, _ = own_run
    out = model.parent / name
    if fmt == "saved_model":  # a SavedModel from elsewhere: a folder with saved_model.pb
        out.mkdir()
        (out / "saved_model.pb").write_bytes(b"someone else's")
    else:
        out.write_bytes(b"someone else's")
    before = _tree(model.parent)
    with pytest.raises(OutputError, match="exists and was not written by cnn-mnist.*--overwrite"):
        exporting.export_model(model, fmt, out=out, data_path=str(idx_folder), log_dir=logs)
    assert _tree(model.parent) == before
    done = exporting.export_model(
        model, fmt, out=out, data_path=str(idx_folder), log_dir=logs, overwrite=True
    )
    first = _tree(model.parent)
    assert first != before and handle.open_saved(done.path).card.export.format == fmt
    exporting.export_model(model, fmt, out=out, data_path=str(idx_folder), log_dir=logs)  # its own
    assert handle.open_saved(out).card.export.format == fmt
    assert sorted(p.name for p in model.parent.iterdir()) == sorted([name, "tiny.h5"])


def test_an_export_whose_record_cannot_be_updated_is_kept_with_a_warning(
    own_run, idx_folder, caplog
):
    model, logs, result = own_run
    record = logs / result.run_id / "run.json"
    before = record.read_bytes()
    (logs / result.run_id).chmod(0o555)
    record.chmod(0o444)
    try:
        if os.access(record, os.W_OK):
            pytest.skip("root can write anywhere: test_faults.py does it on a read-only disk")
        done = exporting.export_model(model, "onnx", data_path=str(idx_folder), log_dir=logs)
    finally:
        (logs / result.run_id).chmod(0o755)
        record.chmod(0o644)
    assert done.path.exists() and done.recorded_in is None
    assert "not listed in its run's record" in caplog.text
    assert record.read_bytes() == before
