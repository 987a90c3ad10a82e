"""`cnn train`: the lecture's procedure as one call, stage by stage, with a run record.

load and prepare data -> build -> compile -> fit (TensorBoard, backups) -> evaluate -> save

Each run has a folder `logs/fit/<run-id>/` holding its TensorBoard logs, the resolved config,
`run.json` (status: running, interrupted, failed or completed), the epoch history, a backup of
the last finished epoch while it runs, and its model. The stable model path
(`models/digits_recognition_cnn.h5`) is then pointed at the newest finished run's model, so an
earlier run's model is never lost: it stays in that run's folder.
"""

from __future__ import annotations

import contextlib
import datetime
import logging
import math
import os
import platform
import secrets
import shutil
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from cnn_mnist import files
from cnn_mnist.config import Config, chief_task, load_config, read_tf_config
from cnn_mnist.errors import ClusterError, CnnError, ConfigError, OutputError

log = logging.getLogger(__name__)

RUN_MODEL = "model"  # the run's own copy: <run folder>/model.h5 (or .keras)


class TrainingInterrupted(CnnError):
    """Ctrl-C or SIGTERM during training: the last finished epoch is kept for --resume."""

    exit_code = 130


@dataclass
class RunResult:
    """What a training run produced, for the CLI to report."""

    run_id: str
    run_dir: Path
    model_path: Path
    record_path: Path
    evaluation: object  # cnn_mnist.evaluate.Evaluation
    seed: int
    epochs_run: int
    replaced_run: str | None = None  # the run whose model was at model_path before
    resumed_from_epoch: int = 0
    timings: dict[str, float] = field(default_factory=dict)
    paths: dict[str, str] = field(default_factory=dict)
    chief: bool = True  # False: a multi-worker run's other worker, which saved nothing
    worker: str = ""  # "worker 1" in a multi-worker run
    distribution: dict = field(default_factory=dict)  # run.json's: replicas, batch sizes, ...


def new_run_id() -> str:
    """Sortable by time; the random suffix keeps two runs started together apart."""
    return datetime.datetime.now().strftime("%Y%m%d-%H%M%S") + "-" + secrets.token_hex(2)


def _now() -> str:
    return datetime.datetime.now().astimezone().isoformat(timespec="seconds")


def find_run_to_resume(log_dir: str | Path, run_id: str | None = None) -> Path:
    """The run folder to resume: `run_id`, or the most recent run that did not complete."""
    import json

    log_dir = Path(log_dir)
    if run_id:
        run_dir = log_dir / run_id
        if not (run_dir / "config.yaml").is_file():
            raise ConfigError(f"--resume {run_id}: no such run in {log_dir}/ "
                              "(run ids are the folder names there)")
        candidates = [run_dir]
    else:
        candidates = sorted((p.parent for p in log_dir.glob("*/config.yaml")), reverse=True)
    for run_dir in candidates:
        try:
            status = json.loads((run_dir / "run.json").read_text()).get("status")
        except (OSError, ValueError):
            status = "running"  # killed before its first record: resumable
        if status != "completed":
            return run_dir
        if run_id:
            raise ConfigError(f"--resume {run_id}: that run completed; nothing to resume")
    raise ConfigError(f"--resume: no unfinished run in {log_dir}/ to resume; "
                      "start one with `cnn train`")


def load_run_config(run_dir: Path, data_path: str | None = None) -> Config:
    """The resolved config a run was started with (`data_path` may point elsewhere now)."""
    overrides = {"data.path": data_path} if data_path else None
    return load_config(run_dir / "config.yaml", overrides=overrides)


def _peak_rss_mb() -> float:
    import resource

    return round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)  # KB on Linux


class _Stopwatch:
    """Seconds per stage, and the process's peak memory at the end of each (where it grew)."""

    def __init__(self) -> None:
        self.timings: dict[str, float] = {}
        self.peak_mb: dict[str, float] = {}

    def __call__(self, name: str):
        watch = self

        class _Stage:
            def __enter__(self):
                self.start = time.perf_counter()

            def __exit__(self, *exc):
                watch.timings[name] = round(time.perf_counter() - self.start, 3)
                watch.peak_mb[name] = _peak_rss_mb()

        return _Stage()


def _check_model_path(model_path: Path, overwrite: bool) -> str | None:
    """The run id of the model at `model_path`, if any; refuse to replace a model we did not save."""
    from cnn_mnist.save import read_metadata

    files.ensure_writable_dir(model_path.parent, "model")
    if not model_path.exists():
        return None
    if model_path.is_dir():
        raise OutputError(f"{model_path} is a folder; output.model_path must be a file path")
    previous = read_metadata(model_path).get("run_id")
    if previous is None and not overwrite:
        raise OutputError(f"{model_path} exists and was not saved by `cnn train`; pass "
                          "--overwrite to replace it, or choose another --model-path")
    return previous


def _publish(run_model: Path, model_path: Path) -> None:
    """Point the stable model path at the run's model: a hard link renamed into place."""
    with files.atomic_path(model_path) as tmp:
        tmp.unlink()
        try:
            os.link(run_model, tmp)
        except OSError:  # another file system, or no hard links: copy instead
            shutil.copyfile(run_model, tmp)


def train(config: Config, *, config_source: str = "default", progress: int = 1,
          verbose: bool = False, resume: Path | None = None, overwrite: bool = False,
          own_config: bool = True) -> RunResult:
    """Run the whole pipeline; `progress` is Keras's verbose (0 silent, 1 bar, 2 a line/epoch).

    `resume` is a run folder to continue from its last finished epoch (see find_run_to_resume).
    With `training.distribution: multi_worker`, every worker calls this; the chief's run id,
    config and backups rule, and the other workers write only to temporary folders (one with
    `own_config=False` does not warn that its config differs from the chief's).
    """
    started = time.perf_counter()
    if config.training.distribution == "multi_worker" and not chief_task(read_tf_config()):
        with tempfile.TemporaryDirectory(prefix="cnn-mnist-worker-") as scratch:
            (Path(scratch) / "run").mkdir()
            return _run(config, new_run_id(), Path(scratch) / "run",
                        Path(scratch) / f"model{Path(config.output.model_path).suffix}", None,
                        started, config_source, progress, verbose, resumed=False, chief=False,
                        warn_differs=own_config)
    run_id = resume.name if resume else new_run_id()
    run_dir = resume or Path(config.tensorboard.log_dir) / run_id
    model_path = Path(config.output.model_path)
    # Unwritable outputs are found now, not after the training they would throw away.
    previous_run = _check_model_path(model_path, overwrite)
    files.ensure_writable_dir(run_dir, "logs and run record")
    try:
        return _run(config, run_id, run_dir, model_path, previous_run, started, config_source,
                    progress, verbose, resumed=resume is not None)
    except BaseException:
        if resume is None and not (run_dir / "epochs.jsonl").exists() \
                and not (run_dir / "train").exists():
            shutil.rmtree(run_dir, ignore_errors=True)  # failed before training: no empty run
        raise


def _run(config, run_id, run_dir, model_path, previous_run, started, config_source, progress,
         verbose, resumed, chief=True, warn_differs=True):
    watch = _Stopwatch()
    with watch("import"):
        from cnn_mnist.runtime import import_tensorflow, seed_everything

        tf = import_tensorflow(verbose)
        import keras

        from cnn_mnist import data as data_stage
        from cnn_mnist import evaluate as evaluate_stage
        from cnn_mnist.model import accelerator_plan, build_model, compile_model, cpu_flags
        from cnn_mnist.save import export_litert, float32_copy, save_model
        from cnn_mnist.train import FitTimer, TestValidation, fit, read_epochs

    cluster = None
    if config.training.distribution != "none":
        from cnn_mnist import distribute

        with watch("connect"):  # multi_worker: waits for every worker to join
            cluster = distribute.make_cluster(config.training)
    seed = config.training.seed if config.training.seed is not None else secrets.randbelow(2**31)
    # The resolved config carries the seed actually used: `--config <run>/config.yaml` repeats it.
    config = config.model_copy(update={"training": config.training.model_copy(update={"seed": seed})})
    if cluster is not None:
        run_id, config = _agree(cluster, run_id, config, run_dir, chief, warn_differs)
    seed_everything(config.training.seed)
    seed = config.training.seed
    epochs_file = run_dir / "epochs.jsonl"
    done_before = len(read_epochs(epochs_file))

    record = {
        "run_id": run_id,
        "status": "running",
        "started_at": _now(),
        "config_source": config_source,
        "config": config.to_dict(),
        "seed": seed,
        "versions": {
            "python": platform.python_version(), "tensorflow": tf.__version__,
            "keras": keras.__version__, "numpy": __import__("numpy").__version__,
            "platform": platform.platform(),
        },
        "argv": sys.argv,
    }
    if resumed:
        record["resumed_from_epoch"] = done_before
    if cluster is not None:
        # The batch is global (shared among the replicas) and the learning rate is as configured.
        record["distribution"] = {
            "strategy": cluster.kind, "replicas": cluster.replicas, "workers": cluster.workers,
            "global_batch_size": config.training.batch_size,
            "per_replica_batch_size": config.training.batch_size / cluster.replicas,
            "learning_rate": config.compile.learning_rate,
            "local_devices": list(cluster.strategy.extended.worker_devices),
        }
    files.write_text(run_dir / "config.yaml", yaml.safe_dump(config.to_dict(), sort_keys=False))
    files.write_json(run_dir / "run.json", record)

    with watch("load_data"):
        mnist = data_stage.load_mnist(config.data.path)
    log.info("Data: %s training and %s test images from %s", f"{len(mnist.x_train):,}",
             f"{len(mnist.x_test):,}", mnist.source)
    with watch("prepare_data"):
        data = data_stage.prepare(mnist, config.data.normalize, config.data.limit_train,
                                  config.data.limit_test)
    record["data"] = {
        "source": mnist.source, "sha256": mnist.sha256,
        "num_train": int(len(data.labels_train)), "num_test": int(len(data.labels_test)),
        "normalize": config.data.normalize,
    }
    def scope():
        return cluster.strategy.scope() if cluster is not None else contextlib.nullcontext()

    accelerator = accelerator_plan(config.compile, _gpus(tf), cpu_flags(),
                                   distributed=cluster is not None)
    record["accelerator"] = accelerator.to_dict()
    with watch("build"), scope():  # under a strategy, variables are mirrored on every replica
        model = build_model(config.model, accelerator.dtype_policy)
    with watch("compile"), scope():
        steps = math.ceil(len(data.labels_train) / config.training.batch_size)
        compile_model(model, config.compile, total_steps=steps * config.training.epochs,
                      accelerator=accelerator)
    # Keras resolves jit_compile "auto" at compile; our distributed step is never XLA-compiled.
    xla = bool(model.jit_compile) and cluster is None
    record["accelerator"]["jit_compile"] = xla
    log.info("Runtime: %s, %s compute, XLA %s, %d step(s) per call", accelerator.device.upper(),
             accelerator.dtype_policy.replace("mixed_", "") + " (mixed)"
             if accelerator.mixed_precision else "float32", "on" if xla else "off",
             accelerator.steps_per_execution)
    if resumed:
        log.info("Resuming run %s after epoch %d of %d", run_id, done_before,
                 config.training.epochs)
    log.info("Model: %d layers, %s parameters; training %d epoch(s) on %s images, batch size %d, "
             "seed %d", len(config.model.layers), f"{model.count_params():,}",
             config.training.epochs, f"{len(data.labels_train):,}", config.training.batch_size,
             seed)
    if cluster is not None:
        log.info("Distributed (%s, this process: %s): %d replicas, global batch %d = %g per "
                 "replica, learning rate %g as configured", cluster.kind, cluster.task,
                 cluster.replicas, config.training.batch_size,
                 config.training.batch_size / cluster.replicas, config.compile.learning_rate)

    metadata = {"run_id": run_id, "config": config.to_dict()}
    timer = FitTimer()
    validation = (TestValidation(data.x_test, data.labels_test)
                  if config.training.validation == "test" else None)
    try:
        with watch("fit"):
            if cluster is None:
                fit(model, data, config.training, config.tensorboard, run_dir, progress,
                    metadata, timer, validation)
            else:
                training, tensorboard = config.training, config.tensorboard
                if not chief:  # the chief writes the logs and checkpoints
                    training = training.model_copy(update={"checkpoint": None})
                    tensorboard = tensorboard.model_copy(update={"enabled": False})
                distribute.fit(cluster, model, data, training, tensorboard, config.compile.loss,
                               run_dir, progress, metadata, timer, validation)
    except KeyboardInterrupt:
        finished = len(read_epochs(epochs_file))
        files.write_json(run_dir / "run.json", {**record, "status": "interrupted",
                                                "stopped_at": _now(), "epochs_completed": finished,
                                                "timings_s": watch.timings})
        raise TrainingInterrupted(
            f"interrupted: run {run_id} stopped after {finished} of {config.training.epochs} "
            f"epoch(s), which are kept.\nResume it with: cnn train --resume {run_id}") from None
    except ClusterError as exc:
        finished = len(read_epochs(epochs_file))
        files.write_json(run_dir / "run.json", {**record, "status": "failed", "error": str(exc),
                                                "stopped_at": _now(), "epochs_completed": finished})
        raise ClusterError(f"{exc}.\nRun {run_id} keeps its last finished epoch ({finished} of "
                           f"{config.training.epochs}): restart `cnn train --resume {run_id}` on "
                           "the chief and `cnn train --resume` on the other workers.") from None
    except Exception as exc:
        files.write_json(run_dir / "run.json", {**record, "status": "failed", "error": str(exc),
                                                "stopped_at": _now()})
        raise
    epochs = read_epochs(epochs_file)

    with watch("evaluate"):
        # What is evaluated, saved and exported: a float32 copy if training computed in 16 bits
        # (made once here), else the model itself.
        saved = float32_copy(model)
        # The last epoch's validation already made these predictions, unless early stopping
        # may have put back an earlier epoch's weights, or training computed in 16 bits: the
        # report is then the float32 model's, the one saved, so `cnn evaluate` repeats it.
        stop = config.training.early_stopping
        restored = stop is not None and stop.restore_best_weights
        if validation is not None and validation.last is not None and not restored \
                and not accelerator.mixed_precision:
            evaluation = validation.last[1]
        else:
            evaluation = evaluate_stage.evaluate(saved, data.x_test, data.labels_test)
        if cluster is not None:
            record["distribution"]["weights_sha256"] = distribute.weights_sha256(model)
        if not chief:  # the chief saves the results and the model
            return RunResult(run_id=run_id, run_dir=run_dir, model_path=model_path,
                             record_path=run_dir / "run.json", evaluation=evaluation, seed=seed,
                             epochs_run=len(epochs), timings=watch.timings, chief=False,
                             worker=cluster.task, distribution=record["distribution"])
        plots = evaluate_stage.save_results(evaluation, run_dir)
        if config.tensorboard.enabled:
            evaluate_stage.log_to_tensorboard(evaluation, plots["confusion_matrix_png"], run_dir,
                                              step=len(epochs))
    with watch("save"):
        try:  # for `cnn predict` without TensorFlow; its checksum goes into the model file
            run_lite = export_litert(saved, run_dir / f"{RUN_MODEL}.tflite")
            metadata["litert_sha256"] = files.sha256(run_lite)
        except Exception as exc:  # noqa: BLE001 - predict falls back to Keras
            log.warning("could not export the model for LiteRT (%s); cnn predict will use Keras",
                        str(exc).splitlines()[0] if str(exc) else type(exc).__name__)
            run_lite = None
        run_model = save_model(saved, run_dir / f"{RUN_MODEL}{model_path.suffix}", metadata)
        _publish(run_model, model_path)
        stable_lite = model_path.with_suffix(".tflite")
        if run_lite is not None:
            _publish(run_lite, stable_lite)
        else:
            stable_lite.unlink(missing_ok=True)  # an older run's export must not stand in
    watch.timings["total"] = round(time.perf_counter() - started, 3)
    if validation is not None:
        timer.timings["validation"] = validation.seconds
    watch.timings["fit_breakdown"] = {k: round(v, 3) for k, v in timer.timings.items()}

    paths = {"model": str(model_path), "run_model": str(run_model), "logs": str(run_dir),
             "config": str(run_dir / "config.yaml"),
             **{name: str(path) for name, path in plots.items()}}
    if (run_dir / "best.h5").exists():
        paths["best_model"] = str(run_dir / "best.h5")
    history = {key: [e[key] for e in epochs if key in e]
               for key in dict.fromkeys(k for e in epochs for k in e if k != "epoch")}
    record.update({
        "status": "completed",
        "finished_at": _now(),
        "metrics": {
            "test_loss": evaluation.loss,
            "test_accuracy": evaluation.accuracy,
            "params": int(model.count_params()),
            "epochs_completed": len(epochs),
            "history": history,
        },
        "timings_s": watch.timings,
        "peak_memory_mb_after": watch.peak_mb,
        "paths": paths,
    })
    record_path = files.write_json(run_dir / "run.json", record)
    shutil.rmtree(run_dir / "backup", ignore_errors=True)  # completed: nothing left to resume
    return RunResult(run_id=run_id, run_dir=run_dir, model_path=model_path,
                     record_path=record_path, evaluation=evaluation, seed=seed,
                     epochs_run=len(epochs), replaced_run=previous_run,
                     resumed_from_epoch=done_before, timings=watch.timings, paths=paths,
                     worker=cluster.task if cluster is not None else "",
                     distribution=record.get("distribution", {}))


def _gpus(tf) -> list[tuple[str, tuple[int, int] | None]]:
    """The visible GPUs: (name, compute capability)."""
    found = []
    for gpu in tf.config.list_physical_devices("GPU"):
        details = tf.config.experimental.get_device_details(gpu)
        found.append((details.get("device_name", gpu.name), details.get("compute_capability")))
    return found


def _agree(cluster, run_id: str, config: Config, run_dir: Path, chief: bool, warn: bool):
    """One run across the workers: the chief's run id and config (its seed included). Each
    worker keeps its own data path: the files may live in different places on each machine."""
    from cnn_mnist import distribute

    mine = yaml.safe_dump(config.to_dict(), sort_keys=False)
    run_id, chiefs = distribute.agree(cluster, run_id, mine)
    if chief:
        return run_id, config
    path = run_dir / "chief-config.yaml"
    files.write_text(path, chiefs)
    theirs = load_config(path, overrides={"data.path": config.data.path})
    differs = _differences(config.to_dict(), theirs.to_dict())
    if differs and warn:
        log.warning("this worker was started with a config that differs from the chief's at %s; "
                    "training with the chief's", ", ".join(differs[:5]))
    return run_id, theirs


def _differences(a, b, path: str = "") -> list[str]:
    """Key paths where two config dicts differ (the seed aside: the chief may have drawn it)."""
    if isinstance(a, dict) and isinstance(b, dict):
        return [d for key in dict.fromkeys([*a, *b])
                for d in _differences(a.get(key), b.get(key), f"{path}.{key}".lstrip("."))]
    return [] if a == b or path == "training.seed" else [path]
