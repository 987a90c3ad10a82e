"""Output shapes and parameter counts, worked out by hand as the lecture teaches them.

No TensorFlow here: configs are checked, and `cnn summary` explains a model, in milliseconds.
Output size = (W - K + 2P) / S + 1, where P is 0 for "valid" padding; "same" padding pads so
that the output is ceil(W / S).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from cnn_mnist.config.schema import ModelConfig
from cnn_mnist.core.errors import ConfigError


@dataclass(frozen=True)
class LayerShape:
    """One layer as `cnn summary` shows it."""

    index: int
    type: str
    output_shape: tuple[int, ...]
    params: int
    arithmetic: str  # how `params` is computed, e.g. "(3x3x1 + 1) x 32"


def output_size(size: int, kernel: int, stride: int, padding: str) -> int:
    """The lecture's formula; "same" padding keeps ceil(size / stride)."""
    if padding == "same":
        return math.ceil(size / stride)
    return (size - kernel) // stride + 1


def pad_sides(size: int, kernel: int, stride: int, padding: str) -> tuple[int, int]:
    """Zero rows (or columns) added before and after, as TensorFlow pads for "same"."""
    if padding != "same":
        return 0, 0
    total = max((output_size(size, kernel, stride, padding) - 1) * stride + kernel - size, 0)
    return total // 2, total - total // 2


def axis_arithmetic(size: int, kernel: int, stride: int, padding: str) -> str:
    """Output = (W - K + 2P) / S + 1 along one axis, with its numbers, as the lecture writes it."""
    before, after = pad_sides(size, kernel, stride, padding)
    out = output_size(size, kernel, stride, padding)
    if padding == "same" and before != after:
        return (
            f"ceil({size} / {stride}) = {out} (same padding: "
            f"{before} zero row(s) before, {after} after)"
        )
    exact = (size - kernel + 2 * before) / stride + 1
    text = f"({size} - {kernel} + 2*{before}) / {stride} + 1 = "
    if exact == int(exact):
        return text + str(int(exact))
    return text + f"{exact:g}, rounded down: {math.floor(exact)}"


def _fits(size: int, kernel: int, stride: int, padding: str) -> bool:
    """The lecture's "does not fit": (W - K) / S + 1 is not a whole number."""
    return padding == "same" or (size - kernel) % stride == 0


def _window(where: str, layer, shape, kernel, strides, warnings: list[str]) -> tuple[int, ...]:
    if len(shape) != 3:
        raise ConfigError(
            f"{where} ({layer.type}) needs a height x width x channels input, "
            f"got {_fmt(shape)}: put it before Flatten/Dense"
        )
    h, w, c = shape
    out_h = output_size(h, kernel[0], strides[0], layer.padding)
    out_w = output_size(w, kernel[1], strides[1], layer.padding)
    if out_h < 1 or out_w < 1:
        raise ConfigError(
            f"{where} ({layer.type}): a {kernel[0]}x{kernel[1]} window with strides "
            f"{strides[0]}x{strides[1]} does not fit its {h}x{w}x{c} input (output would be "
            f"{max(out_h, 0)}x{max(out_w, 0)}); use a smaller kernel, or padding: same"
        )
    misfits = [
        (axis, size, k, s)
        for axis, size, k, s in (
            ("height", h, kernel[0], strides[0]),
            ("width", w, kernel[1], strides[1]),
        )
        if not _fits(size, k, s, layer.padding)
    ]
    if len(misfits) == 2 and misfits[0][1:] == misfits[1][1:]:
        misfits = [("height and width", *misfits[0][1:])]
    for axis, size, k, s in misfits:
        warnings.append(
            f"{where} ({layer.type}): kernel {k} with stride {s} does not fit {axis} {size} "
            f"exactly ((W - K) / S + 1 = {(size - k) / s + 1:.2f}, the lecture's \"does not "
            f'fit"); the last {(size - k) % s} pixel row(s) are dropped'
        )
    return out_h, out_w, c


def _conv(where, layer, shape, warnings):
    out = _window(where, layer, shape, layer.kernel_size, layer.strides, warnings)
    kh, kw = layer.kernel_size
    depth = shape[2]
    return (
        (*out[:2], layer.filters),
        (kh * kw * depth + 1) * layer.filters,
        f"({kh}x{kw}x{depth} + 1) x {layer.filters}",
    )


def _pool(where, layer, shape, warnings):
    strides = layer.strides or layer.pool_size
    return _window(where, layer, shape, layer.pool_size, strides, warnings), 0, "0"


def _flatten(where, layer, shape, warnings):
    return (math.prod(shape),), 0, "0"


def _global_pool(where, layer, shape, warnings):
    if len(shape) != 3:
        raise ConfigError(
            f"{where} (GlobalAveragePooling2D) needs a height x width x "
            f"channels input, got {_fmt(shape)}"
        )
    return (shape[2],), 0, "0"


def _dense(where, layer, shape, warnings):
    if len(shape) != 1:
        raise ConfigError(
            f"{where} (Dense) gets a {_fmt(shape)} input; add a Flatten "
            "(or GlobalAveragePooling2D) layer before it"
        )
    return ((layer.units,), (shape[0] + 1) * layer.units, f"({shape[0]} + 1) x {layer.units}")


def _batch_norm(where, layer, shape, warnings):
    channels = shape[-1]
    return shape, 4 * channels, f"4 x {channels} (gamma, beta, moving mean, moving variance)"


def _same(where, layer, shape, warnings):
    return shape, 0, "0"


# Each layer type's rule: (where, layer, input shape, warnings) -> (output shape, params, how).
# A new layer type in schema.py gets its rule here.
RULES = {
    "Conv2D": _conv,
    "MaxPooling2D": _pool,
    "AveragePooling2D": _pool,
    "Flatten": _flatten,
    "GlobalAveragePooling2D": _global_pool,
    "Dense": _dense,
    "BatchNormalization": _batch_norm,
    "Dropout": _same,
}


def infer(model: ModelConfig) -> tuple[list[LayerShape], list[str]]:
    """Shapes and parameter counts of every layer, and warnings; ConfigError if one is empty."""
    shape: tuple[int, ...] = tuple(model.input_shape)
    rows: list[LayerShape] = []
    warnings: list[str] = []
    for i, layer in enumerate(model.layers):
        shape, params, arithmetic = RULES[layer.type](f"model.layers[{i}]", layer, shape, warnings)
        rows.append(LayerShape(i, layer.type, shape, params, arithmetic))
    if shape != (10,):
        raise ConfigError(
            f"model.layers[{len(model.layers) - 1}]: the model must end in 10 "
            f"outputs (one per digit), but it ends in {_fmt(shape)}; "
            "end with {type: Dense, units: 10, activation: softmax}"
        )
    last = model.layers[-1]
    if not (last.type == "Dense" and last.activation == "softmax"):
        warnings.append(
            f"model.layers[{len(model.layers) - 1}]: categorical cross-entropy "
            "expects probabilities; end with a Dense layer with activation: softmax"
        )
    return rows, warnings


def _fmt(shape: tuple[int, ...]) -> str:
    return "x".join(str(s) for s in shape)


def format_summary(rows: list[LayerShape], input_shape: tuple[int, ...]) -> str:
    """An aligned table: layer, output shape, parameters and the arithmetic behind them."""
    header = ("#", "layer", "output shape", "params", "arithmetic")
    table = [("", "Input", _fmt(input_shape), "", "")]
    table += [
        (
            str(r.index),
            r.type,
            _fmt(r.output_shape),
            f"{r.params:,}",
            r.arithmetic if r.params else "",
        )
        for r in rows
    ]
    widths = [max(len(row[i]) for row in [header, *table]) for i in range(len(header))]
    lines = [
        "  ".join(
            cell.rjust(w) if i in (0, 3) else cell.ljust(w)
            for i, (cell, w) in enumerate(zip(row, widths))
        ).rstrip()
        for row in [header, *table]
    ]
    lines.insert(1, "-" * len(lines[0]))
    total = sum(r.params for r in rows)
    lines.append("-" * len(lines[0]))
    lines.append(f"Total params: {total:,}")
    return "\n".join(lines)
