"""`cnn sweep`: search hyperparameters, each trial a training run of the config."""

from __future__ import annotations

import click

from cnn_mnist.cli.options import config_options
from cnn_mnist.cli.shell import command, progress


@command()
@config_options
@click.option(
    "--trials",
    type=click.IntRange(min=1),
    help="sweep.trials: the study's total, counted over every process that joins it.",
)
@click.option(
    "--storage",
    metavar="URL",
    help="Optuna storage to run or join: sqlite:///FILE.db, or "
    "postgresql://USER:PASSWORD@HOST/DB [default: logs/sweeps/<study>.db].",
)
@click.option("--study", metavar="NAME", help="The study [default: the config file's name].")
@click.option(
    "--status", is_flag=True, help="Show the study's trials and best trial; train nothing."
)
def sweep(config_path, sets, trials, storage, study, status, verbose, quiet):
    """Search hyperparameters: each trial trains the config with values from its sweep: section.

    \b
    cnn sweep --config sweep              (the shipped search; logs/sweeps/sweep.db)
    cnn sweep --config sweep --status     (the trials so far, and the best config)
    cnn sweep --config my.yaml --storage postgresql://user:pw@db-host/sweeps   (on each machine)
    """
    if not config_path:
        raise click.UsageError("give the config with the sweep: section: --config FILE")
    from cnn_mnist.tools import sweep

    plan = sweep.plan(
        config_path=config_path, sets=sets, trials=trials, storage=storage, study=study
    )
    if status:
        report = sweep.status(plan)
    else:
        report = sweep.run(plan, progress=progress(quiet), verbose=verbose)
    click.echo(sweep.format_report(report))
