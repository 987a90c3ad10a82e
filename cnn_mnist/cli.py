"""The `cnn` command: thin click commands over the library.

Heavy modules (TensorFlow, Keras, the pipeline) are imported inside the commands, so `--help`
and argument errors answer at once.
"""

from __future__ import annotations

import functools
import logging
import os
import sys

import click

from cnn_mnist import __version__
from cnn_mnist.errors import CnnError

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

    @functools.wraps(command)
    def wrapper(*args, **kwargs):
        try:
            return command(*args, **kwargs)
        except CnnError as exc:
            _fail(str(exc), exc.exit_code)
        except KeyboardInterrupt:
            _fail("interrupted", 130)

    return wrapper


def output_options(command):
    """--verbose and --quiet, shared by every command."""
    command = click.option("-q", "--quiet", is_flag=True,
                           help="Only results and errors: no progress bar or notes.")(command)
    command = click.option("-v", "--verbose", is_flag=True,
                           help="Show details, and TensorFlow's own start-up messages.")(command)
    return command


def config_options(command):
    """--config and --set, shared by train and summary."""
    command = click.option("--set", "sets", multiple=True, metavar="KEY.PATH=VALUE",
                           help="Override any config value, e.g. --set model.layers[3].rate=0.3 "
                                "(repeatable).")(command)
    command = click.option("-c", "--config", "config_path", type=click.Path(dir_okay=False),
                           help="YAML config file, or the name of a shipped one (default, "
                                "speedrun) [default: the lecture's model].")(command)
    return command


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
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
@click.option("--data", "data_path", metavar="PATH",
              help="MNIST folder (four IDX files) or .npz [default: $CNN_MNIST_DATA, "
                   "else download].")
@click.option("--epochs", type=click.IntRange(min=1), help="training.epochs")
@click.option("--batch-size", type=click.IntRange(min=1), help="training.batch_size")
@click.option("--learning-rate", type=click.FloatRange(min=0, min_open=True),
              help="compile.learning_rate")
@click.option("--seed", type=click.IntRange(min=0), help="training.seed: same seed, same metrics.")
@click.option("--model-path", metavar="PATH", help="output.model_path (.h5 or .keras)")
@click.option("--distribution", type=click.Choice(["none", "mirrored", "multi_worker"]),
              help="training.distribution: mirrored (all local GPUs; without one, "
                   "training.cpu_devices CPU devices) or multi_worker (run on every worker "
                   "of the cluster in $TF_CONFIG).")
@click.option("--resume", "resume", is_flag=False, flag_value="", default=None, metavar="[RUN_ID]",
              help="Continue the most recent unfinished run (or RUN_ID) from its last "
                   "finished epoch.")
@click.option("--overwrite", is_flag=True,
              help="Replace a model file at the model path that `cnn train` did not save.")
@output_options
@user_errors
def train(config_path, sets, data_path, epochs, batch_size, learning_rate, seed, model_path,
          distribution, resume, overwrite, verbose, quiet):
    """Load MNIST, build the model from a config, train, evaluate and save it."""
    _setup_logging(verbose, quiet)
    from cnn_mnist.config import load_config

    overrides = {"training.epochs": epochs, "training.batch_size": batch_size,
                 "compile.learning_rate": learning_rate, "training.seed": seed,
                 "output.model_path": model_path}
    run_dir, own_config = None, True
    if resume is not None and _follows_chief(config_path, sets, distribution):
        # Another worker of a multi-worker run: the chief finds the run and sends its config.
        resume, own_config = None, False
    if resume is not None:
        given = [f"--{k.split('.')[-1].replace('_', '-')}" for k, v in overrides.items()
                 if v is not None] + (["--set"] if sets else [])
        if given:
            raise click.UsageError(f"--resume continues a run with the config it started with; "
                                   f"drop {', '.join(given)}")
        from cnn_mnist.pipeline import find_run_to_resume, load_run_config

        log_dir = load_config(config_path).tensorboard.log_dir
        run_dir = find_run_to_resume(log_dir, resume or None)
        config = load_run_config(run_dir, data_path)
        if distribution:  # a run may resume on other hardware: the batch stays global
            config = config.model_copy(update={"training": config.training.model_copy(
                update={"distribution": distribution})})
    else:
        overrides["training.distribution"] = distribution
        config = load_config(config_path, sets=sets, overrides={"data.path": data_path, **overrides})
    from cnn_mnist.evaluate import format_confusion, format_per_class
    from cnn_mnist.pipeline import train as run_training

    _stop_on_sigterm()
    progress = 0 if quiet else (1 if sys.stdout.isatty() else 2)
    result = run_training(config, config_source=config_path or "default", progress=progress,
                          verbose=verbose, resume=run_dir, overwrite=overwrite,
                          own_config=own_config)
    ev = result.evaluation
    weights = result.distribution.get("weights_sha256", "")[:16]
    if not result.chief:
        click.echo(f"{result.worker.capitalize()} done: test accuracy {ev.accuracy:.4f}, weights "
                   f"{weights}. The chief saved the model and run {result.run_id}'s record.")
        return
    if not quiet:
        click.echo(f"\nConfusion matrix (rows: true digit, columns: predicted)\n"
                   f"{format_confusion(ev.confusion)}\n\n{format_per_class(ev)}\n")
    click.echo(f"Test loss {ev.loss:.4f}, test accuracy {ev.accuracy:.4f} "
               f"({int(ev.confusion.trace()):,} of {int(ev.confusion.sum()):,})")
    click.echo(f"Model saved to {result.model_path}")
    if result.distribution and not quiet:
        d = result.distribution
        click.echo(f"Distributed   {d['strategy']}: {d['replicas']} replicas on {d['workers']} "
                   f"worker(s), global batch {d['global_batch_size']}; weights {weights}")
    if not quiet:
        if result.replaced_run and result.replaced_run != result.run_id:
            click.echo(f"              (the model it replaced stays in run {result.replaced_run}'s "
                       "folder)")
        click.echo(f"Run record    {result.record_path}\n"
                   f"Plots         {result.paths['confusion_matrix_png']}\n"
                   f"TensorBoard   cnn tensorboard --logdir {config.tensorboard.log_dir}")


def _follows_chief(config_path, sets, distribution) -> bool:
    """Whether this process is a non-chief worker of a multi-worker run (from the options, the
    config and TF_CONFIG; no TensorFlow). Such a worker takes its run from the chief."""
    from cnn_mnist.config import chief_task, load_config, read_tf_config

    if distribution is None:
        try:
            distribution = load_config(config_path, sets=sets).training.distribution
        except CnnError:
            return False
    return distribution == "multi_worker" and not chief_task(read_tf_config())


def _stop_on_sigterm() -> None:
    """SIGTERM stops training like Ctrl-C: cleanly, keeping the last finished epoch."""
    import signal

    def handler(signum, frame):
        raise KeyboardInterrupt

    try:
        signal.signal(signal.SIGTERM, handler)
    except ValueError:  # not the main thread (embedded use): leave the default
        pass


@cli.command()
@config_options
@output_options
@user_errors
def summary(config_path, sets, verbose, quiet):
    """Show the layers, output shapes and parameter counts, without training."""
    _setup_logging(verbose, quiet)
    from cnn_mnist.config import load_config
    from cnn_mnist.shapes import format_summary, infer

    config = load_config(config_path, sets=sets)
    rows, _ = infer(config.model)
    click.echo(f"Model {config.model.name!r} from {config_path or 'the default config'}\n")
    click.echo(format_summary(rows, config.model.input_shape))
    if not quiet:
        click.echo("\nConv2D: (kernel height x width x input depth + 1 bias) x kernels. "
                   "Dense: (inputs + 1 bias) x units.\n"
                   "Output size = (W - K + 2P) / S + 1 for input W, kernel K, padding P, stride S.")


@cli.command()
@click.option("--logdir", default="logs/fit", show_default=True, type=click.Path(),
              help="Folder holding the runs.")
@click.option("--port", default=6006, show_default=True, type=click.IntRange(1, 65535))
@click.option("--host", default="localhost", show_default=True)
@output_options
@user_errors
def tensorboard(logdir, port, host, verbose, quiet):
    """Start TensorBoard on the training runs and print its address."""
    import os
    import subprocess
    from pathlib import Path

    if not Path(logdir).is_dir():
        _fail(f"no runs in {logdir}/ yet: run `cnn train` first, or pass --logdir", 2)
    url = f"http://{host}:{port}/"
    click.echo(f"TensorBoard for {logdir} at {url}  (Ctrl-C to stop)")
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL=os.environ.get("TF_CPP_MIN_LOG_LEVEL", "3"))
    command = [sys.executable, "-m", "tensorboard.main", "--logdir", str(logdir),
               "--port", str(port), "--host", host]
    stderr = None if verbose else subprocess.DEVNULL
    try:
        code = subprocess.call(command, env=env, stderr=stderr)
    except KeyboardInterrupt:
        code = 0
    if code not in (0, -2, 130):
        _fail(f"TensorBoard exited with code {code} (port {port} in use? try --port); "
              "run with --verbose to see its output", 1)


DEFAULT_MODEL = "models/digits_recognition_cnn.h5"


def _model_normalize(model_path) -> bool:
    """How the model was trained to see pixels: [0, 1] unless its config says raw 0-255."""
    from cnn_mnist.save import read_metadata

    return read_metadata(model_path).get("config", {}).get("data", {}).get("normalize", True)


@cli.command()
@click.option("-i", "--index", "indices", multiple=True, metavar="N|START:STOP",
              help="Test image(s) to predict: 10, or 10:20 for 10 to 19 (repeatable).")
@click.option("--image", "images", multiple=True, type=click.Path(), metavar="PATH",
              help="Your own picture(s) of a digit, PNG or JPEG (repeatable).")
@click.option("-m", "--model", "model_path", default=DEFAULT_MODEL, show_default=True,
              type=click.Path(), help="A model saved by `cnn train`.")
@click.option("--data", "data_path", metavar="PATH",
              help="MNIST folder or .npz [default: $CNN_MNIST_DATA, else download].")
@click.option("--json", "as_json", is_flag=True, help="Print the results as JSON.")
@click.option("--save-image", type=click.Path(dir_okay=False), metavar="PATH",
              help="Write a PNG of the digit(s) with prediction and true label.")
@click.option("--save-preprocessed", type=click.Path(file_okay=False), metavar="DIR",
              help="Write the 28x28 inputs the model saw, one PNG each.")
@click.option("--show", is_flag=True, help="Open a window with the digit(s), where a display exists.")
@click.option("--draw/--no-draw", default=None,
              help="Draw the digit in the terminal [default: when there is one input].")
@output_options
@user_errors
def predict(indices, images, model_path, data_path, as_json, save_image, save_preprocessed,
            show, draw, verbose, quiet):
    """Predict test digits by index, or digits in your own pictures.

    \b
    cnn predict --index 10
    cnn predict --index 10 --index 20 --index 30:35
    cnn predict --image my-seven.png --save-preprocessed seen/
    """
    _setup_logging(verbose, quiet)
    if not indices and not images:
        raise click.UsageError("nothing to predict: give --index N (a test image) or --image PATH")
    import numpy as np

    from cnn_mnist import predict as use
    from cnn_mnist.save import check_model_path

    # Everything the user typed is checked before TensorFlow is imported.
    wanted = use.parse_indices(indices)
    items: list[use.Prediction] = []
    if wanted:
        from cnn_mnist.data import load_mnist

        mnist = load_mnist(data_path, test_only=True)
        use.check_indices(wanted, len(mnist.x_test))
        items += [use.Prediction(digit=mnist.x_test[i] / np.float32(255), probabilities=None,
                                 index=i, label=int(mnist.y_test[i])) for i in wanted]
    check_model_path(model_path)
    failed = []
    if images:
        from cnn_mnist.images import ImageError, load_digit

        for path in images:
            try:
                items.append(use.Prediction(digit=load_digit(path), probabilities=None, image=path))
            except ImageError as exc:
                click.echo(f"error: {exc}", err=True)
                failed.append(path)
    if items:
        model, backend = use.open_model(model_path, verbose)
        log.debug("Predicting with %s", backend)
        probs = use.probabilities(model, np.stack([p.digit for p in items]),
                                  normalize=_model_normalize(model_path))
        for p, row in zip(items, probs):
            p.probabilities = row
        _report_predictions(items, as_json, save_image, save_preprocessed, show, draw, quiet)
    if failed:
        sys.exit(1)


def _report_predictions(items, as_json, save_image, save_preprocessed, show, draw, quiet):
    import json
    from pathlib import Path

    from cnn_mnist import files
    from cnn_mnist import predict as use

    if as_json:
        click.echo(json.dumps([p.to_dict() for p in items], indent=2))
    else:
        if draw or (draw is None and len(items) == 1 and not quiet):
            for p in items:
                click.echo(use.render(p.digit))
        for p in items:
            click.echo(use.describe(p))
    if save_preprocessed:
        from cnn_mnist.images import save_digit_png

        for n, p in enumerate(items):
            name = f"index-{p.index}" if p.index is not None else f"{n:03d}-{Path(p.image).stem}"
            save_digit_png(p.digit, Path(save_preprocessed) / f"{name}.png")
        log.info("Inputs as the model saw them: %s/", save_preprocessed)
    if save_image:
        files.write_bytes(save_image, use.figure_png(items))
        log.info("Picture saved to %s", save_image)
    if show and not use.show(items):
        log.warning("no display to show the digits on: use --save-image PATH instead")


@cli.command()
@click.option("-m", "--model", "model_path", default=DEFAULT_MODEL, show_default=True,
              type=click.Path(), help="A model saved by `cnn train`.")
@click.option("--data", "data_path", metavar="PATH",
              help="MNIST folder or .npz [default: $CNN_MNIST_DATA, else download].")
@click.option("--out", "out_dir", type=click.Path(file_okay=False), metavar="DIR",
              help="Where to write the plots and JSON [default: logs/evaluate/<time>].")
@output_options
@user_errors
def evaluate(model_path, data_path, out_dir, verbose, quiet):
    """Test loss and accuracy, confusion matrix, per-class metrics, and the worst mistakes."""
    _setup_logging(verbose, quiet)
    from pathlib import Path

    from cnn_mnist import files
    from cnn_mnist.data import load_mnist, prepare_images
    from cnn_mnist.save import check_model_path

    check_model_path(model_path)
    mnist = load_mnist(data_path, test_only=True)
    if out_dir is None:
        from cnn_mnist.pipeline import new_run_id

        out_dir = Path("logs") / "evaluate" / new_run_id()
    out_dir = files.ensure_writable_dir(out_dir, "evaluation results")

    from cnn_mnist.runtime import import_tensorflow

    import_tensorflow(verbose)
    from cnn_mnist import evaluate as stage
    from cnn_mnist.predict import mistakes_png
    from cnn_mnist.save import load_model

    model = load_model(model_path)
    x = prepare_images(mnist.x_test, normalize=_model_normalize(model_path))
    labels = mnist.y_test.astype("int64")
    ev = stage.evaluate(model, x, labels)
    paths = stage.save_results(ev, out_dir)
    mistakes = files.write_bytes(out_dir / "mistakes.png",
                                 mistakes_png(mnist.x_test / 255.0, labels, ev.probabilities))
    if not quiet:
        click.echo(f"Model {model_path} on {len(labels):,} test images from {mnist.source}\n\n"
                   f"Confusion matrix (rows: true digit, columns: predicted)\n"
                   f"{stage.format_confusion(ev.confusion)}\n\n{stage.format_per_class(ev)}\n")
    click.echo(f"Test loss {ev.loss:.4f}, test accuracy {ev.accuracy:.4f} "
               f"({int(ev.confusion.trace()):,} of {int(ev.confusion.sum()):,})")
    if not quiet:
        click.echo(f"Confusion matrix  {paths['confusion_matrix_png']}, "
                   f"{paths['confusion_matrix_json']}\nWorst mistakes    {mistakes}")


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


@cli.command()
@click.option("-m", "--model", "model_path", default=DEFAULT_MODEL, show_default=True,
              type=click.Path(), help="A model saved by `cnn train`.")
@click.option("-i", "--index", type=int, metavar="N", help="A test image, with its true label.")
@click.option("--image", type=click.Path(), metavar="PATH", help="Your own picture of a digit.")
@click.option("--data", "data_path", metavar="PATH",
              help="MNIST folder or .npz [default: $CNN_MNIST_DATA, else download].")
@click.option("--out", "out_dir", type=click.Path(file_okay=False), metavar="DIR",
              help="Where to write the pictures [default: logs/inspect/<time>].")
@click.option("--json", "as_json", is_flag=True, help="Print the results as JSON.")
@click.option("--at", metavar="LAYER:ROW,COL,CHANNEL",
              help="Also compute one feature-map value by hand, e.g. --at 0:13,13,5.")
@output_options
@user_errors
def inspect(model_path, index, image, data_path, out_dir, as_json, at, verbose, quiet):
    """Look inside the network for one digit: kernels, feature maps, saliency.

    \b
    cnn inspect --index 10
    cnn inspect --image my-seven.png --at 0:13,13,5
    """
    _setup_logging(verbose, quiet)
    if (index is None) == (image is None):
        raise click.UsageError("give one digit: --index N (a test image) or --image PATH")
    import json

    from cnn_mnist import inspect as look

    result = look.inspect_model(model_path, index=index, image=image, out_dir=out_dir,
                                data_path=data_path, at=at, verbose=verbose)
    click.echo(json.dumps(result.to_dict(), indent=2) if as_json
               else look.format_inspection(result))
