"""`cnn inspect`: inside the network for one digit (named so as not to shadow `inspect`)."""

from __future__ import annotations

import json

import click

from cnn_mnist.cli.options import (
    MODEL_DATASET,
    data_option,
    dataset_option,
    model_option,
    overwrite_option,
)
from cnn_mnist.cli.shell import command
from cnn_mnist.core import paths


@command()
@model_option()
@click.option("-i", "--index", type=int, metavar="N", help="A test image, with its true label.")
@click.option("--image", type=click.Path(), metavar="PATH", help="Your own picture of a digit.")
@data_option()
@dataset_option(MODEL_DATASET)
@click.option(
    "--out",
    "out_dir",
    type=click.Path(file_okay=False),
    metavar="DIR",
    help=f"Where to write the pictures [default: {paths.INSPECT_DIR}/<time>].",
)
@click.option("--json", "as_json", is_flag=True, help="Print the results as JSON.")
@click.option(
    "--at",
    metavar="LAYER:ROW,COL,CHANNEL",
    help="Also compute one feature-map value by hand, e.g. --at 0:13,13,5.",
)
@overwrite_option("--out")
def inspect(model_path, index, image, data_path, dataset, out_dir, as_json, at, overwrite, verbose):
    """Look inside the network for one digit: kernels, feature maps, saliency.

    \b
    cnn inspect --index 10
    cnn inspect --image my-seven.png --at 0:13,13,5
    """
    if (index is None) == (image is None):
        raise click.UsageError("give one digit: --index N (a test image) or --image PATH")

    from cnn_mnist.tools import inspection

    result = inspection.inspect_model(
        model_path,
        index=index,
        image=image,
        out_dir=out_dir,
        data_path=data_path,
        at=at,
        verbose=verbose,
        dataset=dataset,
        overwrite=overwrite,
    )
    click.echo(
        json.dumps(result.to_dict(), indent=2) if as_json else inspection.format_inspection(result)
    )
