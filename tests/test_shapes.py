import pytest

from cnn_mnist.config.load import load_config, validate
from cnn_mnist.config.shapes import format_summary, infer, output_size
from cnn_mnist.core.errors import ConfigError
from tests.conftest import TINY_LAYERS


@pytest.mark.parametrize(
    "size, kernel, stride, padding, expected",
    [
        (7, 3, 1, "valid", 5),  # the lecture's worked examples
        (7, 3, 2, "valid", 3),
        (28, 3, 1, "valid", 26),
        (32, 5, 1, "same", 32),
        (28, 3, 2, "same", 14),
    ],
)
def test_output_size_formula(size, kernel, stride, padding, expected):
    assert output_size(size, kernel, stride, padding) == expected


def test_lecture_shapes_and_params():
    rows, warnings = infer(load_config().model)
    shapes = [
        r.output_shape for r in rows if r.type in ("Conv2D", "MaxPooling2D", "Flatten", "Dense")
    ]
    assert shapes == [(26, 26, 32), (24, 24, 64), (12, 12, 64), (9216,), (128,), (10,)]
    assert [r.params for r in rows] == [320, 18496, 0, 0, 0, 1179776, 0, 1290]
    assert sum(r.params for r in rows) == 1_199_882
    assert rows[0].arithmetic == "(3x3x1 + 1) x 32"
    assert warnings == []


def test_summary_table_shows_total():
    config = load_config()
    table = format_summary(infer(config.model)[0], config.model.input_shape)
    assert "Total params: 1,199,882" in table and "(3x3x32 + 1) x 64" in table


def test_lecture_all_in_one_example():
    # 32x32x3 input, 10 5x5 kernels, stride 1, "same" (2-pixel border): 32x32x10, 760 params.
    config = validate(
        {
            "model": {
                "input_shape": [32, 32, 3],
                "layers": [
                    {"type": "Conv2D", "filters": 10, "kernel_size": 5, "padding": "same"},
                    {"type": "Flatten"},
                    {"type": "Dense", "units": 10, "activation": "softmax"},
                ],
            }
        }
    )
    rows, _ = infer(config.model)
    assert rows[0].output_shape == (32, 32, 10) and rows[0].params == 760


def test_stride_that_does_not_fit_warns():
    config = validate(
        {
            "model": {
                "input_shape": [7, 7, 1],
                "layers": [
                    {"type": "Conv2D", "filters": 1, "kernel_size": 3, "strides": 3},
                    {"type": "Flatten"},
                    {"type": "Dense", "units": 10, "activation": "softmax"},
                ],
            }
        }
    )
    rows, warnings = infer(config.model)
    assert rows[0].output_shape == (2, 2, 1)
    assert len(warnings) == 1 and "2.33" in warnings[0]


def test_dense_before_flatten_is_an_error():
    config = validate({"model": {"layers": [{"type": "Dense", "units": 10}]}})
    with pytest.raises(ConfigError, match="add a Flatten"):
        infer(config.model)


def test_pooling_after_flatten_is_an_error():
    config = validate({"model": {"layers": [{"type": "Flatten"}, {"type": "MaxPooling2D"}]}})
    with pytest.raises(ConfigError, match=r"model.layers\[1\] \(MaxPooling2D\)"):
        infer(config.model)


@pytest.mark.parametrize(
    "layers",
    [
        None,  # the lecture's
        TINY_LAYERS,
        [
            {
                "type": "Conv2D",
                "filters": 16,
                "kernel_size": [5, 3],
                "strides": 2,
                "padding": "same",
            },
            {"type": "BatchNormalization"},
            {"type": "AveragePooling2D", "pool_size": 3, "strides": 2},
            {"type": "GlobalAveragePooling2D"},
            {"type": "Dense", "units": 10, "activation": "softmax"},
        ],
    ],
)
def test_arithmetic_matches_keras(layers):
    from cnn_mnist.stages.model import build_model

    config = validate({"model": {"layers": layers}} if layers else {})
    rows, _ = infer(config.model)
    model = build_model(config.model)
    assert [r.params for r in rows] == [layer.count_params() for layer in model.layers]
    assert [r.output_shape for r in rows] == [
        tuple(layer.output.shape[1:]) for layer in model.layers
    ]


@pytest.mark.parametrize(
    "size, kernel, stride, padding, sides, text",
    [
        (28, 3, 1, "valid", (0, 0), "(28 - 3 + 2*0) / 1 + 1 = 26"),
        (28, 3, 1, "same", (1, 1), "(28 - 3 + 2*1) / 1 + 1 = 28"),
        (
            28,
            3,
            2,
            "same",
            (0, 1),
            "ceil(28 / 2) = 14 (same padding: 0 zero row(s) before, 1 after)",
        ),
        (7, 2, 2, "valid", (0, 0), "(7 - 2 + 2*0) / 2 + 1 = 3.5, rounded down: 3"),
    ],
)
def test_padding_and_the_worked_arithmetic_agree_with_output_size(
    size, kernel, stride, padding, sides, text
):
    from cnn_mnist.config.shapes import axis_arithmetic, pad_sides

    assert pad_sides(size, kernel, stride, padding) == sides
    assert axis_arithmetic(size, kernel, stride, padding) == text
    assert text.endswith(str(output_size(size, kernel, stride, padding))) or text.startswith(
        f"ceil({size} / {stride}) = {output_size(size, kernel, stride, padding)}"
    )
