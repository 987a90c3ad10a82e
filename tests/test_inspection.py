"""`cnn inspect`: feature maps, kernels, saliency, one value by hand, and the TensorBoard images.

Real TensorFlow throughout, on tiny models with known (seeded random) weights.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner
from numpy.testing import assert_allclose
from PIL import Image, ImageDraw

from cnn_mnist.analysis import network
from cnn_mnist.cli import cli
from cnn_mnist.tools import inspection as look
from tests.conftest import REPO, synthetic_digits

# Every window rule the config can build: valid, same with even and odd padding, strides 2,
# several input channels, max and average pooling, no activation.
WINDOW_LAYERS = [
    {"type": "Conv2D", "filters": 4, "kernel_size": 3, "activation": "relu"},  # 26x26x4
    {"type": "Conv2D", "filters": 5, "kernel_size": 3, "padding": "same"},  # 26x26x5, P = 1
    {
        "type": "Conv2D",
        "filters": 3,
        "kernel_size": 3,
        "strides": 2,
        "padding": "same",
        "activation": "relu",
    },  # 13x13x3, padded 0 before, 1 after
    {"type": "MaxPooling2D", "pool_size": 2, "padding": "same"},  # 7x7x3
    {"type": "AveragePooling2D", "pool_size": 3, "strides": 2},  # 3x3x3
    {"type": "Flatten"},
    {"type": "Dense", "units": 10, "activation": "softmax"},
]


def build(layers, seed=0):
    """A model from config layers, every weight drawn from a seeded normal distribution."""
    from cnn_mnist.config.schema import ModelConfig
    from cnn_mnist.stages.model import build_model

    model = build_model(ModelConfig.model_validate({"layers": layers}))
    rng = np.random.default_rng(seed)
    model.set_weights([rng.normal(0, 0.5, w.shape).astype(np.float32) for w in model.get_weights()])
    return model


@pytest.fixture(scope="module")
def window_model():
    return build(WINDOW_LAYERS)


@pytest.fixture(scope="module")
def digit():
    images, _ = synthetic_digits(1, seed=3)
    return images[0].astype(np.float32) / 255


# --- tiling ---------------------------------------------------------------------------------


def test_tile_places_channel_k_at_its_documented_spot_with_a_border():
    maps = np.random.default_rng(0).random((5, 7, 10)).astype(np.float32)
    tiled = network.tile(maps)
    rows, columns = network.grid_shape(10)
    assert (rows, columns) == (3, 4)
    assert tiled.shape == (1 + rows * 6, 1 + columns * 8)
    filled = np.zeros(tiled.shape, bool)
    for k in range(10):
        top, left = network.tile_origin(k, (5, 7), 10)
        assert_allclose(tiled[top : top + 5, left : left + 7], maps[:, :, k])
        filled[top : top + 5, left : left + 7] = True
    assert np.isnan(tiled[~filled]).all()  # borders and the two empty slots


# --- inspecting one digit -------------------------------------------------------------------


def test_grids_have_one_tile_per_channel_of_the_layer_output_size(window_model, digit, tmp_path):
    result = network.inspect_digit(window_model, digit, tmp_path, label=3)
    outs = network.activations(window_model, network.model_input(digit))
    assert [v.index for v in result.layers] == [0, 1, 2, 3, 4]
    for view in result.layers:
        maps = outs[view.index][0]
        assert (
            view.output_shape
            == maps.shape
            == tuple(window_model.layers[view.index].output.shape[1:])
        )
        h, w, c = maps.shape
        tiled = network.tile(maps)
        tiles = [
            tiled[t : t + h, s : s + w]
            for t, s in (network.tile_origin(k, (h, w), c) for k in range(c))
        ]
        assert len(tiles) == c and all(t.shape == (h, w) for t in tiles)
        for k, t in enumerate(tiles):
            assert_allclose(t, maps[:, :, k])
        assert np.isnan(tiled).sum() == tiled.size - h * w * c
        assert view.png.name == f"layer-{view.index}-{view.type.lower()}.png"
        with Image.open(view.png) as png:
            assert png.format == "PNG" and png.width > 200
        zero = sum(1 for k in range(c) if not maps[:, :, k].any())
        assert view.zero_channels == zero
        assert view.top_channels == list(np.argsort(-maps.mean(axis=(0, 1)), kind="stable")[:3])
    for name in ("input", "kernels", "saliency"):
        assert result.files[name] == tmp_path / f"{name}.png" and result.files[name].stat().st_size


def test_arithmetic_is_the_lecture_formula_with_padding_and_strides(window_model, digit, tmp_path):
    result = network.inspect_digit(window_model, digit, tmp_path)
    text = {v.index: v.arithmetic for v in result.layers}
    assert text[0] == "(28 - 3 + 2*0) / 1 + 1 = 26"
    assert text[1] == "(26 - 3 + 2*1) / 1 + 1 = 26"  # same padding, P = (K - 1) / 2
    assert text[2].startswith("ceil(26 / 2) = 13 (same padding: 0 zero row(s) before, 1 after")
    assert text[4] == "(7 - 3 + 2*0) / 2 + 1 = 3"
    out = look.format_inspection(result)
    assert "layer 0 Conv2D 26x26x4: (28 - 3 + 2*0) / 1 + 1 = 26" in out
    assert "channels all zero (dead for this input)" in out and "predicted" in out


def test_kernels_image_is_the_weights_on_a_symmetric_diverging_scale(window_model):
    import matplotlib

    first, maps = network.first_kernels(window_model)
    weights = np.asarray(window_model.layers[0].kernel)  # (3, 3, 1, 4)
    assert first == 0
    assert_allclose(maps, weights[:, :, 0, :])
    tiled = network.tile(maps)
    rgb = network.to_rgb8(tiled, "RdBu_r", symmetric=True)
    top = np.abs(weights).max()
    for k in range(4):
        t, s = network.tile_origin(k, (3, 3), 4)
        expected = matplotlib.colormaps["RdBu_r"]((weights[:, :, 0, k] + top) / (2 * top))[..., :3]
        assert_allclose(rgb[t : t + 3, s : s + 3] / 255, expected, atol=1 / 255)


def test_json_has_exactly_the_documented_shape(window_model, digit, tmp_path):
    data = json.loads(json.dumps(network.inspect_digit(window_model, digit, tmp_path).to_dict()))
    assert list(data) == ["predicted", "probability", "label", "layers", "files"]
    assert isinstance(data["predicted"], int) and 0 <= data["probability"] <= 1
    assert data["label"] is None
    for layer in data["layers"]:
        assert list(layer) == [
            "index",
            "name",
            "type",
            "output_shape",
            "zero_channels",
            "top_channels",
            "png",
        ]
        assert len(layer["output_shape"]) == 3 and len(layer["top_channels"]) == 3
        assert Path(layer["png"]).is_file()
    assert {"input", "kernels", "saliency"} <= set(data["files"])


def test_saliency_of_a_trained_model_sits_on_the_digit():
    import keras

    images, labels = synthetic_digits(600, seed=5)
    keras.utils.set_random_seed(1)
    model = build(
        [
            {"type": "Conv2D", "filters": 8, "kernel_size": 3, "activation": "relu"},
            {"type": "MaxPooling2D", "pool_size": 2},
            {"type": "Flatten"},
            {"type": "Dense", "units": 10, "activation": "softmax"},
        ]
    )
    model.set_weights([w * 0.1 for w in model.get_weights()])
    model.compile(optimizer="adam", loss="sparse_categorical_crossentropy")
    model.fit(images[..., None] / 255.0, labels, epochs=3, batch_size=32, verbose=0)
    test, test_labels = synthetic_digits(5, seed=9)
    for image, k in zip(test, test_labels):
        sal = network.saliency(model, network.model_input(image / 255.0))
        bar = np.zeros((28, 28), bool)
        bar[2 + 2 * k : 4 + 2 * k, 4:24] = True
        assert sal[bar].mean() > 2 * sal[~bar].mean(), (k, sal[bar].mean(), sal[~bar].mean())


# --- one value by hand ----------------------------------------------------------------------


def test_explain_at_agrees_with_every_layer_at_edges_and_centre(window_model, digit):
    for index in (0, 1, 2, 3, 4):
        h, w, c = window_model.layers[index].output.shape[1:]
        for row, col in [(0, 0), (h - 1, w - 1), (h // 2, w // 3), (0, w - 1)]:
            e = network.explain_at(window_model, digit, index, row, col, c - 1)
            assert_allclose(e.value, e.actual, rtol=1e-5, atol=1e-6)
            text = network.format_explanation(e)
            assert "(agrees)" in text
    e = network.explain_at(window_model, digit, 2, 12, 12, 0)  # the last row/col: one padded edge
    assert e.input_rows == [24, 25, 26] and e.input_cols == [24, 25, 26]
    assert (e.patch[2] == 0).all() and (e.patch[:, 2] == 0).all()
    assert e.channel_sums.shape == (5,)
    assert_allclose(e.total, e.products.sum() + e.bias, rtol=1e-6)
    assert "input channel   4" in network.format_explanation(e)
    e = network.explain_at(window_model, digit, 1, 0, 0, 2)  # same padding, P = 1: row -1, col -1
    assert e.input_rows == [-1, 0, 1] and e.activation == "linear"
    e = network.explain_at(window_model, digit, 3, 6, 6, 1)  # max pool window past the edge
    assert e.winner == (12, 12) and np.isnan(e.window[1]).all()


def test_explain_at_the_lectures_hand_computation_on_known_weights():
    model = build(
        [
            {"type": "Conv2D", "filters": 1, "kernel_size": 3, "activation": "relu"},
            {"type": "Flatten"},
            {"type": "Dense", "units": 10, "activation": "softmax"},
        ]
    )
    kernel = np.array([[1, 0, -1], [2, 0, -2], [1, 0, -1]], np.float32)  # a Sobel edge kernel
    weights = model.get_weights()
    weights[0] = kernel[:, :, None, None]
    weights[1] = np.array([0.5], np.float32)
    model.set_weights(weights)
    digit = np.zeros((28, 28), np.float32)
    digit[:, 10] = 1.0  # a vertical line in column 10
    e = network.explain_at(model, digit, 0, 5, 8, 0)  # patch columns 8-10: the line on the right
    assert_allclose(e.patch[:, :, 0], [[0, 0, 1]] * 3)
    assert_allclose(e.products[:, :, 0], [[0, 0, -1], [0, 0, -2], [0, 0, -1]])
    assert e.total == pytest.approx(-3.5) and e.value == 0.0 == e.actual  # ReLU cuts it
    e = network.explain_at(model, digit, 0, 5, 10, 0)  # the line on the left
    assert e.total == pytest.approx(4.5) and e.value == pytest.approx(4.5) == e.actual
    text = network.format_explanation(e)
    assert "relu(4.500000) = 4.500000" in text and "The layer produced 4.500000  (agrees)" in text


# --- errors ---------------------------------------------------------------------------------


@pytest.mark.parametrize("text", ["0", "0:1,2", "a:1,2,3", "0:1,2,x", "1,2,3"])
def test_bad_at_syntax(text):
    with pytest.raises(network.BadPosition, match="expected LAYER:ROW,COL,CHANNEL"):
        network.parse_at(text)


def test_bad_at_names_the_valid_layers_and_ranges(window_model):
    valid = "0 (Conv2D), 1 (Conv2D), 2 (Conv2D), 3 (MaxPooling2D), 4 (AveragePooling2D)"
    with pytest.raises(network.BadPosition, match=r"layer 5 is Flatten.*" + re_escape(valid)):
        network.check_position(window_model, 5, 0, 0, 0)
    with pytest.raises(network.BadPosition, match="layer 9 does not exist.*layers 0 to 6"):
        network.check_position(window_model, 9, 0, 0, 0)
    with pytest.raises(
        network.BadPosition,
        match=r"outputs 13x13x3, so ROW is 0 to 12, COL 0 to 12 "
        r"and CHANNEL 0 to 2",
    ):
        network.check_position(window_model, 2, 13, 0, 0)
    with pytest.raises(network.BadPosition, match="CHANNEL 0 to 3"):
        network.explain_at(window_model, np.zeros((28, 28)), 0, 0, 0, 4)


def re_escape(text):
    import re

    return re.escape(text)


def test_a_model_without_convolution_says_what_still_works(tmp_path, digit):
    from cnn_mnist.stages.save import save_model

    dense = build([{"type": "Flatten"}, {"type": "Dense", "units": 10, "activation": "softmax"}])
    with pytest.raises(
        network.NoConvolution, match="no convolution layer.*cnn predict.*cnn summary"
    ):
        network.inspect_digit(dense, digit, tmp_path)
    path = save_model(dense, tmp_path / "dense.h5")
    picture = tmp_path / "seven.png"
    _draw_seven(picture)
    result = CliRunner().invoke(cli, ["inspect", "--model", str(path), "--image", str(picture)])
    assert result.exit_code == 1
    assert result.output.startswith("error: ") and "no convolution layer" in result.output


def _draw_seven(path):
    picture = Image.new("L", (120, 160), 235)
    draw = ImageDraw.Draw(picture)
    draw.line([(20, 25), (100, 25), (45, 140)], fill=20, width=12)
    picture.save(path)


# --- the command ----------------------------------------------------------------------------


def test_cli_on_your_own_picture_writes_pictures_and_json(tiny_trained, tmp_path):
    model_path, _ = tiny_trained
    picture = tmp_path / "seven.png"
    _draw_seven(picture)
    out = tmp_path / "inspect"
    result = CliRunner().invoke(
        cli,
        ["inspect", "-m", str(model_path), "--image", str(picture), "--out", str(out), "--json"],
    )
    assert result.exit_code == 0, result.output
    data = json.loads(result.output)
    assert data["label"] is None and 0 <= data["predicted"] <= 9
    assert [layer["type"] for layer in data["layers"]] == ["Conv2D", "MaxPooling2D"]
    assert data["layers"][0]["output_shape"] == [26, 26, 8]
    names = sorted(p.name for p in out.iterdir())
    assert names == [
        "input.png",
        "kernels.png",
        "layer-0-conv2d.png",
        "layer-1-maxpooling2d.png",
        "saliency.png",
    ]


def test_cli_index_with_at_prints_the_hand_computation(
    tiny_trained, idx_folder, tiny_mnist, tmp_path
):
    model_path, _ = tiny_trained
    result = CliRunner().invoke(
        cli,
        [
            "inspect",
            "-m",
            str(model_path),
            "--index",
            "4",
            "--data",
            str(idx_folder),
            "--out",
            str(tmp_path / "o"),
            "--at",
            "0:13,13,5",
        ],
    )
    assert result.exit_code == 0, result.output
    assert "layer 0 Conv2D 26x26x8: (28 - 3 + 2*0) / 1 + 1 = 26" in result.output
    assert "layer 1 MaxPooling2D 13x13x8: (26 - 2 + 2*0) / 2 + 1 = 13" in result.output
    assert f"true label {tiny_mnist.y_test[4]}" in result.output
    assert "Value at layer 0 (Conv2D), row 13, column 13, channel 5" in result.output
    assert "(agrees)" in result.output


@pytest.mark.parametrize(
    "args, message",
    [
        (
            ["--index", "128"],
            "--index 128 is out of range: the test set has 128 images, so valid "
            "indices are 0 to 127",
        ),
        (
            ["--index", "3", "--at", "2:0,0,0"],
            "layer 2 is Flatten, not a convolution or pooling "
            "layer; choose one of: 0 (Conv2D), 1 (MaxPooling2D)",
        ),
        (["--index", "3", "--at", "0:26,0,0"], "ROW is 0 to 25, COL 0 to 25 and CHANNEL 0 to 7"),
        (["--index", "3", "--at", "0-1"], "expected LAYER:ROW,COL,CHANNEL"),
        (["--image", "nothing.png"], "nothing.png: no such image file"),
        (["--index", "1", "--image", "x.png"], "give one digit"),
    ],
)
def test_cli_errors_are_one_clear_line(tiny_trained, idx_folder, tmp_path, args, message):
    model_path, _ = tiny_trained
    result = CliRunner().invoke(
        cli,
        [
            "inspect",
            "-m",
            str(model_path),
            "--data",
            str(idx_folder),
            "--out",
            str(tmp_path / "o"),
            *args,
        ],
    )
    assert result.exit_code in (1, 2)
    assert message in result.output and "Traceback" not in result.output


def test_cli_missing_or_corrupt_model(tmp_path, idx_folder):
    result = CliRunner().invoke(
        cli, ["inspect", "-m", str(tmp_path / "none.h5"), "--index", "1", "--data", str(idx_folder)]
    )
    assert result.exit_code == 1 and "model file not found" in result.output
    broken = tmp_path / "broken.h5"
    broken.write_bytes(b"not a model at all")
    result = CliRunner().invoke(
        cli,
        [
            "inspect",
            "-m",
            str(broken),
            "--index",
            "1",
            "--data",
            str(idx_folder),
            "--out",
            str(tmp_path / "o"),
        ],
    )
    assert result.exit_code == 1 and "not a readable Keras model" in result.output


def test_raw_pixel_models_are_fed_raw_pixels(tiny_trained, digit, tmp_path, monkeypatch):
    """A model trained with data.normalize: false sees 0-255, as `cnn predict` feeds it."""
    from cnn_mnist.stages.handle import card_of, open_saved
    from cnn_mnist.stages.save import write_card

    model_path, _ = tiny_trained
    card = card_of(model_path)
    card.config["data"]["normalize"] = False
    raw = tmp_path / "raw.h5"
    raw.write_bytes(Path(model_path).read_bytes())
    write_card(raw, card)
    picture = tmp_path / "seven.png"
    _draw_seven(picture)
    result = look.inspect_model(raw, image=picture, out_dir=tmp_path / "o", at="0:10,10,0")
    model = open_saved(raw).keras_model()
    from cnn_mnist.analysis.images import load_digit

    expected = network.activations(model, network.model_input(load_digit(picture), normalize=False))
    assert result.predicted == int(expected[-1][0].argmax())
    assert_allclose(result.explanation.actual, expected[0][0, 10, 10, 0], rtol=1e-6)


# --- TensorBoard ----------------------------------------------------------------------------


def test_callback_logs_kernels_and_feature_maps_every_epoch(tmp_path):
    import tensorflow as tf

    model = build(
        [
            {"type": "Conv2D", "filters": 6, "kernel_size": 3, "activation": "relu"},
            {"type": "MaxPooling2D", "pool_size": 2},
            {
                "type": "Conv2D",
                "filters": 5,
                "kernel_size": 3,
                "strides": 2,
                "padding": "same",
                "activation": "relu",
            },
            {"type": "Flatten"},
            {"type": "Dense", "units": 10, "activation": "softmax"},
        ]
    )
    model.compile(optimizer="adam", loss="sparse_categorical_crossentropy")
    images, labels = synthetic_digits(64, seed=4)
    from cnn_mnist.stages.fit import FeatureMaps

    callback = FeatureMaps(tmp_path, images[0] / 255.0)
    model.fit(
        images[..., None] / 255.0, labels, epochs=2, batch_size=32, verbose=0, callbacks=[callback]
    )

    found: dict[str, dict[int, tuple[int, int]]] = {}
    for event_file in (tmp_path / "train").glob("events.out.tfevents.*"):
        for event in tf.compat.v1.train.summary_iterator(str(event_file)):
            for value in event.summary.value:
                png = value.tensor.string_val[2]  # [width, height, PNG bytes]
                decoded = tf.io.decode_png(png).numpy()
                assert decoded.dtype == np.uint8 and decoded.shape[2] == 3
                found.setdefault(value.tag, {})[event.step] = decoded.shape[:2]
    # kernels: 6 tiles of 3x3 in a 2x3 grid -> 9x13, scaled up 14x; maps: 26x26x6 -> 2x3 grid
    # of 26x26 -> 55x82, scaled 2x; layer 2: 7x7x5 (ceil(13 / 2)) -> 2x3 grid of 7x7 -> 17x25
    expected = {
        "kernels/layer_0": (9, 13),
        "feature_maps/layer_0_conv2d": (55, 82),
        "feature_maps/layer_2_conv2d": (17, 25),
    }
    assert set(found) == set(expected)
    for tag, (h, w) in expected.items():
        scale = max(1, network.TB_MIN_SIDE // max(h, w))
        assert found[tag] == {0: (h * scale, w * scale), 1: (h * scale, w * scale)}, tag


def test_tensorboard_kernels_change_as_the_model_learns(tmp_path):
    model = build(
        [
            {"type": "Conv2D", "filters": 4, "kernel_size": 3, "activation": "relu"},
            {"type": "Flatten"},
            {"type": "Dense", "units": 10, "activation": "softmax"},
        ]
    )
    x = network.model_input(np.zeros((28, 28)))
    before = network.tensorboard_images(model, x)["kernels/layer_0"]
    model.set_weights([w * -1 for w in model.get_weights()])
    after = network.tensorboard_images(model, x)["kernels/layer_0"]
    assert before.shape == after.shape and not np.array_equal(before, after)


# --- whole process --------------------------------------------------------------------------


@pytest.mark.slow
def test_inspect_help_is_fast_and_never_imports_tensorflow():
    code = (
        "import sys; from cnn_mnist.cli import main; sys.argv = ['cnn', 'inspect', '--help']\n"
        "try:\n    main()\nexcept SystemExit:\n    pass\n"
        "assert 'tensorflow' not in sys.modules and 'keras' not in sys.modules\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0, done.stderr
    assert "--at LAYER:ROW,COL,CHANNEL" in done.stdout


@pytest.mark.slow
def test_inspect_as_a_process(tiny_trained, idx_folder, tmp_path):
    model_path, _ = tiny_trained
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "cnn_mnist",
            "inspect",
            "--index",
            "2",
            "-m",
            str(model_path),
            "--data",
            str(idx_folder),
            "--json",
        ],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    data = json.loads(done.stdout)
    assert Path(data["files"]["dir"]).parent == Path("logs/inspect")
    assert (tmp_path / data["files"]["kernels"]).is_file()


def test_class_names_in_the_inspection(window_model, digit, tmp_path):
    from tests.conftest import FASHION_NAMES

    result = network.inspect_digit(
        window_model, digit, tmp_path, label=4, class_names=FASHION_NAMES
    )
    data = result.to_dict()
    assert data["class_name"] == FASHION_NAMES[data["predicted"]]
    assert data["label_class_name"] == "Coat"
    assert f"predicted {FASHION_NAMES[data['predicted']]} (" in look.format_inspection(result)
    assert "true label Coat" in look.format_inspection(result)
