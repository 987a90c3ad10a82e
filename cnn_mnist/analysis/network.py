"""What a network computes, pictured: kernels, feature maps, saliency, one value by hand.

For one digit, `inspect_digit` writes pictures of what each convolution and pooling layer makes
of it (the lecture's feature maps), the first layer's kernels, and which pixels the prediction
depends on; `explain_at` recomputes one value of one feature map the way the lecture does by
hand (patch x kernel, summed, plus bias, then ReLU) and checks it against what Keras produced.
`tensorboard_images` makes the kernel and feature-map images that training logs to TensorBoard
(train.FeatureMaps). The output-size arithmetic is shapes.py's, on the Keras layer's numbers.

Used by the training stage, `cnn inspect` and `cnn serve`: it takes a Keras model
and plain values (numpy arrays, dataclasses, paths), never a model file or the data. Keras and
TensorFlow are imported inside the functions, so `cnn --help` never loads them. Nothing here
prints or exits.
"""

from __future__ import annotations

import io
import math
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from cnn_mnist.config.shapes import axis_arithmetic, pad_sides
from cnn_mnist.core import files
from cnn_mnist.core.datasets import DIGITS
from cnn_mnist.core.errors import CnnError

CONV_TYPES = ("Conv2D",)
POOL_TYPES = ("MaxPooling2D", "AveragePooling2D")
TB_MIN_SIDE = 192  # TensorBoard shows images at their own size: small grids are scaled up


class NoConvolution(CnnError):
    """A model without a convolution layer: no kernels or feature maps to show."""


class BadPosition(CnnError):
    """An --at LAYER:ROW,COL,CHANNEL that is malformed, not a conv/pool layer, or out of range."""

    exit_code = 2


# --- tiling: one implementation for the PNG grids and TensorBoard ---------------------------


def grid_shape(count: int) -> tuple[int, int]:
    """Rows and columns of the grid holding `count` tiles: as square as possible."""
    columns = max(1, math.ceil(math.sqrt(count)))
    return max(1, math.ceil(count / columns)), columns


def tile(maps: np.ndarray, border: int = 1, fill: float = np.nan) -> np.ndarray:
    """(h, w, c) maps -> one 2D array: tile k (channel k) at row k // columns, column
    k % columns of `grid_shape(c)`, each framed by a `border`-pixel line of `fill` (NaN:
    drawn as the border colour). Tile k's top-left pixel is at
    (border + (k // columns) * (h + border), border + (k % columns) * (w + border))."""
    maps = np.asarray(maps, dtype=np.float32)
    if maps.ndim == 2:
        maps = maps[:, :, None]
    h, w, c = maps.shape
    rows, columns = grid_shape(c)
    out = np.full(
        (border + rows * (h + border), border + columns * (w + border)), fill, dtype=np.float32
    )
    for k in range(c):
        r, q = divmod(k, columns)
        top, left = border + r * (h + border), border + q * (w + border)
        out[top : top + h, left : left + w] = maps[:, :, k]
    return out


def tile_origin(k: int, tile_hw: tuple[int, int], count: int, border: int = 1) -> tuple[int, int]:
    """Where tile k starts in `tile`'s output (row, column)."""
    _, columns = grid_shape(count)
    r, q = divmod(k, columns)
    return border + r * (tile_hw[0] + border), border + q * (tile_hw[1] + border)


def to_rgb8(tiled: np.ndarray, cmap: str, symmetric: bool = False, scale: int = 1) -> np.ndarray:
    """A tiled array as uint8 RGB with ONE colour scale over all tiles (symmetric around zero
    for kernels), borders grey, each pixel repeated `scale` times: for TensorBoard."""
    import matplotlib

    vmin, vmax = _limits(tiled, symmetric)
    normed = (tiled - vmin) / (vmax - vmin)
    rgb = matplotlib.colormaps[cmap](np.nan_to_num(normed, nan=0.0))[..., :3]
    rgb[np.isnan(tiled)] = 0.5
    rgb = (rgb * 255).round().astype(np.uint8)
    return rgb.repeat(scale, axis=0).repeat(scale, axis=1) if scale > 1 else rgb


def tb_scale(tiled: np.ndarray) -> int:
    """The integer factor that makes a tiled image at least TB_MIN_SIDE pixels on its long side."""
    return max(1, TB_MIN_SIDE // max(tiled.shape))


def _limits(values: np.ndarray, symmetric: bool) -> tuple[float, float]:
    finite = values[np.isfinite(values)]
    if symmetric:
        top = float(np.abs(finite).max()) if finite.size else 0.0
        top = top or 1.0
        return -top, top
    low, high = (float(finite.min()), float(finite.max())) if finite.size else (0.0, 1.0)
    return (low, high) if high > low else (low, low + 1.0)


# --- the model's layers ---------------------------------------------------------------------


def _type(layer) -> str:
    return type(layer).__name__


def _pair(value) -> tuple[int, int]:
    return (value, value) if isinstance(value, int) else (int(value[0]), int(value[1]))


def _window(layer) -> tuple[tuple[int, int], tuple[int, int], str]:
    """Kernel (or pool) size, strides and padding of a conv or pooling layer."""
    if _type(layer) in CONV_TYPES:
        return _pair(layer.kernel_size), _pair(layer.strides), layer.padding
    return _pair(layer.pool_size), _pair(layer.strides or layer.pool_size), layer.padding


def arithmetic(layer, input_shape: tuple[int, int, int]) -> str:
    """The lecture's Output = (W - K + 2P) / S + 1 for this layer, with its numbers."""
    (kh, kw), (sh, sw), padding = _window(layer)
    rows = axis_arithmetic(input_shape[0], kh, sh, padding)
    cols = axis_arithmetic(input_shape[1], kw, sw, padding)
    return rows if rows == cols else f"rows {rows}; columns {cols}"


def conv_pool_layers(model) -> list[int]:
    return [i for i, layer in enumerate(model.layers) if _type(layer) in CONV_TYPES + POOL_TYPES]


def check_has_convolution(model, name: str = "the model") -> None:
    if not any(_type(layer) in CONV_TYPES for layer in model.layers):
        kinds = ", ".join(_type(layer) for layer in model.layers)
        raise NoConvolution(
            f"{name} has no convolution layer ({kinds}), so it has no kernels or "
            "feature maps to show; `cnn predict --index N` and `cnn summary` "
            "still describe it"
        )


def model_input(digit: np.ndarray, normalize: bool = True) -> np.ndarray:
    """A 28x28 digit in [0, 1] -> a (1, 28, 28, 1) batch as the model was trained to see it."""
    x = np.asarray(digit, dtype=np.float32).reshape(1, 28, 28, 1)
    return x if normalize else x * np.float32(255.0)


def activations(model, x: np.ndarray) -> list[np.ndarray]:
    """Every layer's output for one batch (float32 numpy), calling the layers in sequence."""
    return forward(model, x)[0]


def forward(
    model, x: np.ndarray, gradient: bool = False
) -> tuple[list[np.ndarray], np.ndarray | None]:
    """Every layer's output for one batch, and with `gradient` the saliency of the first
    input: |d p(predicted digit) / d pixel|, scaled to [0, 1] (which pixels, changed a little,
    would change the model's confidence most). One pass for both."""
    import tensorflow as tf

    tensor = tf.convert_to_tensor(x, dtype=tf.float32)
    outputs = []
    with tf.GradientTape(watch_accessed_variables=False) as tape:
        tape.watch(tensor)
        value = tensor
        for layer in model.layers:
            value = layer(value, training=False)
            outputs.append(value)
        probs = tf.cast(value[0], tf.float32)
        top = tf.gather(probs, tf.argmax(probs))
    grad = None
    if gradient:
        grad = np.abs(np.asarray(tape.gradient(top, tensor), dtype=np.float32))[0, :, :, 0]
        grad = grad / grad.max() if grad.max() > 0 else grad
    return [np.asarray(tf.cast(o, tf.float32)) for o in outputs], grad


def saliency(model, x: np.ndarray) -> np.ndarray:
    """|d p(predicted digit) / d pixel| for one input, scaled to [0, 1]."""
    grad = forward(model, x, gradient=True)[1]
    assert grad is not None  # asked for
    return grad


# --- inspecting one digit -------------------------------------------------------------------


@dataclass
class LayerView:
    """One convolution or pooling layer's output for this digit."""

    index: int
    name: str
    type: str
    output_shape: tuple[int, int, int]
    arithmetic: str
    zero_channels: int  # channels that are all zero for this input ("dead for this input")
    top_channels: list[int]  # the (up to) three channels with the largest mean activation
    png: Path

    def to_dict(self) -> dict:
        return {
            "index": self.index,
            "name": self.name,
            "type": self.type,
            "output_shape": list(self.output_shape),
            "zero_channels": self.zero_channels,
            "top_channels": self.top_channels,
            "png": str(self.png),
        }


@dataclass
class Inspection:
    """What `inspect_digit` found and wrote."""

    predicted: int
    probability: float
    label: int | None
    layers: list[LayerView]
    files: dict[str, Path]
    source: str = ""  # "index 10" or the picture's path
    explanation: ConvExplanation | PoolExplanation | None = None
    class_names: list[str] = field(default_factory=lambda: list(DIGITS))

    def name(self, label: int) -> str:
        return self.class_names[label]

    def to_dict(self) -> dict:
        out: dict[str, Any] = {
            "predicted": self.predicted,
            "probability": round(self.probability, 6),
            "label": self.label,
            "layers": [v.to_dict() for v in self.layers],
            "files": {k: str(v) for k, v in self.files.items()},
        }
        if self.class_names != DIGITS:  # named classes, not MNIST's digits
            out["class_name"] = self.name(self.predicted)
            if self.label is not None:
                out["label_class_name"] = self.name(self.label)
        if self.explanation is not None:  # only with --at
            out["at"] = self.explanation.to_dict()
        return out


def channel_summary(maps: np.ndarray) -> tuple[int, list[int]]:
    """How many channels of (h, w, c) maps are all zero, and the (up to) three most active."""
    zero = int((np.abs(maps).reshape(-1, maps.shape[-1]).max(axis=0) == 0).sum())
    means = maps.reshape(-1, maps.shape[-1]).mean(axis=0)
    top = [int(c) for c in np.argsort(-means, kind="stable")[:3]]
    return zero, top


def _layer_views(model, outs, x, out_dir: Path, write: Callable[[Path, bytes], Path]) -> list:
    """Each conv/pool layer's feature maps for one input, pictured (layer-<i>-<type>.png)."""
    views = []
    for i in conv_pool_layers(model):
        layer = model.layers[i]
        maps = outs[i][0]
        in_shape = (outs[i - 1] if i else x)[0].shape
        zero, top = channel_summary(maps)
        h, w, c = maps.shape
        view = LayerView(
            i,
            layer.name,
            _type(layer),
            (int(h), int(w), int(c)),
            arithmetic(layer, in_shape),
            zero,
            top,
            out_dir / f"layer-{i}-{_type(layer).lower()}.png",
        )
        write(view.png, _png(_maps_picture(maps, view, layer)))
        views.append(view)
    return views


def inspect_digit(
    model,
    digit: np.ndarray,
    out_dir: str | Path,
    label: int | None = None,
    normalize: bool = True,
    source: str = "",
    class_names: list[str] | None = None,
    write: Callable[[Path, bytes], Path] | None = None,
) -> Inspection:
    """Write input.png, one layer-<i>-<type>.png per conv/pool layer, kernels.png and
    saliency.png for one 28x28 digit in [0, 1] into `out_dir`; return what they show.
    `class_names` names the classes 0 to 9 (default: the digits); `write` writes a file
    (default files.write_bytes)."""
    write = write or files.write_bytes
    check_has_convolution(model)
    out_dir = Path(out_dir)
    x = model_input(digit, normalize)
    outs, sal = forward(model, x, gradient=True)
    probs = outs[-1][0]
    predicted, probability = int(probs.argmax()), float(probs.max())
    names = list(class_names or DIGITS)

    views = _layer_views(model, outs, x, out_dir, write)

    written = {"dir": out_dir}
    written["input"] = write(
        out_dir / "input.png",
        _png(
            _input_picture(
                digit,
                names[predicted],
                probability,
                None if label is None else names[label],
                source,
            )
        ),
    )
    written["kernels"] = write(out_dir / "kernels.png", _png(_kernels_picture(model)))
    written["saliency"] = write(
        out_dir / "saliency.png", _png(_saliency_picture(digit, sal, names[predicted]))
    )
    return Inspection(predicted, probability, label, views, written, source, class_names=names)


def first_kernels(model) -> tuple[int, np.ndarray]:
    """The first conv layer's index and its kernels as (kh, kw, filters) maps (averaged over
    input channels if it has several)."""
    i = next(i for i, layer in enumerate(model.layers) if _type(layer) in CONV_TYPES)
    return i, np.asarray(model.layers[i].kernel, dtype=np.float32).mean(axis=2)


# --- pictures -------------------------------------------------------------------------------
# Drawn with Pillow from the same tiled arrays and colours as the TensorBoard images: a few
# milliseconds each, where matplotlib took about half a second per figure.

TILE_PX = 48  # grids are scaled up by whole pixels until a tile is at least this big
TEXT, SMALL = 14, 11  # font sizes


def _font(size: int):
    from PIL import ImageFont

    try:
        return ImageFont.load_default(size=size)
    except (TypeError, OSError):  # Pillow without FreeType: its fixed bitmap font
        return ImageFont.load_default()


def _text_size(draw, text: str, font) -> tuple[int, int]:
    left, top, right, bottom = draw.textbbox((0, 0), text, font=font)
    return right - left, bottom


def _compose(title: list[str], body, right=None, pad: int = 10):
    """A white picture: title lines, then `body` (a PIL image), `right` beside it."""
    from PIL import Image, ImageDraw

    font = _font(TEXT)
    probe = ImageDraw.Draw(Image.new("RGB", (1, 1)))
    sizes = [_text_size(probe, line, font) for line in title]
    head = sum(h for _, h in sizes) + 4 * len(title) + pad
    width = max([w for w, _ in sizes] + [body.width + (right.width + pad if right else 0)])
    out = Image.new("RGB", (width + 2 * pad, head + body.height + 2 * pad), "white")
    draw = ImageDraw.Draw(out)
    y = pad
    for line, (_, h) in zip(title, sizes):
        draw.text((pad, y), line, fill="black", font=font)
        y += h + 4
    out.paste(body, (pad, head + pad))
    if right is not None:
        out.paste(right, (pad + body.width + pad, head + pad))
    return out


def _colour_bar(height: int, cmap: str, vmin: float, vmax: float, symmetric: bool):
    """A vertical colour scale, vmax at the top, with its values written beside it."""
    import matplotlib
    from PIL import Image, ImageDraw

    strip = matplotlib.colormaps[cmap](np.linspace(1, 0, max(height, 2)))[:, :3]
    strip = (np.repeat(strip[:, None, :], 14, axis=1) * 255).round().astype(np.uint8)
    font = _font(SMALL)
    out = Image.new("RGB", (14 + 6 + 70, max(height, 2)), "white")
    out.paste(Image.fromarray(strip, "RGB"), (0, 0))
    draw = ImageDraw.Draw(out)
    marks = [(0, vmax), (height - SMALL - 2, vmin)]
    if symmetric:
        marks.append(((height - SMALL) // 2, 0.0))
    for y, value in marks:
        draw.text((20, max(0, y)), f"{value:.3g}", fill="black", font=font)
    return out


def grid_picture(maps: np.ndarray, cmap: str, symmetric: bool, title: list[str]):
    """The (h, w, c) maps as `tile` lays them out: one colour scale for all tiles, each tile
    numbered by its channel, a colour bar, the title above. A PIL image."""
    from PIL import Image, ImageDraw

    h, w, c = maps.shape
    tiled = tile(maps)
    scale = max(1, -(-TILE_PX // min(h, w)))
    vmin, vmax = _limits(tiled, symmetric)
    grid = Image.fromarray(to_rgb8(tiled, cmap, symmetric, scale), "RGB")
    draw = ImageDraw.Draw(grid)
    font = _font(SMALL)
    for k in range(c):
        top, left = (v * scale for v in tile_origin(k, (h, w), c))
        label = str(k)
        tw, th = _text_size(draw, label, font)
        if scale >= th + 2:  # a wide border (small tiles, such as kernels): write in it
            draw.text((left, top - scale + (scale - th) // 2 - 1), label, fill="black", font=font)
        else:  # on the tile's corner, on a white box
            draw.rectangle((left, top, left + tw + 2, top + th + 1), fill="white")
            draw.text((left + 1, top), label, fill="black", font=font)
    return _compose(title, grid, _colour_bar(grid.height, cmap, vmin, vmax, symmetric))


def _stack(pictures, pad: int = 6):
    from PIL import Image

    out = Image.new(
        "RGB",
        (
            max(p.width for p in pictures),
            sum(p.height for p in pictures) + pad * (len(pictures) - 1),
        ),
        "white",
    )
    y = 0
    for p in pictures:
        out.paste(p, (0, y))
        y += p.height + pad
    return out


def _png(picture) -> bytes:
    buffer = io.BytesIO()
    picture.save(buffer, format="PNG")
    return buffer.getvalue()


def _maps_picture(maps, view: LayerView, layer):
    h, w, c = maps.shape
    activation = getattr(getattr(layer, "activation", None), "__name__", None)
    what = {"relu": "after ReLU", None: "", "linear": "no activation"}.get(
        activation, f"after {activation}"
    )
    if view.type in POOL_TYPES:
        what = "max of each window" if view.type == "MaxPooling2D" else "mean of each window"
    return grid_picture(
        maps,
        "viridis",
        False,
        [
            f"{view.type} {h}x{w}x{c}: {view.arithmetic}",
            f"layer {view.index}: {c} feature maps for this digit ({what}), numbered by channel,",
            f"one colour scale for all; {view.zero_channels} all zero (dead for this input)",
        ],
    )


def _kernels_picture(model):
    pictures = []
    for i, layer in enumerate(model.layers):
        if _type(layer) not in CONV_TYPES:
            continue
        kernel = np.asarray(layer.kernel, dtype=np.float32)  # (kh, kw, in, out)
        kh, kw, depth, filters = kernel.shape
        title = [
            f"layer {i} Conv2D: {filters} kernels of {kh}x{kw}x{depth} "
            "(weights: red positive, blue negative, white 0)"
        ]
        if depth > 1:
            title.append(f"summary: each kernel averaged over its {depth} input channels")
        pictures.append(grid_picture(kernel.mean(axis=2), "RdBu_r", True, title))
    return _stack(pictures)


def _digit_rgb(digit: np.ndarray, scale: int = 8) -> np.ndarray:
    gray = (np.clip(digit, 0, 1) * 255).round().astype(np.uint8)
    return np.repeat(gray[:, :, None], 3, axis=2).repeat(scale, 0).repeat(scale, 1)


def _input_picture(digit, predicted, probability, label, source):
    from PIL import Image

    title = ([source] if source else []) + [
        f"predicted {predicted} ({probability:.0%})"
        + (f", true label {label}" if label is not None else "")
    ]
    return _compose(title, Image.fromarray(_digit_rgb(digit), "RGB"))


def _saliency_picture(digit, sal, predicted):
    import matplotlib
    from PIL import Image

    heat = matplotlib.colormaps["hot"](sal)[:, :, :3].repeat(8, 0).repeat(8, 1)
    base = _digit_rgb(digit) / 255.0
    alpha = 0.35 + 0.6 * sal.repeat(8, 0).repeat(8, 1)[:, :, None]
    blend = ((1 - alpha) * base + alpha * heat) * 255
    pair = Image.new("RGB", (2 * 224 + 10, 224), "white")
    pair.paste(Image.fromarray(_digit_rgb(digit), "RGB"), (0, 0))
    pair.paste(Image.fromarray(blend.round().astype(np.uint8), "RGB"), (234, 0))
    return _compose(
        [
            f"saliency for {predicted}: |d probability / d pixel| over the input",
            "(left: the input; right: brighter = the prediction depends more on it)",
        ],
        pair,
        _colour_bar(224, "hot", 0.0, 1.0, False),
    )


# --- one value by hand ----------------------------------------------------------------------


@dataclass
class ConvExplanation:
    """One value of a conv layer's feature map, computed the lecture's way."""

    layer_index: int
    layer_type: str
    row: int
    col: int
    channel: int
    input_rows: list[int]  # input rows under the kernel (-1 and past the end: zero padding)
    input_cols: list[int]
    patch: np.ndarray  # (kh, kw, depth): the input under the kernel, zeros where padded
    kernel: np.ndarray  # (kh, kw, depth): this output channel's kernel
    products: np.ndarray  # patch * kernel
    channel_sums: np.ndarray  # (depth,): one sum per input channel
    bias: float
    total: float  # sum of products + bias
    activation: str
    value: float  # activation(total)
    actual: float  # what the layer produced

    def to_dict(self) -> dict:
        return {
            "layer": self.layer_index,
            "type": self.layer_type,
            "row": self.row,
            "col": self.col,
            "channel": self.channel,
            "input_rows": self.input_rows,
            "input_cols": self.input_cols,
            "channel_sums": self.channel_sums.tolist(),
            "bias": self.bias,
            "total": self.total,
            "activation": self.activation,
            "value": self.value,
            "actual": self.actual,
        }


@dataclass
class PoolExplanation:
    """One value of a pooling layer's output: its window and which value won."""

    layer_index: int
    layer_type: str
    row: int
    col: int
    channel: int
    input_rows: list[int]
    input_cols: list[int]
    window: np.ndarray  # (kh, kw): NaN where the window hangs over the (same-padded) edge
    winner: tuple[int, int] | None  # the max's input (row, col); None for average pooling
    value: float
    actual: float

    def to_dict(self) -> dict:
        return {
            "layer": self.layer_index,
            "type": self.layer_type,
            "row": self.row,
            "col": self.col,
            "channel": self.channel,
            "input_rows": self.input_rows,
            "input_cols": self.input_cols,
            "window": [[None if np.isnan(v) else float(v) for v in r] for r in self.window],
            "winner": list(self.winner) if self.winner else None,
            "value": self.value,
            "actual": self.actual,
        }


def parse_at(text: str) -> tuple[int, int, int, int]:
    """ "LAYER:ROW,COL,CHANNEL" -> four integers (syntax only; ranges are checked on the model)."""
    layer, colon, rest = text.strip().partition(":")
    parts = rest.split(",")
    try:
        if not colon or len(parts) != 3:
            raise ValueError
        values = (int(layer), *(int(p) for p in parts))
    except ValueError:
        raise BadPosition(
            f"--at {text!r}: expected LAYER:ROW,COL,CHANNEL, for example "
            "--at 0:13,13,5 (layer 0, row 13, column 13, channel 5)"
        ) from None
    return values  # type: ignore[return-value]


def check_position(model, layer_index: int, row: int, col: int, channel: int) -> None:
    """BadPosition naming the valid layers and ranges, unless the position exists."""
    valid = ", ".join(f"{i} ({_type(model.layers[i])})" for i in conv_pool_layers(model))
    if not 0 <= layer_index < len(model.layers):
        raise BadPosition(
            f"--at: layer {layer_index} does not exist (the model has layers 0 to "
            f"{len(model.layers) - 1}); conv and pooling layers: {valid}"
        )
    layer = model.layers[layer_index]
    if _type(layer) not in CONV_TYPES + POOL_TYPES:
        raise BadPosition(
            f"--at: layer {layer_index} is {_type(layer)}, not a convolution or "
            f"pooling layer; choose one of: {valid}"
        )
    h, w, c = (int(s) for s in layer.output.shape[1:])
    if not (0 <= row < h and 0 <= col < w and 0 <= channel < c):
        raise BadPosition(
            f"--at {layer_index}:{row},{col},{channel}: layer {layer_index} "
            f"({_type(layer)}) outputs {h}x{w}x{c}, so ROW is 0 to {h - 1}, COL 0 "
            f"to {w - 1} and CHANNEL 0 to {c - 1}"
        )


def _positions(
    out_index: int, size: int, kernel: int, stride: int, padding: str, dilation: int = 1
) -> list[int]:
    before, _ = pad_sides(size, (kernel - 1) * dilation + 1, stride, padding)
    start = out_index * stride - before
    return [start + k * dilation for k in range(kernel)]


def explain_at(
    model,
    digit: np.ndarray,
    layer_index: int,
    row: int,
    col: int,
    channel: int,
    normalize: bool = True,
) -> ConvExplanation | PoolExplanation:
    """Recompute the value at (row, col, channel) of layer `layer_index`'s output for this digit
    from the layer's input, kernel and bias (or pooling window), beside what Keras produced."""
    check_position(model, layer_index, row, col, channel)
    x = model_input(digit, normalize)
    outs = activations(model, x)
    layer = model.layers[layer_index]
    inp = (outs[layer_index - 1] if layer_index else x)[0].astype(np.float64)
    actual = float(outs[layer_index][0, row, col, channel])
    (kh, kw), (sh, sw), padding = _window(layer)
    dh, dw = _pair(getattr(layer, "dilation_rate", 1))
    rows = _positions(row, inp.shape[0], kh, sh, padding, dh)
    cols = _positions(col, inp.shape[1], kw, sw, padding, dw)
    inside = np.array(
        [[0 <= r < inp.shape[0] and 0 <= q < inp.shape[1] for q in cols] for r in rows]
    )
    patch = np.zeros((kh, kw, inp.shape[2]))
    for a, r in enumerate(rows):
        for b, q in enumerate(cols):
            if inside[a, b]:
                patch[a, b] = inp[r, q]
    where = (layer_index, _type(layer), row, col, channel, rows, cols)  # each explanation's start
    if _type(layer) in CONV_TYPES:
        kernel = np.asarray(layer.kernel, dtype=np.float64)[:, :, :, channel]
        bias = float(np.asarray(layer.bias)[channel]) if layer.use_bias else 0.0
        products = patch * kernel
        sums = products.sum(axis=(0, 1))
        total = float(sums.sum() + bias)
        act = getattr(layer.activation, "__name__", "linear")
        value = float(np.asarray(layer.activation(np.array([[total]], dtype=np.float32)))[0, 0])
        return ConvExplanation(
            *where, patch, kernel, products, sums, bias, total, act, value, actual
        )
    window = np.where(inside, patch[:, :, channel], np.nan)
    if _type(layer) == "MaxPooling2D":
        a, b = map(int, np.unravel_index(np.nanargmax(window), window.shape))
        return PoolExplanation(*where, window, (rows[a], cols[b]), float(window[a, b]), actual)
    return PoolExplanation(*where, window, None, float(np.nanmean(window)), actual)


def _matrix(m: np.ndarray, fmt: str = "{:8.4f}") -> list[str]:
    return [
        "  ".join(
            "     pad" if np.isnan(v) else fmt.format(v if abs(v) >= 5e-5 else 0.0) for v in r
        )
        for r in m
    ]


def format_explanation(e: ConvExplanation | PoolExplanation) -> str:
    """The computation as the lecture writes it by hand, ending with Keras's own value."""
    where = (
        f"layer {e.layer_index} ({e.layer_type}), row {e.row}, column {e.col}, channel {e.channel}"
    )
    span = (
        f"rows {e.input_rows[0]} to {e.input_rows[-1]}, columns {e.input_cols[0]} to "
        f"{e.input_cols[-1]}"
    )
    lines = [
        f"Value at {where}",
        f"Window on the layer's input: {span} (below 0 or past the end: padding)",
    ]
    if isinstance(e, PoolExplanation):
        lines += ["Window:", *_matrix(e.window)]
        if e.winner is not None:
            lines.append(
                f"Max pooling: the largest value, {e.value:.6f}, at input row "
                f"{e.winner[0]}, column {e.winner[1]}, wins"
            )
        else:
            lines.append(f"Average pooling: the mean of the window = {e.value:.6f}")
    else:
        depth = e.patch.shape[2]
        if depth == 1:
            lines += [
                "Input patch:",
                *_matrix(e.patch[:, :, 0]),
                f"Kernel (channel {e.channel}):",
                *_matrix(e.kernel[:, :, 0]),
                "Element-wise products:",
                *_matrix(e.products[:, :, 0]),
                f"Sum of products       {e.channel_sums[0]: .6f}",
            ]
        else:
            lines.append(
                f"The kernel spans all {depth} input channels; patch . kernel per input channel:"
            )
            lines += [f"  input channel {k:>3}: {s: .6f}" for k, s in enumerate(e.channel_sums)]
            lines.append(f"Sum over channels     {e.channel_sums.sum(): .6f}")
        lines += [
            f"+ bias                {e.bias: .6f}",
            f"= {e.total: .6f}",
            f"{e.activation}({e.total:.6f}) = {e.value:.6f}"
            + ("   (ReLU(x) = max(0, x))" if e.activation == "relu" else ""),
            "(Keras slides the kernel without flipping it: cross-correlation.)",
        ]
    agree = abs(e.value - e.actual) <= 1e-4 * max(1.0, abs(e.actual))
    lines.append(f"The layer produced {e.actual:.6f}" + ("  (agrees)" if agree else "  (DIFFERS)"))
    return "\n".join(lines)


# --- TensorBoard: kernels and feature maps once per epoch -------------------------------------


def tensorboard_images(model, x: np.ndarray) -> dict[str, np.ndarray]:
    """The callback's images, uint8 RGB (H, W, 3), by tag."""
    first, kernels = first_kernels(model)
    tiled = tile(kernels)
    images = {f"kernels/layer_{first}": to_rgb8(tiled, "RdBu_r", True, tb_scale(tiled))}
    outs = activations(model, x)
    for i, layer in enumerate(model.layers):
        if _type(layer) in CONV_TYPES:
            tiled = tile(outs[i][0])
            images[f"feature_maps/layer_{i}_{_type(layer).lower()}"] = to_rgb8(
                tiled, "viridis", False, tb_scale(tiled)
            )
    return images
