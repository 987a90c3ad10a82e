"""`cnn runs`: list the training runs; show, compare, pick the best, remove."""

from __future__ import annotations

import json

import click

from cnn_mnist.cli.shell import fail, group
from cnn_mnist.core import paths


def logdir_option(command):
    """--logdir, on the group and on each subcommand (`_logdir` picks the one given)."""
    return click.option(
        "--logdir",
        type=click.Path(file_okay=False),
        default=None,
        metavar="DIR",
        help=f"Folder holding the runs [default: {paths.LOG_DIR}].",
    )(command)


def _logdir(logdir: str | None) -> str:
    """A subcommand's --logdir, else the group's (`cnn runs --logdir DIR show RUN`)."""
    group = click.get_current_context().find_root().meta.get("cnn.runs.logdir")
    return logdir or group or paths.LOG_DIR


@group(invoke_without_command=True)
@logdir_option
@click.option("--json", "as_json", is_flag=True, help="Print the runs as a JSON list.")
@click.pass_context
def runs(ctx, logdir, as_json, quiet):
    """List the training runs, newest first; show, compare, pick the best, remove.

    \b
    cnn runs                      (id, status, time, test accuracy, what differs, model)
    cnn runs show 20261201        (a unique prefix of a run id will do)
    cnn runs compare RUN RUN ...
    cnn runs best --metric test_loss
    cnn runs rm RUN
    """
    ctx.meta["cnn.runs.logdir"] = logdir
    if ctx.invoked_subcommand is not None:
        return
    from cnn_mnist.tools import runs
    from cnn_mnist.tools.run_tables import format_json, format_list

    listed = runs.list_runs(_logdir(logdir))
    if not listed:
        raise runs.no_runs(_logdir(logdir))
    click.echo(
        format_json(listed)
        if as_json
        else "\n".join(run.id for run in listed)
        if quiet
        else format_list(listed)
    )


@runs.command("show")
@click.argument("run_id", metavar="RUN")
@logdir_option
def runs_show(run_id, logdir):
    """One run: how it went, its settings, metrics per epoch, timings, files."""
    from cnn_mnist.tools.run_tables import format_show
    from cnn_mnist.tools.runs import find_run

    click.echo(format_show(find_run(_logdir(logdir), prefix=run_id)))


@runs.command("compare")
@click.argument("run_ids", nargs=-1, required=True, metavar="RUN RUN [RUN]...")
@logdir_option
def runs_compare(run_ids, logdir):
    """Runs side by side: the settings that differ, test accuracy and loss, F1 per digit,
    time."""
    if len(run_ids) < 2:
        raise click.UsageError("give two runs or more to compare")
    from cnn_mnist.tools.run_tables import format_comparison
    from cnn_mnist.tools.runs import compare_runs, find_run

    folders = list(dict.fromkeys(find_run(_logdir(logdir), prefix=run_id) for run_id in run_ids))
    if len(folders) < 2:
        raise click.UsageError("those ids name one run; give two runs or more to compare")
    click.echo(format_comparison(compare_runs(folders)))


@runs.command("best")
@click.option(
    "--metric",
    type=click.Choice(["test_accuracy", "test_loss"]),
    default="test_accuracy",
    show_default=True,
    help="test_accuracy: highest wins; test_loss: lowest wins.",
)
@click.option("--json", "as_json", is_flag=True, help="Print the run as JSON.")
@logdir_option
def runs_best(metric, as_json, logdir, quiet):
    """The completed run with the best test accuracy (or test loss)."""

    from cnn_mnist.tools.run_tables import format_best
    from cnn_mnist.tools.runs import best_run

    best = best_run(_logdir(logdir), metric=metric)
    click.echo(
        json.dumps(best.to_dict(), indent=2)
        if as_json
        else best.id
        if quiet
        else format_best(best, metric=metric)
    )


@runs.command("rm")
@click.argument("run_id", metavar="RUN")
@click.option("-y", "--yes", is_flag=True, help="Do not ask first.")
@click.option(
    "--force",
    is_flag=True,
    help="Also remove a run whose model the stable model path holds, or one marked running.",
)
@logdir_option
def runs_rm(run_id, yes, force, logdir, quiet):
    """Remove a run's folder: its logs, record and model (asks first)."""
    from cnn_mnist.tools import runs
    from cnn_mnist.tools.run_tables import seconds

    folder = runs.find_run(_logdir(logdir), prefix=run_id)
    run = runs.summarize(folder)
    runs.check_removable(run, force=force)
    what = (
        f"run {run.id} ({run.status}, test accuracy {run.test_accuracy:.4f})"
        if run.test_accuracy is not None
        else f"run {run.id} ({run.status})"
    )
    size = runs.folder_size(folder) / 1e6
    if not yes and not click.confirm(
        f"Remove {what}, took {seconds(run.duration_s)}: {folder}/ ({size:.1f} MB)?", default=False
    ):
        fail("nothing removed", 1)
    runs.remove_run(folder, force=force)
    if not quiet:
        click.echo(f"Removed {folder}/")
