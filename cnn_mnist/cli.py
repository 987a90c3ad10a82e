"""The `cnn` command: thin click commands over the library.

Every command's shell is added once, by the `Shell` group (`cli.command()`, `group.command()`):
--verbose and --quiet, logging, and the library's errors as one line and an exit code. A
command declares its own options (shared ones: `model_option`, `data_option`, `config_options`,
`dataset_option`), calls the library with keywords, and prints what it returns. Heavy modules
(TensorFlow, Keras, the pipeline) are imported inside the commands, under their own names, so
`--help` and argument errors answer at once.
"""

from __future__ import annotations

import functools
import logging
import os
import sys
from inspect import signature

import click

from cnn_mnist import __version__
from cnn_mnist.core import paths
from cnn_mnist.core.datasets import DATASETS
from cnn_mnist.core.errors import CnnError

log = logging.getLogger("cnn_mnist")


class _Formatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        message = super().format(record)
        return f"warning: {message}" if record.levelno == logging.WARNING else message


def _setup_logging(verbose: bool, quiet: bool) -> None:
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(_Formatter("%(message)s"))
    log.handlers[:] = [handler]
    log.propagate = False
    log.setLevel(logging.DEBUG if verbose else logging.WARNING if quiet else logging.INFO)


def _fail(message: str, code: int) -> None:
    click.echo(f"error: {message}", err=True)
    sys.exit(code)


def user_errors(command):
    """Turn the library's errors into a short message and exit code, never a traceback."""
    if getattr(command, "_cnn_errors", False):
        return command

    @functools.wraps(command)
    def wrapper(*args, **kwargs):
        _stop_on_sigterm()  # its temporary files are removed on the way out, as on Ctrl-C
        sys.unraisablehook = _unraisable
        try:
            return command(*args, **kwargs)
        except CnnError as exc:
            _fail(str(exc), exc.exit_code)
        except KeyboardInterrupt:
            _fail("interrupted", 130)

    wrapper._cnn_errors = True  # type: ignore[attr-defined]
    return wrapper


def _unraisable(unraisable) -> None:
    """An error Python cannot raise (h5py closing a file the full disk cut short, in a
    destructor) is logged for --verbose, not printed as a traceback: the error that matters
    has been raised and said already."""
    log.debug("ignored in %r: %s", unraisable.object, unraisable.exc_value)


def output_options(command):
    """--verbose and --quiet, shared by every command."""
    command = click.option(
        "-q", "--quiet", is_flag=True, help="Only results and errors: no progress bar or notes."
    )(command)
    command = click.option(
        "-v",
        "--verbose",
        is_flag=True,
        help="Show details, and TensorFlow's own start-up messages.",
    )(command)
    return command


def shell(command):
    """A command's shell, added once for all (Shell does it for every command): --verbose and
    --quiet, logging set up from them, and the library's errors as a short message and exit
    code. The command gets `verbose` and `quiet` where it names them among its parameters."""
    if getattr(command, "_cnn_shell", False):
        return command
    wants = signature(command).parameters
    has_options = any(p.name == "verbose" for p in getattr(command, "__click_params__", ()))

    @functools.wraps(command)
    def run(*args, verbose: bool = False, quiet: bool = False, **kwargs):
        _setup_logging(verbose, quiet)
        kwargs.update(
            {
                name: value
                for name, value in (("verbose", verbose), ("quiet", quiet))
                if name in wants
            }
        )
        return command(*args, **kwargs)

    run = user_errors(run)
    run._cnn_shell = True  # type: ignore[attr-defined]
    if not has_options:  # a command written with @output_options keeps its own
        given = list(getattr(command, "__click_params__", []))
        run.__click_params__ = []  # type: ignore[attr-defined]
        output_options(run)
        run.__click_params__ += given  # type: ignore[attr-defined]  # --help lists them last
    return run


class Shell(click.Group):
    """`cnn` and its groups: every command and group made with `.command()` or `.group()` gets
    its shell (`shell`), as flask's AppGroup gives its commands the app context; a command's
    own function holds only what it does."""

    def command(self, *args, **kwargs):
        if len(args) == 1 and callable(args[0]) and not kwargs:  # @group.command, no brackets
            return super().command()(shell(args[0]))
        return lambda f: super(Shell, self).command(*args, **kwargs)(shell(f))

    def group(self, *args, **kwargs):
        kwargs.setdefault("cls", Shell)
        return lambda f: super(Shell, self).group(*args, **kwargs)(shell(f))


def dataset_option(text: str):
    """--dataset, for the commands that read data; `text` is its help."""
    return click.option("--dataset", type=click.Choice(DATASETS), help=text)


MODEL_DATASET = (
    "The test data's dataset [default: the model's]; data of another dataset than "
    "the model's is refused."
)
TEST_DATA = (
    "Test data folder or .npz [default: $CNN_MNIST_DATA, or $CNN_FASHION_DATA for a "
    "Fashion-MNIST model, else download]."
)


def model_option(text: str = "A model saved by `cnn train`."):
    """-m/--model: a saved model, the stable model path by default; `text` is its help."""
    return click.option(
        "-m",
        "--model",
        "model_path",
        default=paths.MODEL_PATH,
        show_default=True,
        type=click.Path(),
        help=text,
    )


def data_option(text: str = TEST_DATA):
    """--data: where the data is, when not where the dataset's environment variable says."""
    return click.option("--data", "data_path", metavar="PATH", help=text)


def overwrite_option(where: str):
    """--overwrite: replace what is at `where` though cnn-mnist did not write it."""
    return click.option(
        "--overwrite",
        is_flag=True,
        help=f"Replace files at {where} that cnn-mnist did not write.",
    )


def config_options(command):
    """--config and --set, shared by train and summary."""
    command = click.option(
        "--set",
        "sets",
        multiple=True,
        metavar="KEY.PATH=VALUE",
        help="Override any config value, e.g. --set model.layers[3].rate=0.3 (repeatable).",
    )(command)
    command = click.option(
        "-c",
        "--config",
        "config_path",
        type=click.Path(dir_okay=False),
        help="YAML config file, or the name of a shipped one (default, "
        "speedrun, fashion, handwriting, sweep) [default: the lecture's "
        "model].",
    )(command)
    return command


def progress(quiet: bool) -> int:
    """Keras's verbose for a command's training: a bar in a terminal, a line per epoch else."""
    return 0 if quiet else (1 if sys.stdout.isatty() else 2)


@click.group(cls=Shell, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="cnn")
def cli() -> None:
    """Train, evaluate, save and use a CNN for handwritten digits (MNIST).

    \b
    Start with:   cnn train          (the lecture's model, 1 epoch)
    then:         cnn predict --index 10
                  cnn tensorboard    (loss, accuracy, histograms, confusion matrix)
    """


@cli.command()
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

    options = {
        "training.epochs": epochs,
        "training.batch_size": batch_size,
        "compile.learning_rate": learning_rate,
        "training.seed": seed,
        "output.model_path": model_path,
        "data.dataset": dataset,
        "tensorboard.profile_batch": [10, 15] if profile else None,
    }
    given = _options_given(options, sets)
    if resume is not None and given:
        drop = ", ".join(given)
        raise click.UsageError(
            f"--resume continues a run with the config it started with; drop {drop}"
        )
    more = {"data.path": data_path, "training.distribution": distribution}
    wanted = pipeline.request(config_path, sets, {**options, **more}, resume=resume)
    _stop_on_sigterm()
    result = pipeline.train(
        wanted.config,
        config_source=config_path or "default",
        progress=progress(quiet),
        verbose=verbose,
        resume=wanted.resume,
        overwrite=overwrite,
        own_config=wanted.own_config,
    )
    click.echo(pipeline.format_result(result, wanted.config.tensorboard.log_dir, quiet=quiet))


def _options_given(options: dict, sets) -> list[str]:
    """The config options given on the command line, as typed (--resume refuses them)."""
    named = [
        k.split(".")[-1].replace("_", "-").replace("profile-batch", "profile")
        for k, v in options.items()
        if v is not None
    ]
    return [f"--{name}" for name in named] + (["--set"] if sets else [])


def _stop_on_sigterm() -> None:
    """SIGTERM stops every command like Ctrl-C: cleanly (training keeps its last finished
    epoch; no temporary file is left)."""
    import signal

    def handler(signum, frame):
        raise KeyboardInterrupt

    try:
        signal.signal(signal.SIGTERM, handler)
    except ValueError:  # not the main thread (embedded use): leave the default
        pass


@cli.command()
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

    plan = sweep.plan(config_path, sets, trials=trials, storage=storage, study=study)
    if status:
        report = sweep.status(plan)
    else:
        _stop_on_sigterm()
        report = sweep.run(plan, progress=progress(quiet), verbose=verbose)
    click.echo(sweep.format_report(report))


@cli.command()
@config_options
def summary(config_path, sets, quiet):
    """Show the layers, output shapes and parameter counts, without training."""
    from cnn_mnist.config.load import load_config
    from cnn_mnist.config.shapes import format_summary, infer

    config = load_config(config_path, sets=sets)
    rows, _ = infer(config.model)
    click.echo(f"Model {config.model.name!r} from {config_path or 'the default config'}\n")
    click.echo(format_summary(rows, config.model.input_shape))
    if not quiet:
        click.echo(
            "\nConv2D: (kernel height x width x input depth + 1 bias) x kernels. "
            "Dense: (inputs + 1 bias) x units.\n"
            "Output size = (W - K + 2P) / S + 1 for input W, kernel K, padding P, stride S."
        )


@cli.group("config")
def config_group() -> None:
    """Print the resolved config, or the JSON Schema that an editor checks configs with.

    \b
    cnn config show --config speedrun --set training.epochs=2
    cnn config schema > config.schema.json
    """


@config_group.command("show")
@config_options
@output_options
@user_errors
def config_show(config_path, sets, verbose, quiet):
    """Print the resolved config as YAML: the file, the --set values and every default."""
    _setup_logging(verbose, quiet)
    from cnn_mnist.config.load import load_config, to_yaml

    click.echo(to_yaml(load_config(config_path, sets=sets)), nl=False)


@config_group.command("schema")
@output_options
@user_errors
def config_schema(verbose, quiet):
    """Print the config's JSON Schema (every key's type, default, choices and description)."""
    from cnn_mnist.config.load import json_schema_text

    click.echo(json_schema_text(), nl=False)


@cli.command()
@click.option(
    "--logdir",
    default=paths.LOG_DIR,
    show_default=True,
    type=click.Path(),
    help="Folder holding the runs.",
)
@click.option("--port", default=6006, show_default=True, type=click.IntRange(1, 65535))
@click.option("--host", default="localhost", show_default=True)
def tensorboard(logdir, port, host, verbose):
    """Start TensorBoard on the training runs and print its address."""
    import os
    import subprocess
    from pathlib import Path

    if not Path(logdir).is_dir():
        _fail(f"no runs in {logdir}/ yet: run `cnn train` first, or pass --logdir", 2)
    url = f"http://{host}:{port}/"
    click.echo(f"TensorBoard for {logdir} at {url}  (Ctrl-C to stop)")
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL=os.environ.get("TF_CPP_MIN_LOG_LEVEL", "3"))
    args = ["--logdir", str(logdir), "--port", str(port), "--host", host]
    command = [sys.executable, "-m", "tensorboard.main", *args]
    stderr = None if verbose else subprocess.DEVNULL
    try:
        code = subprocess.call(command, env=env, stderr=stderr)
    except KeyboardInterrupt:
        code = 0
    if code not in (0, -2, 130):
        _fail(
            f"TensorBoard exited with code {code} (port {port} in use? try --port); "
            "run with --verbose to see its output",
            1,
        )


@cli.command()
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
@model_option("A model saved by `cnn train`, or its export (.tflite, .onnx, SavedModel folder).")
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
        _predict_numbers(images + more_images, model_path, verbose, as_json, indices, **saves)
    done = predict.predict(
        indices,
        images + more_images,
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
        click.echo(
            predict.format_predictions(done.items, as_json, draw if draw is not None else one)
        )
    if show and done.items and not predict.show(done.items):
        log.warning("no display to show the digits on: use --save-image PATH instead")
    if done.failed:
        sys.exit(1)


def _predict_numbers(
    paths, model_path, verbose, as_json, indices, save_image, save_preprocessed, overwrite
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
        paths, model_path, verbose, save_preprocessed=save_preprocessed, overwrite=overwrite
    )
    for message in read.failed:
        click.echo(f"error: {message}", err=True)
    if read.items:
        click.echo(predict.format_numbers(read.items, as_json))
    sys.exit(1 if read.failed else 0)


@cli.command()
@model_option("A model saved by `cnn train`, or its export (.tflite, .onnx, SavedModel folder).")
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
    from cnn_mnist.stages import evaluate

    report = evaluate.evaluate_model(
        model_path, data_path, out_dir, verbose=verbose, dataset=dataset, overwrite=overwrite
    )
    if not quiet:
        click.echo(
            f"Model {model_path} on {int(report.evaluation.confusion.sum()):,} test images "
            f"from {report.source}\n"
        )
    click.echo(evaluate.format_report(report.evaluation, tables=not quiet))
    if not quiet:
        files = report.paths
        click.echo(
            f"Confusion matrix  {files['confusion_matrix_png']}, "
            f"{files['confusion_matrix_json']}\nWorst mistakes    {files['mistakes_png']}"
        )


@cli.command()
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
    import json

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


@cli.command()
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
        fmt,
        quantize,
        out=out,
        data_path=data_path,
        allow_drop=allow_drop,
        verbose=verbose,
        overwrite=overwrite,
    )
    click.echo(json.dumps(done.to_dict(), indent=2) if as_json else export.format_export(done))


def logdir_option(command):
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


@cli.group(invoke_without_command=True)
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
    from cnn_mnist.tools.runs_report import format_json, format_list

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
    from cnn_mnist.tools.runs import find_run
    from cnn_mnist.tools.runs_report import format_show

    click.echo(format_show(find_run(_logdir(logdir), run_id)))


@runs.command("compare")
@click.argument("run_ids", nargs=-1, required=True, metavar="RUN RUN [RUN]...")
@logdir_option
def runs_compare(run_ids, logdir):
    """Runs side by side: the settings that differ, test accuracy and loss, F1 per digit,
    time."""
    if len(run_ids) < 2:
        raise click.UsageError("give two runs or more to compare")
    from cnn_mnist.tools.runs import compare_runs, find_run
    from cnn_mnist.tools.runs_report import format_comparison

    folders = list(dict.fromkeys(find_run(_logdir(logdir), run_id) for run_id in run_ids))
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
    import json

    from cnn_mnist.tools.runs import best_run
    from cnn_mnist.tools.runs_report import format_best

    best = best_run(_logdir(logdir), metric)
    click.echo(
        json.dumps(best.to_dict(), indent=2)
        if as_json
        else best.id
        if quiet
        else format_best(best, metric)
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
    from cnn_mnist.tools.runs_report import seconds

    folder = runs.find_run(_logdir(logdir), run_id)
    run = runs.summarize(folder)
    runs.check_removable(run, force)
    what = (
        f"run {run.id} ({run.status}, test accuracy {run.test_accuracy:.4f})"
        if run.test_accuracy is not None
        else f"run {run.id} ({run.status})"
    )
    size = runs.folder_size(folder) / 1e6
    if not yes and not click.confirm(
        f"Remove {what}, took {seconds(run.duration_s)}: {folder}/ ({size:.1f} MB)?", default=False
    ):
        _fail("nothing removed", 1)
    runs.remove_run(folder, force)
    if not quiet:
        click.echo(f"Removed {folder}/")


@cli.command()
@model_option("The model to serve first (the page can switch).")
@click.option(
    "--host",
    default="127.0.0.1",
    show_default=True,
    help="Address to listen on; anything but loopback lets other machines in.",
)
@click.option(
    "--port",
    default=8000,
    show_default=True,
    type=click.IntRange(0, 65535),
    help="Port to listen on (0: any free port).",
)
@data_option("MNIST folder or .npz, for the test digits [default: $CNN_MNIST_DATA, else download].")
@click.option(
    "--logdir",
    default=paths.LOG_DIR,
    show_default=True,
    type=click.Path(),
    help="Folder of runs whose models the page offers.",
)
@click.option("--open", "open_page", is_flag=True, help="Open the page in the web browser.")
def serve(model_path, host, port, data_path, logdir, open_page, verbose):
    """Draw a digit in the browser and watch the model read it (a local web page and JSON API).

    \b
    cnn serve                       then open http://127.0.0.1:8000/
    cnn serve --model logs/fit/<run-id>/model.h5 --port 8080 --open
    """
    from cnn_mnist.tools import serve

    app = serve.App(
        model_path,
        data_path=data_path,
        log_dir=logdir,
        verbose=verbose,
        models_dir=os.path.dirname(paths.MODEL_PATH),
    )  # models/ is offered too
    server = serve.make_server(app, host, port)
    if not serve.is_loopback(host):
        log.warning(
            "listening on %s: anyone who can reach this machine can use the page, "
            "which has no authentication",
            host,
        )
    click.echo(f"Serving {model_path} at {serve.url(server)}  (Ctrl-C to stop)")
    if open_page:
        import webbrowser

        webbrowser.open(serve.url(server))
    _stop_on_sigterm()
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        click.echo("Stopped.")
    finally:
        server.server_close()


def main() -> None:
    """The console script. Once TensorFlow is loaded, its interpreter teardown takes ~0.6 s and
    does nothing for us (every file is written and closed by then), so the process ends at once."""
    try:
        cli(prog_name="cnn")
        code = 0
    except SystemExit as exc:
        code = exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
        if isinstance(exc.code, str):
            click.echo(exc.code, err=True)
    if "tensorflow" in sys.modules:
        sys.stdout.flush()
        sys.stderr.flush()
        logging.shutdown()
        os._exit(code)
    sys.exit(code)


if __name__ == "__main__":
    main()
