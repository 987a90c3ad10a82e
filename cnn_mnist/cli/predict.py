"""`cnn predict`: test digits by index, or digits (and numbers) in your own pictures."""

from __future__ import annotations

import sys

import click

from cnn_mnist.cli.options import (
    ANY_MODEL,
    MODEL_DATASET,
    data_option,
    dataset_option,
    model_option,
    overwrite_option,
)
from cnn_mnist.cli.shell import command, log


@command()
@click.option(
    "-i",
    "--index",
    "indices",
    multiple=True,
    metavar="N|START:STOP",
    help="Test image(s) to predict: 10, or 10:20 for 10 to 19 (repeatable).",
)
@click.option(
    "--image",
    "images",
    multiple=True,
    type=click.Path(),
    metavar="PATH",
    help="Your own picture(s) of a digit, PNG or JPEG, or a folder of them; more "
    "paths may follow (--image digits/*.png).",
)
@click.argument("more_images", nargs=-1, type=click.Path(), metavar="[PATH]...")
@model_option(ANY_MODEL)
@data_option()
@dataset_option(MODEL_DATASET)
@click.option("--json", "as_json", is_flag=True, help="Print the results as JSON.")
@click.option(
    "--save-image",
    type=click.Path(dir_okay=False),
    metavar="PATH",
    help="Write a PNG of the digit(s) with prediction and true label.",
)
@click.option(
    "--save-preprocessed",
    type=click.Path(file_okay=False),
    metavar="DIR",
    help="Write the 28x28 inputs the model saw, one PNG each.",
)
@click.option(
    "--show", is_flag=True, help="Open a window with the digit(s), where a display exists."
)
@click.option(
    "--draw/--no-draw",
    default=None,
    help="Draw the digit in the terminal [default: when there is one input].",
)
@click.option(
    "--number", is_flag=True, help="Each --image is a number: read its digits, left to right."
)
@overwrite_option("--save-image or in --save-preprocessed")
def predict(
    indices,
    images,
    more_images,
    model_path,
    data_path,
    dataset,
    as_json,
    save_image,
    save_preprocessed,
    show,
    draw,
    number,
    overwrite,
    verbose,
    quiet,
):
    """Predict test digits by index, or digits in your own pictures.

    \b
    cnn predict --index 10
    cnn predict --index 10 --index 20 --index 30:35
    cnn predict --image my-seven.png --save-preprocessed seen/
    cnn predict --image digits/*.png      (or a folder: --image digits/)
    cnn predict --image year.png --number
    """
    if not indices and not images and not more_images:
        raise click.UsageError("nothing to predict: give --index N (a test image) or --image PATH")
    from cnn_mnist.tools import predict

    saves = dict(save_image=save_image, save_preprocessed=save_preprocessed, overwrite=overwrite)
    if number:
        paths = images + more_images
        _predict_numbers(
            paths, model_path=model_path, verbose=verbose, as_json=as_json, indices=indices, **saves
        )
    done = predict.predict(
        indices=indices,
        images=images + more_images,
        model_path=model_path,
        data_path=data_path,
        verbose=verbose,
        dataset=dataset,
        **saves,
    )
    for message in done.failed:
        click.echo(f"error: {message}", err=True)
    if done.items:
        one = len(done.items) == 1 and not quiet
        drawn = draw if draw is not None else one
        click.echo(predict.format_predictions(done.items, as_json=as_json, draw=drawn))
    if show and done.items and not predict.show(done.items):
        log.warning("no display to show the digits on: use --save-image PATH instead")
    if done.failed:
        sys.exit(1)


def _predict_numbers(
    paths, *, model_path, verbose, as_json, indices, save_image, save_preprocessed, overwrite
) -> None:
    """`cnn predict --image PATH --number`: each picture read as a row of digits."""
    from cnn_mnist.tools import predict

    if indices:
        raise click.UsageError("--number reads your pictures (--image PATH), not --index")
    if save_image:
        raise click.UsageError(
            "--save-image draws single digits; with --number, use --save-preprocessed DIR"
        )
    read = predict.predict_numbers(
        images=paths,
        model_path=model_path,
        verbose=verbose,
        save_preprocessed=save_preprocessed,
        overwrite=overwrite,
    )
    for message in read.failed:
        click.echo(f"error: {message}", err=True)
    if read.items:
        click.echo(predict.format_numbers(read.items, as_json=as_json))
    sys.exit(1 if read.failed else 0)
