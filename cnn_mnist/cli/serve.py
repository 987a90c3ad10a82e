"""`cnn serve`: a local web page and JSON API where the model reads the digits you draw."""

from __future__ import annotations

import os

import click

from cnn_mnist.cli.options import data_option, model_option
from cnn_mnist.cli.shell import command, log
from cnn_mnist.core import paths


@command()
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
    server = serve.make_server(app, host=host, port=port)
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
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        click.echo("Stopped.")
    finally:
        server.server_close()
