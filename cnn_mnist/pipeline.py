"""`cnn train`: the lecture's procedure as one call, stage by stage, with a run record.

load and prepare data -> build -> compile -> fit (TensorBoard) -> evaluate -> save -> run.json
"""

from __future__ import annotations

import datetime
import logging
import platform
import secrets
import shutil
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from cnn_mnist import files
from cnn_mnist.config import Config

log = logging.getLogger(__name__)


@dataclass
class RunResult:
    """What a training run produced, for the CLI to report."""

    run_id: str
    run_dir: Path
    model_path: Path
    record_path: Path
    evaluation: object  # cnn_mnist.evaluate.Evaluation
    seed: int
    timings: dict[str, float] = field(default_factory=dict)
    paths: dict[str, str] = field(default_factory=dict)


def new_run_id() -> str:
    """Sortable by time; the random suffix keeps two runs started together apart."""
    return datetime.datetime.now().strftime("%Y%m%d-%H%M%S") + "-" + secrets.token_hex(2)


class _Stopwatch:
    def __init__(self) -> None:
        self.timings: dict[str, float] = {}

    def __call__(self, name: str):
        watch = self

        class _Stage:
            def __enter__(self):
                self.start = time.perf_counter()

            def __exit__(self, *exc):
                watch.timings[name] = round(time.perf_counter() - self.start, 3)

        return _Stage()


def train(config: Config, *, config_source: str = "default", progress: int = 1,
          verbose: bool = False) -> RunResult:
    """Run the whole pipeline; `progress` is Keras's verbose (0 silent, 1 bar, 2 a line/epoch)."""
    started = time.perf_counter()
    watch = _Stopwatch()
    run_id = new_run_id()
    run_dir = Path(config.tensorboard.log_dir) / run_id
    model_path = Path(config.output.model_path)
    # Unwritable outputs are found now, not after the training they would throw away.
    files.ensure_writable_dir(model_path.parent, "model")
    files.ensure_writable_dir(run_dir, "logs and run record")
    try:
        return _run(config, run_id, run_dir, model_path, watch, started, config_source, progress,
                    verbose)
    except BaseException:
        if not (run_dir / "train").exists():  # failed before training: leave no empty run behind
            shutil.rmtree(run_dir, ignore_errors=True)
        raise


def _run(config, run_id, run_dir, model_path, watch, started, config_source, progress, verbose):
    from cnn_mnist.runtime import import_tensorflow, seed_everything

    with watch("import"):
        tf = import_tensorflow(verbose)
        import keras

        from cnn_mnist import data as data_stage
        from cnn_mnist import evaluate as evaluate_stage
        from cnn_mnist.model import build_model, compile_model
        from cnn_mnist.save import save_model
        from cnn_mnist.train import fit

    seed = config.training.seed if config.training.seed is not None else secrets.randbelow(2**31)
    seed_everything(seed)

    with watch("load_data"):
        mnist = data_stage.load_mnist(config.data.path)
    log.info("Data: %s training and %s test images from %s", f"{len(mnist.x_train):,}",
             f"{len(mnist.x_test):,}", mnist.source)
    with watch("prepare_data"):
        data = data_stage.prepare(mnist, config.data.normalize, config.data.limit_train,
                                  config.data.limit_test)
    with watch("build"):
        model = build_model(config.model)
    with watch("compile"):
        compile_model(model, config.compile)
    log.info("Model: %d layers, %s parameters; training %d epoch(s) on %s images, batch size %d, "
             "seed %d", len(config.model.layers), f"{model.count_params():,}",
             config.training.epochs, f"{len(data.x_train):,}", config.training.batch_size, seed)

    files.write_text(run_dir / "config.yaml", yaml.safe_dump(config.to_dict(), sort_keys=False))
    log_dir = run_dir if config.tensorboard.enabled else None
    with watch("fit"):
        history = fit(model, data, config.training, config.tensorboard, log_dir, progress)
    with watch("evaluate"):
        evaluation = evaluate_stage.evaluate(model, data.x_test, data.labels_test)
        plots = evaluate_stage.save_results(evaluation, run_dir)
        if log_dir is not None:
            evaluate_stage.log_to_tensorboard(evaluation, plots["confusion_matrix_png"], log_dir,
                                              step=config.training.epochs)
    with watch("save"):
        save_model(model, model_path, {"run_id": run_id, "config": config.to_dict()})
    watch.timings["total"] = round(time.perf_counter() - started, 3)

    paths = {"model": str(model_path), "logs": str(run_dir), "config": str(run_dir / "config.yaml"),
             **{name: str(path) for name, path in plots.items()}}
    record = {
        "run_id": run_id,
        "status": "completed",
        "finished_at": datetime.datetime.now().astimezone().isoformat(timespec="seconds"),
        "config_source": config_source,
        "config": config.to_dict(),
        "seed": seed,
        "data": {
            "source": mnist.source, "sha256": mnist.sha256,
            "num_train": int(len(data.x_train)), "num_test": int(len(data.x_test)),
            "normalize": config.data.normalize,
        },
        "versions": {
            "python": platform.python_version(), "tensorflow": tf.__version__,
            "keras": keras.__version__, "numpy": __import__("numpy").__version__,
            "platform": platform.platform(), "argv": sys.argv,
        },
        "metrics": {
            "test_loss": evaluation.loss,
            "test_accuracy": evaluation.accuracy,
            "params": int(model.count_params()),
            "history": history,
        },
        "timings_s": watch.timings,
        "paths": paths,
    }
    record_path = files.write_json(run_dir / "run.json", record)
    return RunResult(run_id=run_id, run_dir=run_dir, model_path=model_path,
                     record_path=record_path, evaluation=evaluation, seed=seed,
                     timings=watch.timings, paths=paths)
