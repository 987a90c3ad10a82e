import json
import subprocess
import sys

import numpy as np
import pytest
from click.testing import CliRunner
from PIL import Image, ImageDraw

from cnn_mnist.cli import cli


@pytest.fixture
def runner():
    return CliRunner()


def invoke(runner, args, idx_folder):
    return runner.invoke(cli, [*args, "--data", str(idx_folder)])


def test_predict_one_index_draws_and_reports(runner, tiny_trained, idx_folder, tiny_mnist):
    model_path, _ = tiny_trained
    result = invoke(runner, ["predict", "--index", "5", "--model", str(model_path)], idx_folder)
    assert result.exit_code == 0, result.output
    assert "█" in result.output and len(result.output.splitlines()) >= 29
    assert (
        f"true label {tiny_mnist.y_test[5]}" in result.output
        and "index 5: predicted" in result.output
    )


def test_predict_several_and_json(runner, tiny_trained, idx_folder, tiny_mnist):
    model_path, _ = tiny_trained
    result = invoke(
        runner, ["predict", "-i", "1", "-i", "3:6", "--json", "-m", str(model_path)], idx_folder
    )
    assert result.exit_code == 0, result.output
    items = json.loads(result.output)
    assert [item["index"] for item in items] == [1, 3, 4, 5]
    assert [item["label"] for item in items] == tiny_mnist.y_test[[1, 3, 4, 5]].tolist()
    assert all(len(item["top3"]) == 3 and 0 <= item["predicted"] <= 9 for item in items)


def test_predict_matches_evaluation(runner, tiny_trained, idx_folder):
    model_path, result = tiny_trained
    out = invoke(runner, ["predict", "-i", "0:128", "--json", "-m", str(model_path)], idx_folder)
    predicted = [item["predicted"] for item in json.loads(out.output)]
    assert predicted == result.evaluation.predicted.tolist()


def test_predict_own_pictures(runner, tiny_trained, tmp_path, idx_folder):
    model_path, _ = tiny_trained
    image = Image.new("L", (200, 120), 230)
    ImageDraw.Draw(image).rectangle((20, 50, 180, 62), fill=10)
    image.save(tmp_path / "bar.png")
    (tmp_path / "junk.png").write_text("junk")
    result = runner.invoke(
        cli,
        [
            "predict",
            "--image",
            str(tmp_path / "bar.png"),
            "--image",
            str(tmp_path / "junk.png"),
            "-m",
            str(model_path),
            "--json",
            "--save-preprocessed",
            str(tmp_path / "seen"),
            "--save-image",
            str(tmp_path / "fig.png"),
        ],
    )
    assert result.exit_code == 1  # one picture failed
    assert "junk.png: not an image" in result.output and "Traceback" not in result.output
    assert len(list((tmp_path / "seen").glob("*.png"))) == 1
    assert (tmp_path / "fig.png").read_bytes()[:4] == b"\x89PNG"


def _bars(folder, count):
    """`count` pictures of a dark bar at different heights, named in order."""
    folder.mkdir(exist_ok=True)
    for n in range(count):
        image = Image.new("L", (200, 120), 230)
        ImageDraw.Draw(image).rectangle((20, 20 + 20 * n, 180, 32 + 20 * n), fill=10)
        image.save(folder / f"bar-{n}.png")
    return sorted(folder.glob("*.png"))


def test_several_paths_after_one_image_option_as_a_shell_glob_gives_them(
    runner, tiny_trained, tmp_path
):
    model_path, _ = tiny_trained
    pictures = [str(p) for p in _bars(tmp_path / "digits", 3)]
    result = runner.invoke(cli, ["predict", "--image", *pictures, "-m", str(model_path), "--json"])
    assert result.exit_code == 0, result.output
    assert [item["image"] for item in json.loads(result.output)] == pictures


def test_a_folder_gives_its_pictures_in_name_order(runner, tiny_trained, tmp_path):
    model_path, _ = tiny_trained
    pictures = _bars(tmp_path / "digits", 3)
    (tmp_path / "digits" / "notes.txt").write_text("not a picture")
    result = runner.invoke(
        cli, ["predict", "--image", str(tmp_path / "digits"), "-m", str(model_path), "--json"]
    )
    assert result.exit_code == 0, result.output
    assert [item["image"] for item in json.loads(result.output)] == [str(p) for p in pictures]
    (tmp_path / "empty").mkdir()
    empty = runner.invoke(
        cli, ["predict", "--image", str(tmp_path / "empty"), "-m", str(model_path)]
    )
    assert empty.exit_code == 1 and "no pictures in this folder" in empty.output


@pytest.mark.parametrize(
    "args, code, expected",
    [
        (["predict"], 2, "nothing to predict"),
        (["predict", "--index", "128"], 2, "valid indices are 0 to 127"),
        (["predict", "--index", "-3"], 2, "valid indices are 0 to 127"),
        (["predict", "--index", "ten"], 2, "not a number"),
        (["predict", "--index", "1", "--model", "missing.h5"], 1, "model file not found"),
    ],
)
def test_predict_errors(runner, idx_folder, args, code, expected, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "models").mkdir()
    (tmp_path / "models" / "digits_recognition_cnn.h5").write_bytes(b"x")
    result = invoke(runner, args, idx_folder)
    assert result.exit_code == code, result.output
    assert expected in result.output and "Traceback" not in result.output


@pytest.mark.parametrize(
    "content, expected",
    [
        (b"", "the file is empty"),
        (b"not hdf5 at all", "not a readable Keras model"),
    ],
)
def test_corrupt_model(runner, idx_folder, tmp_path, content, expected):
    (tmp_path / "bad.h5").write_bytes(content)
    for command in (["predict", "-i", "1"], ["evaluate"]):
        result = invoke(runner, [*command, "-m", str(tmp_path / "bad.h5")], idx_folder)
        assert result.exit_code == 1 and expected in result.output, result.output


def test_truncated_model(runner, tiny_trained, idx_folder, tmp_path):
    model_path, _ = tiny_trained
    (tmp_path / "cut.h5").write_bytes(model_path.read_bytes()[:5000])
    result = invoke(runner, ["predict", "-i", "1", "-m", str(tmp_path / "cut.h5")], idx_folder)
    assert result.exit_code == 1 and "truncated or corrupt" in result.output


def test_evaluate_reproduces_training(runner, tiny_trained, idx_folder, tmp_path):
    model_path, result = tiny_trained
    out = invoke(
        runner, ["evaluate", "-m", str(model_path), "--out", str(tmp_path / "ev")], idx_folder
    )
    assert out.exit_code == 0, out.output
    assert f"test accuracy {result.evaluation.accuracy:.4f}" in out.output
    saved = json.loads((tmp_path / "ev" / "confusion_matrix.json").read_text())
    assert np.array(saved["confusion_matrix"]["counts"]).sum() == 128
    assert saved["test_accuracy"] == pytest.approx(result.evaluation.accuracy)
    assert (tmp_path / "ev" / "mistakes.png").read_bytes()[:4] == b"\x89PNG"
    assert "precision" in out.output and "true\\pred" in out.output


def test_raw_pixel_model_gets_raw_pixels(runner, tiny_config_file, idx_folder, tmp_path):
    from cnn_mnist.config.load import load_config
    from cnn_mnist.training.pipeline import train

    result = train(load_config(tiny_config_file, sets=["data.normalize=false"]), progress=0)
    out = invoke(
        runner,
        ["evaluate", "-m", str(result.model_path), "--out", str(tmp_path / "ev")],
        idx_folder,
    )
    assert f"test accuracy {result.evaluation.accuracy:.4f}" in out.output


def test_predict_help_does_not_import_tensorflow():
    code = (
        "import sys; from cnn_mnist.cli import main; sys.argv = ['cnn', '%s', '--help']\n"
        "try:\n    main()\nexcept SystemExit:\n    pass\n"
        "assert 'tensorflow' not in sys.modules and 'keras' not in sys.modules"
    )
    for command in ("predict", "evaluate"):
        result = subprocess.run(
            [sys.executable, "-c", code % command], capture_output=True, text=True
        )
        assert result.returncode == 0, result.stderr


def test_bad_index_does_not_import_tensorflow(idx_folder):
    code = (
        "import sys; from cnn_mnist.cli import main\n"
        f"sys.argv = ['cnn', 'predict', '--index', '999', '--data', {str(idx_folder)!r}]\n"
        "try:\n    main()\nexcept SystemExit as e:\n    assert e.code == 2\n"
        "assert 'tensorflow' not in sys.modules"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr


# --- class names from the model file ----------------------------------------------------------

from tests.conftest import FASHION_NAMES, relabelled_model  # noqa: E402


def test_predict_names_classes_from_the_model(
    runner, tiny_trained, idx_folder, tiny_mnist, tmp_path
):
    model = relabelled_model(tiny_trained[0], tmp_path / "fashion.h5")
    result = invoke(
        runner,
        ["predict", "-i", "5", "-m", str(model), "--save-image", str(tmp_path / "p.png")],
        idx_folder,
    )
    assert result.exit_code == 0, result.output
    assert f"true label {FASHION_NAMES[tiny_mnist.y_test[5]]}" in result.output
    line = result.output.splitlines()[-1]
    assert (
        line.startswith("index 5: predicted ")
        and line.split("predicted ")[1].split(" (")[0] in FASHION_NAMES
    )
    assert (tmp_path / "p.png").read_bytes()[:4] == b"\x89PNG"
    items = json.loads(
        invoke(runner, ["predict", "-i", "0:4", "--json", "-m", str(model)], idx_folder).output
    )
    for item, label in zip(items, tiny_mnist.y_test[:4]):
        assert item["class_name"] == FASHION_NAMES[item["predicted"]]
        assert item["label_class_name"] == FASHION_NAMES[label]


def test_mnist_predict_json_names_are_digits(runner, tiny_trained, idx_folder):
    items = json.loads(
        invoke(
            runner, ["predict", "-i", "0:3", "--json", "-m", str(tiny_trained[0])], idx_folder
        ).output
    )
    assert all(item["class_name"] == str(item["predicted"]) for item in items)


def test_evaluate_names_classes_and_refuses_another_dataset(
    runner, tiny_trained, idx_folder, tmp_path
):
    model = relabelled_model(tiny_trained[0], tmp_path / "fashion.h5")
    result = invoke(
        runner, ["evaluate", "-m", str(model), "--out", str(tmp_path / "ev")], idx_folder
    )
    assert result.exit_code == 0, result.output
    assert "rows: true class" in result.output and "\n0 T-shirt/top " in result.output
    assert "\n9 Ankle boot " in result.output
    refused = invoke(runner, ["evaluate", "-m", str(model), "--dataset", "mnist"], idx_folder)
    assert refused.exit_code == 1
    assert refused.output.startswith(
        f"error: model {model} was trained on Fashion-MNIST, not MNIST"
    )
    assert "Traceback" not in refused.output


def test_a_15000_by_15000_picture_is_a_clear_error(runner, tiny_trained, tmp_path):
    # Once a DecompressionBombError traceback from Pillow; now one line, and the others go on.
    model_path, _ = tiny_trained
    Image.new("1", (15000, 15000), 1).save(tmp_path / "huge.png")  # 225 megapixels, a few kB
    Image.new("L", (200, 200), 255).save(tmp_path / "one.png")
    draw = ImageDraw.Draw(image := Image.open(tmp_path / "one.png").copy())
    draw.line([(100, 30), (100, 170)], fill=0, width=14)
    image.save(tmp_path / "one.png")
    result = runner.invoke(
        cli,
        [
            "predict",
            "--image",
            str(tmp_path / "huge.png"),
            str(tmp_path / "one.png"),
            "-m",
            str(model_path),
        ],
    )
    assert result.exit_code == 1
    assert (
        f"error: {tmp_path / 'huge.png'}: picture too large to read (225 megapixels); the limit "
        "is 40 megapixels"
    ) in result.output
    assert "one.png: predicted" in result.output and "Traceback" not in result.output


def test_predict_number_reads_a_row_of_digits(runner, tiny_trained, tmp_path):
    """--number on a picture of three drawn strokes: three boxes left to right, JSON as documented."""
    model_path, _ = tiny_trained
    picture = Image.new("L", (330, 130), 240)
    draw = ImageDraw.Draw(picture)
    for k in range(3):  # three 1s
        x = 50 + 100 * k
        draw.line([(x, 30), (x, 100)], fill=20, width=9)
    picture.save(tmp_path / "ones.png")
    result = runner.invoke(
        cli,
        [
            "predict",
            "-m",
            str(model_path),
            "--image",
            str(tmp_path / "ones.png"),
            "--number",
            "--json",
            "--save-preprocessed",
            str(tmp_path / "seen"),
        ],
    )
    assert result.exit_code == 0, result.output
    out = json.loads(result.output)
    assert out["image"].endswith("ones.png") and len(out["number"]) == 3
    lefts = [d["box"][0] for d in out["digits"]]
    assert lefts == sorted(lefts) and abs(lefts[0] - 45) <= 3
    assert all(0 <= d["predicted"] <= 9 and 0 <= d["probability"] <= 1 for d in out["digits"])
    assert len(list((tmp_path / "seen").glob("*.png"))) == 3
    text = runner.invoke(
        cli, ["predict", "-m", str(model_path), "--image", str(tmp_path / "ones.png"), "--number"]
    )
    assert text.exit_code == 0 and f"ones.png: {out['number']}  (" in text.output


def test_predict_number_bad_inputs(runner, tiny_trained, tmp_path):
    model_path, _ = tiny_trained
    Image.new("L", (200, 100), 240).save(tmp_path / "blank.png")
    result = runner.invoke(
        cli, ["predict", "-m", str(model_path), "--image", str(tmp_path / "blank.png"), "--number"]
    )
    assert result.exit_code == 1 and "blank.png: no digit found" in result.output
    assert "Traceback" not in result.output
    result = runner.invoke(cli, ["predict", "-m", str(model_path), "--index", "3", "--number"])
    assert result.exit_code == 2 and "--number reads your pictures" in result.output


# --- models of others' making (conftest.foreign_models), and `cnn export`'s ----------------------

FOREIGN_REFUSED = {
    "wrong_input": "the model takes inputs of shape (32, 32, 3), expected (28, 28, 1)",
    "five_outputs": "the model has outputs of shape (5,), expected (10,)",
    "linear": "the model's outputs are not probabilities (they sum to ",
}


def number_picture(path):
    """A 1, a 7 and a 0 drawn side by side, dark on light paper."""
    picture = Image.new("L", (330, 130), 240)
    draw = ImageDraw.Draw(picture)
    draw.line([(55, 25), (50, 105)], fill=20, width=9)
    draw.line([(120, 30), (180, 30), (140, 105)], fill=20, width=9)
    draw.ellipse([(230, 25), (290, 105)], outline=20, width=9)
    picture.save(path)
    return path


@pytest.mark.parametrize("fmt", ["onnx", "litert", "saved_model", "h5"])
@pytest.mark.parametrize("kind", FOREIGN_REFUSED)
def test_a_foreign_model_is_refused_in_one_line(
    runner, foreign_models, idx_folder, tmp_path, kind, fmt
):
    """Not a runtime's traceback, and not a 5-output model read as digits ("predicted 0")."""
    model = str(foreign_models[kind][fmt])
    picture = str(number_picture(tmp_path / "number.png"))
    commands = [
        ["predict", "--image", picture, "-m", model],
        ["predict", "--image", picture, "--number", "-m", model],
        ["evaluate", "-m", model, "--data", str(idx_folder), "--out", str(tmp_path / "ev")],
    ]
    for args in commands:
        result = runner.invoke(cli, args)
        assert result.exit_code == 1, (args, result.output)
        assert "Traceback" not in result.output and "predicted" not in result.output
        lines = result.output.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith(f"error: {model}: "), result.output
        assert FOREIGN_REFUSED[kind] in lines[0]


@pytest.fixture(scope="module")
def tiny_exports(tiny_trained, tmp_path_factory):
    """tiny_trained's model in each format, with its card: the .h5, the .tflite `cnn train`
    wrote beside it, and an .onnx and a SavedModel converted as `cnn export` converts."""
    from cnn_mnist.stages.export import export_card
    from cnn_mnist.stages.formats import convert
    from cnn_mnist.stages.handle import open_saved

    model_path, _ = tiny_trained
    handle = open_saved(model_path)
    folder = tmp_path_factory.mktemp("tiny-exports")
    paths = {"h5": model_path, "litert": model_path.with_suffix(".tflite")}
    model = handle.keras_model()
    model(np.zeros((1, 28, 28, 1), np.float32))  # Keras exports only a model that has been called
    for fmt, name in [("onnx", "tiny.onnx"), ("saved_model", "tiny_saved_model")]:
        card = export_card(handle.card, fmt, "none")
        paths[fmt] = convert(model, fmt, "none", folder / name, card)
    return paths


def test_predict_number_reads_with_every_export_as_with_the_h5(runner, tiny_exports, tmp_path):
    """--number takes whatever --image takes: the same digits, boxes and probabilities."""
    picture = str(number_picture(tmp_path / "number.png"))
    read = {}
    for fmt, path in tiny_exports.items():
        result = runner.invoke(
            cli, ["predict", "-m", str(path), "--image", picture, "--number", "--json"]
        )
        assert result.exit_code == 0, (fmt, result.output)
        read[fmt] = json.loads(result.output)
    h5 = read.pop("h5")
    assert len(h5["number"]) == 3
    for fmt, answer in read.items():
        assert answer["number"] == h5["number"], fmt
        assert [d["box"] for d in answer["digits"]] == [d["box"] for d in h5["digits"]], fmt
        np.testing.assert_allclose(
            [d["probability"] for d in answer["digits"]],
            [d["probability"] for d in h5["digits"]],
            atol=1e-4,
            err_msg=fmt,
        )
