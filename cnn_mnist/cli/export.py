"""`cnn export`: the model for deployment, checked on the test set against Keras."""

from __future__ import annotations

import click

from cnn_mnist.cli.options import data_option, model_option
from cnn_mnist.cli.shell import command


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
    import json

    from cnn_mnist.stages import export

    done = export.export_model(
        model_path,
        fmt=fmt,
        quantize=quantize,
        out=out,
        data_path=data_path,
        allow_drop=allow_drop,
        verbose=verbose,
        overwrite=overwrite,
    )
    click.echo(json.dumps(done.to_dict(), indent=2) if as_json else export.format_export(done))
