"""`cnn export`: the model for deployment, checked on the test set against Keras."""

from __future__ import annotations

import json
from typing import TYPE_CHECKING

import click

from cnn_mnist.cli.options import data_option, model_option
from cnn_mnist.cli.shell import command

if TYPE_CHECKING:
    from cnn_mnist.stages.export import Export


@command()
@model_option("A Keras model saved by `cnn train`.")
@click.option(
    "-f",
    "--format",
    "fmt",
    required=True,
    type=click.Choice(("saved_model", "litert", "onnx")),
    help="SavedModel folder (TensorFlow Serving), .tflite (LiteRT: Android, the "
    "browser) or .onnx (ONNX Runtime: C++, C#, Java, JavaScript).",
)
@click.option(
    "--quantize",
    default="none",
    show_default=True,
    type=click.Choice(("none", "float16", "int8")),
    help="float16 weights, or full-integer int8 calibrated on 300 training images.",
)
@click.option(
    "-o",
    "--out",
    type=click.Path(),
    metavar="PATH",
    help="Where to write it [default: beside the model, e.g. models/NAME_int8.tflite].",
)
@click.option(
    "--allow-drop",
    type=float,
    metavar="POINTS",
    help="Test accuracy a quantized export may lose [default: 0.5 points].",
)
@data_option(
    "Test data to check the export on (and training images for int8) "
    "[default: as for `cnn evaluate`]."
)
@click.option(
    "--overwrite",
    is_flag=True,
    help="Replace what is at --out though cnn-mnist did not write it (a file, or a "
    "SavedModel folder; never a folder holding other files).",
)
@click.option("--json", "as_json", is_flag=True, help="Print the export and its checks as JSON.")
def export(model_path, fmt, quantize, out, allow_drop, data_path, overwrite, as_json, verbose):
    """Export the model for deployment, checked on the test set against Keras.

    \b
    cnn export --format onnx
    cnn export --format litert --quantize int8 --out app/digits.tflite
    cnn export --format saved_model --out serving/digits/1
    """

    from cnn_mnist.tools.exporting import export_model

    done = export_model(
        model_path,
        fmt=fmt,
        quantize=quantize,
        out=out,
        data_path=data_path,
        allow_drop=allow_drop,
        verbose=verbose,
        overwrite=overwrite,
    )
    click.echo(json.dumps(done.to_dict(), indent=2) if as_json else format_export(done))


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
