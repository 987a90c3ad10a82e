"""`cnn evaluate`: a model's test metrics, confusion matrix and worst mistakes."""

from __future__ import annotations

import click

from cnn_mnist.cli.options import (
    ANY_MODEL,
    MODEL_DATASET,
    data_option,
    dataset_option,
    model_option,
    overwrite_option,
)
from cnn_mnist.cli.shell import command
from cnn_mnist.core import paths


@command()
@model_option(ANY_MODEL)
@data_option()
@dataset_option(MODEL_DATASET)
@click.option(
    "--out",
    "out_dir",
    type=click.Path(file_okay=False),
    metavar="DIR",
    help=f"Where to write the plots and JSON [default: {paths.EVALUATE_DIR}/<time>].",
)
@overwrite_option("--out")
def evaluate(model_path, data_path, dataset, out_dir, overwrite, verbose, quiet):
    """Test loss and accuracy, confusion matrix, per-class metrics, and the worst mistakes."""
    from cnn_mnist.stages.evaluate import format_report
    from cnn_mnist.tools.evaluation import evaluate_model

    report = evaluate_model(
        model_path,
        data_path=data_path,
        out_dir=out_dir,
        verbose=verbose,
        dataset=dataset,
        overwrite=overwrite,
    )
    if not quiet:
        click.echo(
            f"Model {model_path} on {int(report.evaluation.confusion.sum()):,} test images "
            f"from {report.source}\n"
        )
    click.echo(format_report(report.evaluation, tables=not quiet))
    if not quiet:
        files = report.paths
        click.echo(
            f"Confusion matrix  {files['confusion_matrix_png']}, "
            f"{files['confusion_matrix_json']}\nWorst mistakes    {files['mistakes_png']}"
        )
