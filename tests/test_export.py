"""`cnn export`: real exports of the tiny trained model in every format and precision, each
checked against Keras, recorded in its run, and read back by predict and evaluate."""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from cnn_mnist.cli import cli
from cnn_mnist.core.errors import ExportError, ModelFileError
from cnn_mnist.stages import export, handle
from cnn_mnist.tools import exporting, predict
from tests.conftest import cnn_process

CASES = [
    ("litert", "none"),
    ("litert", "float16"),
    ("litert", "int8"),
    ("onnx", "none"),
    ("onnx", "float16"),
    ("onnx", "int8"),
    ("saved_model", "none"),
]


@pytest.mark.parametrize("fmt, quantize", CASES)
def test_every_format_round_trips(own_run, idx_folder, fmt, quantize):
    model, logs, result = own_run
    done = exporting.export_model(model, fmt, quantize, data_path=str(idx_folder), log_dir=logs)
    c = done.checks
    assert done.path == exporting.default_out(model, fmt, quantize) and done.path.exists()
    assert c.images == 128 and c.bytes == done.bytes > 0 and c.ms_per_image > 0
    assert c.keras_ms_per_image > 0
    if quantize == "none":
        assert c.max_prob_diff <= export.FLOAT_TOLERANCE and c.agreement == 1.0
        assert c.export_accuracy == c.keras_accuracy
    else:
        assert c.accuracy_drop <= export.ALLOWED_DROP
    opened = handle.open_saved(done.path)
    original = handle.open_saved(model)
    assert opened.format == fmt and opened.run_id == result.run_id
    assert opened.class_names == original.class_names and opened.dataset == original.dataset
    card = opened.card.to_json()  # the model's, less its .tflite's checksum, and the export's
    assert list(card) == ["run_id", "config", "dataset", "class_names", "input_shape", "export"]
    assert card["export"] == {"format": fmt, "quantize": quantize}
    assert card["config"] == original.card.config and card["input_shape"] == [28, 28, 1]
    ours = predict.predict(["0:20"], model_path=done.path, data_path=str(idx_folder)).items
    theirs = predict.predict(["0:20"], model_path=model, data_path=str(idx_folder)).items
    same = np.mean([a.predicted == b.predicted for a, b in zip(ours, theirs)])
    assert same == 1.0 if quantize == "none" else same >= 0.9
    record = json.loads((logs / result.run_id / "run.json").read_text())
    entry = record["exports"][-1]
    assert entry["format"] == fmt and entry["quantize"] == quantize
    assert entry["path"] == str(done.path.resolve()) and entry["bytes"] == done.bytes
    assert entry["checks"]["agreement"] == c.agreement


def test_quantized_exports_are_smaller(own_run, idx_folder):
    model, logs, _ = own_run
    sizes = {
        q: exporting.export_model(model, "litert", q, data_path=str(idx_folder), log_dir=logs).bytes
        for q in ("none", "float16", "int8")
    }
    assert sizes["int8"] < sizes["float16"] < sizes["none"]


def test_evaluate_reads_an_export_as_the_model(own_run, idx_folder, tmp_path):
    from cnn_mnist.tools.evaluation import evaluate_model

    model, logs, _ = own_run
    done = exporting.export_model(model, "onnx", data_path=str(idx_folder), log_dir=logs)
    ours = evaluate_model(done.path, str(idx_folder), tmp_path / "a")
    theirs = evaluate_model(model, str(idx_folder), tmp_path / "b")
    assert ours.evaluation.accuracy == theirs.evaluation.accuracy == done.checks.export_accuracy
    np.testing.assert_array_equal(ours.evaluation.confusion, theirs.evaluation.confusion)
    assert abs(ours.evaluation.loss - theirs.evaluation.loss) < 1e-5


def test_train_writes_a_checked_litert_export(tiny_trained):
    """The .tflite beside the model is made and checked by the same code, and recorded."""
    model_path, result = tiny_trained
    record = json.loads((result.run_dir / "run.json").read_text())
    (entry,) = record["exports"]
    assert entry["format"] == "litert" and entry["quantize"] == "none"
    assert entry["path"] == str(result.run_dir / "model.tflite")
    assert entry["checks"]["max_prob_diff"] <= export.FLOAT_TOLERANCE
    assert entry["checks"]["agreement"] == 1.0 and entry["checks"]["images"] == 128
    assert handle.open_saved(Path(model_path).with_suffix(".tflite")).run_id == result.run_id


def test_runs_show_lists_the_exports(own_run, idx_folder):
    from cnn_mnist.tools.run_tables import format_show

    model, logs, result = own_run
    exporting.export_model(model, "onnx", "int8", data_path=str(idx_folder), log_dir=logs)
    text = format_show(logs / result.run_id)
    assert "Exports   checked on the test set against Keras" in text
    assert "  litert float32: " in text and "  onnx int8: " in text and "tiny_int8.onnx" in text


def _checks(**changes) -> export.Checks:
    values = dict(
        images=1000,
        keras_accuracy=0.99,
        export_accuracy=0.99,
        agreement=1.0,
        max_prob_diff=1e-7,
        bytes=1,
        ms_per_image=0.1,
    )
    return export.Checks(**{**values, **changes})


def test_judge_float_and_quantized():
    export.judge(_checks(), "onnx", "none")
    with pytest.raises(
        ExportError,
        match="largest probability difference 0.003 .* 2 of 1,000 "
        "predictions differ; nothing was written",
    ):
        export.judge(_checks(max_prob_diff=3e-3, agreement=0.998), "onnx", "none")
    export.judge(_checks(export_accuracy=0.986, max_prob_diff=0.1), "litert", "int8")
    with pytest.raises(ExportError, match=r"loses 0.70 points .* pass --allow-drop 0.70"):
        export.judge(_checks(export_accuracy=0.983), "litert", "int8")
    export.judge(_checks(export_accuracy=0.983), "litert", "int8", allow_drop=1)
    with pytest.raises(ExportError, match="loses"):  # a NaN limit lets nothing through
        export.judge(_checks(export_accuracy=0.983), "litert", "int8", allow_drop=float("nan"))
    with pytest.raises(ExportError, match="does not answer as the Keras model does"):
        export.judge(_checks(max_prob_diff=float("nan")), "onnx", "none")


def test_a_quantized_export_that_loses_too_much_is_not_written(own_run, idx_folder):
    model, logs, _ = own_run
    # The tiny model loses nothing in int8: asking for a point gained makes the check fail.
    with pytest.raises(ExportError, match="more than the -1 allowed"):
        export.export_checked(
            handle.open_saved(model).keras_model(),
            "litert",
            "int8",
            logs / "x.tflite",
            *_test_set(model, idx_folder),
            calibration=_test_set(model, idx_folder)[0][:50],
            allow_drop=-1,
        )
    assert not (logs / "x.tflite").exists() and not list(logs.glob(".x*"))


def _test_set(model, idx_folder):
    from cnn_mnist.stages.data import load_mnist, prepare_images
    from cnn_mnist.stages.evaluate import predict_probabilities

    mnist = load_mnist(str(idx_folder), test_only=True)
    x = prepare_images(mnist.x_test)
    keras = handle.open_saved(model).keras_model()
    return x, mnist.y_test.astype(np.int64), predict_probabilities(keras, x)


def test_cli_export_refuses_allow_drop_nan(tmp_path):
    result = CliRunner().invoke(
        cli, ["export", "-m", str(tmp_path / "missing.h5"), "-f", "onnx", "--allow-drop", "nan"]
    )
    assert result.exit_code == 1 and "Traceback" not in result.output
    assert (
        result.output
        == "error: --allow-drop nan: expected points of accuracy, a number 0 or more\n"
    )


def test_cli_export_and_json(own_run, idx_folder):
    model, _, _ = own_run
    runner = CliRunner()
    out = model.parent / "digits.onnx"
    result = runner.invoke(
        cli,
        [
            "export",
            "--model",
            str(model),
            "--format",
            "onnx",
            "--out",
            str(out),
            "--data",
            str(idx_folder),
        ],
    )
    assert result.exit_code == 0, result.output
    assert f"Exported onnx (float32) to {out}" in result.output
    assert "Checked on 128 test images against Keras" in result.output
    result = runner.invoke(
        cli,
        [
            "export",
            "-m",
            str(model),
            "-f",
            "litert",
            "--quantize",
            "int8",
            "--data",
            str(idx_folder),
            "--json",
        ],
    )
    assert result.exit_code == 0, result.output
    answer = json.loads(result.output)
    assert answer["format"] == "litert" and answer["quantize"] == "int8"
    assert answer["checks"]["images"] == 128 and Path(answer["path"]).is_file()
    result = runner.invoke(cli, ["export", "--model", str(model), "--format", "tfjs"])
    assert result.exit_code == 2 and "'tfjs' is not one of" in result.output
    result = runner.invoke(
        cli, ["export", "--model", str(model.with_name("none.h5")), "--format", "onnx"]
    )
    assert result.exit_code == 1 and result.output.startswith("error: model file not found")
    assert "Traceback" not in result.output


def test_exported_models_predict_as_the_h5_in_a_process(own_run, idx_folder):
    """`cnn export` then `cnn predict --model` on each file, as a user runs them; the .onnx
    and .tflite are read without TensorFlow."""

    model, logs, result = own_run
    env = {**os.environ, "CNN_MNIST_DATA": str(idx_folder)}
    done = cnn_process(
        ["export", "-m", str(model), "-f", "onnx", "--quantize", "int8"], model.parent, env
    )
    assert done.returncode == 0, done.stderr[-2000:]
    assert "Exported onnx (int8)" in done.stdout
    answers = {}
    lite = logs / result.run_id / "model.tflite"  # the one `cnn train` wrote and checked
    for path in [model, model.with_name("tiny_int8.onnx"), lite]:
        shown = cnn_process(
            ["predict", "--index", "10", "--model", str(path), "--no-draw"], model.parent, env
        )
        assert shown.returncode == 0, shown.stderr[-2000:]
        answers[path.suffix] = shown.stdout.split("(")[0]
    assert answers[".onnx"] == answers[".h5"] == answers[".tflite"]
    code = (
        "import sys; from cnn_mnist.tools import predict; "
        f"print(predict.predict(['10'], model_path={str(model.with_name('tiny_int8.onnx'))!r}"
        f", data_path={str(idx_folder)!r}).items[0].predicted, 'tensorflow' in sys.modules)"
    )
    import subprocess
    import sys

    plain = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=Path(__file__).resolve().parent.parent,
    )
    assert plain.returncode == 0, plain.stderr[-2000:]
    assert plain.stdout.split()[1] == "False"


def test_serve_serves_an_export(own_run, idx_folder):
    """`cnn serve --model x.onnx`: predictions and test digits through ONNX Runtime; the
    network's views need the Keras model and say so (422)."""
    from cnn_mnist.tools import serve

    model, logs, result = own_run
    done = exporting.export_model(model, "onnx", data_path=str(idx_folder), log_dir=logs)
    app = serve.App(done.path, data_path=str(idx_folder), log_dir=logs)
    about = app.model()
    assert about["backend"] == "onnx" and about["run_id"] == result.run_id
    answer = app.test_digit(10)
    theirs = predict.predict(["10"], model_path=model, data_path=str(idx_folder)).items[0]
    assert answer["predicted"] == theirs.predicted and answer["label"] == theirs.label
    with pytest.raises(ModelFileError, match="needs a Keras model") as caught:
        app.features(np.zeros((28, 28), np.float32))
    assert serve.error_status(caught.value) == 422


# --- what --out may replace (docs/guides/your-files.md) ---------------------------------------
