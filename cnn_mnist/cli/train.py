"""`cnn train`: load the data, build the model from a config, train, evaluate and save it."""

from __future__ import annotations

from typing import TYPE_CHECKING

import click

from cnn_mnist.cli.options import config_options, data_option, dataset_option
from cnn_mnist.cli.shell import command, progress

if TYPE_CHECKING:
    from cnn_mnist.training.pipeline import RunResult


@command()
@config_options
@data_option(
    "Data folder (four IDX files) or .npz [default: $CNN_MNIST_DATA, "
    "$CNN_FASHION_DATA for fashion_mnist, else download]."
)
@dataset_option(
    "data.dataset: mnist, fashion_mnist (both checked by checksum) or custom "
    "(any 28x28 ten-class set; names in data.class_names)."
)
@click.option("--epochs", type=click.IntRange(min=1), help="training.epochs")
@click.option("--batch-size", type=click.IntRange(min=1), help="training.batch_size")
@click.option(
    "--learning-rate", type=click.FloatRange(min=0, min_open=True), help="compile.learning_rate"
)
@click.option("--seed", type=click.IntRange(min=0), help="training.seed: same seed, same metrics.")
@click.option("--model-path", metavar="PATH", help="output.model_path (.h5 or .keras)")
@click.option(
    "--distribution",
    type=click.Choice(["none", "mirrored", "multi_worker"]),
    help="training.distribution: mirrored (all local GPUs; without one, "
    "training.cpu_devices CPU devices) or multi_worker (run on every worker "
    "of the cluster in $TF_CONFIG).",
)
@click.option(
    "--resume",
    "resume",
    is_flag=False,
    flag_value="",
    default=None,
    metavar="[RUN_ID]",
    help="Continue the most recent unfinished run (or RUN_ID) from its last finished epoch.",
)
@click.option(
    "--overwrite",
    is_flag=True,
    help="Replace a model file at the model path that `cnn train` did not save.",
)
@click.option(
    "--profile",
    is_flag=True,
    default=None,
    help="tensorboard.profile_batch=[10, 15]: profile those steps for TensorBoard's Profile tab.",
)
def train(
    config_path,
    sets,
    data_path,
    dataset,
    epochs,
    batch_size,
    learning_rate,
    seed,
    model_path,
    distribution,
    resume,
    overwrite,
    profile,
    verbose,
    quiet,
):
    """Load the data (MNIST by default), build the model from a config, train, evaluate and
    save it."""
    from cnn_mnist.training import pipeline
    from cnn_mnist.training.request import request

    options = {
        "training.epochs": epochs,
        "training.batch_size": batch_size,
        "compile.learning_rate": learning_rate,
        "training.seed": seed,
        "output.model_path": model_path,
        "data.dataset": dataset,
        "tensorboard.profile_batch": [10, 15] if profile else None,
    }
    if resume is not None:
        _refuse_options(options, sets)
    more = {"data.path": data_path, "training.distribution": distribution}
    wanted = request(
        config_path=config_path, sets=sets, overrides={**options, **more}, resume=resume
    )
    result = pipeline.train(
        wanted.config,
        config_source=config_path or "default",
        progress=progress(quiet),
        verbose=verbose,
        resume=wanted.resume,
        overwrite=overwrite,
        own_config=wanted.own_config,
    )
    log_dir = wanted.config.tensorboard.log_dir
    click.echo(format_result(result, log_dir=log_dir, quiet=quiet))


def _refuse_options(options: dict, sets) -> None:
    """--resume's check: no config option given on the command line (named as typed)."""
    named = [
        k.split(".")[-1].replace("_", "-").replace("profile-batch", "profile")
        for k, v in options.items()
        if v is not None
    ]
    given = [f"--{name}" for name in named] + (["--set"] if sets else [])
    if given:
        drop = ", ".join(given)
        raise click.UsageError(
            f"--resume continues a run with the config it started with; drop {drop}"
        )


def format_result(result: RunResult, log_dir: str, *, quiet: bool = False) -> str:
    """What `cnn train` prints at the end: the evaluation, then where everything went."""
    from cnn_mnist.stages.evaluate import format_report

    ev, weights = result.evaluation, result.distribution.get("weights_sha256", "")[:16]
    if not result.chief:
        return (
            f"{result.worker.capitalize()} done: test accuracy {ev.accuracy:.4f}, weights "
            f"{weights}. The chief saved the model and run {result.run_id}'s record."
        )
    lines = [
        f"\n{format_report(ev)}" if not quiet else format_report(ev, tables=False),
        f"Model saved to {result.model_path}",
    ]
    if quiet:
        return "\n".join(lines)
    if result.distribution:
        d = result.distribution
        lines.append(
            f"Distributed   {d['strategy']}: {d['replicas']} replicas on "
            f"{d['workers']} worker(s), global batch {d['global_batch_size']}; "
            f"weights {weights}"
        )
    if result.replaced_run and result.replaced_run != result.run_id:
        lines.append(
            f"              (the model it replaced stays in run {result.replaced_run}'s folder)"
        )
    lines += [
        f"Run record    {result.record_path}",
        f"Plots         {result.paths['confusion_matrix_png']}",
        f"TensorBoard   cnn tensorboard --logdir {log_dir}",
    ]
    return "\n".join(lines)
