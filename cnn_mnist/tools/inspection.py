"""`cnn inspect`: looking inside a saved model for one digit (kernels, feature maps, saliency,
and one convolution by hand).

The pictures and the arithmetic are network.py's (shared with training's TensorBoard images
and `cnn serve`); here the model file and the digit are found and checked, before TensorFlow
is imported. Nothing here prints or exits.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from cnn_mnist.analysis.images import load_digit
from cnn_mnist.analysis.network import (
    BadPosition,
    Inspection,
    check_has_convolution,
    check_position,
    explain_at,
    format_explanation,
    inspect_digit,
    parse_at,
)
from cnn_mnist.core import files, paths
from cnn_mnist.core.runtime import import_tensorflow
from cnn_mnist.core.stamps import new_run_id
from cnn_mnist.stages.data import check_indices, load_for_model
from cnn_mnist.stages.handle import open_saved

# --- the command's library call --------------------------------------------------------------


def default_out_dir() -> Path:
    """logs/inspect/<time>/, named like a run folder."""
    return Path(paths.INSPECT_DIR) / new_run_id()


FIXED_PICTURES = ("input.png", "kernels.png", "saliency.png")  # and layer-<i>-<type>.png


def check_out(out: Path, overwrite: bool) -> Path:
    """--out's place, and the pictures there that would be replaced, checked before the work
    (the folder is made only when they are written)."""
    files.check_place(out, "inspection pictures", "--out")
    for found in [*out.glob("layer-*.png"), *(out / n for n in FIXED_PICTURES)]:
        files.check_target(found, what="picture", ours=files.written_by_us, overwrite=overwrite)
    return out


def inspect_model(
    model_path: str | Path,
    *,
    index: int | None = None,
    image: str | Path | None = None,
    out_dir: str | Path | None = None,
    data_path: str | Path | None = None,
    at: str | None = None,
    verbose: bool = False,
    dataset: str | None = None,
    overwrite: bool = False,
) -> Inspection:
    """`cnn inspect`: one test item (by index, with its label; read as the model's dataset, or
    `dataset`) or your own picture, through a saved model. Everything the user typed is
    checked before TensorFlow is imported."""
    position = parse_at(at) if at is not None else None
    out = check_out(Path(out_dir or default_out_dir()), overwrite)
    saved = open_saved(model_path)
    if not saved.is_keras:  # said before any data is read
        saved.keras_model("`cnn inspect` (feature maps, saliency, --at)")
    label = None
    if index is not None and image is None:
        mnist = load_for_model(data_path, saved.dataset, dataset, f"model {model_path}")
        check_indices([index], len(mnist.x_test))
        digit = mnist.x_test[index].astype(np.float32) / np.float32(255)
        label, source = int(mnist.y_test[index]), f"index {index}"
    elif image is not None and index is None:
        digit, source = load_digit(image), str(image)
    else:
        raise BadPosition("give exactly one digit: --index N (a test image) or --image PATH")
    normalize = saved.normalize

    import_tensorflow(verbose)
    model = saved.keras_model()
    check_has_convolution(model, str(model_path))
    if position is not None:
        check_position(model, *position)
    result = inspect_digit(
        model,
        digit,
        out,
        label=label,
        normalize=normalize,
        source=source,
        class_names=saved.class_names,
        write=lambda path, data: files.write_output(
            path, data, what="picture", option="--out", overwrite=overwrite
        ),
    )
    if position is not None:
        result.explanation = explain_at(model, digit, *position, normalize=normalize)
    return result


def format_inspection(result: Inspection) -> str:
    """For the terminal: each layer's shape and arithmetic, dead and most active channels."""
    lines = []
    for v in result.layers:
        h, w, c = v.output_shape
        lines.append(f"layer {v.index} {v.type} {h}x{w}x{c}: {v.arithmetic}")
        lines.append(
            f"    {v.zero_channels} of {c} channels all zero (dead for this input); "
            f"most active (mean): {', '.join(str(t) for t in v.top_channels)}"
        )
        lines.append(f"    {v.png}")
    guess = f"{result.source}: " if result.source else ""
    guess += f"predicted {result.name(result.predicted)} ({result.probability:.1%})"
    if result.label is not None:
        guess += f", true label {result.name(result.label)}" + (
            "" if result.label == result.predicted else "  <- wrong"
        )
    lines.append(guess)
    lines.append(
        f"Input, kernels, saliency: {result.files['input']}, {result.files['kernels']}, "
        f"{result.files['saliency']}"
    )
    if result.explanation is not None:
        lines += ["", format_explanation(result.explanation)]
    return "\n".join(lines)
