"""`cnn train`: the lecture's procedure as one call, stage by stage, with a run record.

prepare the data -> build and compile -> fit (TensorBoard, backups) -> evaluate -> save

Each run has a folder `logs/fit/<run-id>/` holding its TensorBoard logs, the resolved config,
`run.json` (status: running, interrupted, failed or completed), the epoch history, a backup of
the last finished epoch while it runs, and its model. The stable model path
(`models/digits_recognition_cnn.h5`) is then pointed at the newest finished run's model, so an
earlier run's model is never lost: it stays in that run's folder.

The stage modules import TensorFlow, so they are imported inside the functions here: the CLI
checks the options and the config first, and answers at once when they are wrong.
"""

from __future__ import annotations

import contextlib
import dataclasses
import errno
import logging
import math
import os
import platform
import secrets
import shutil
import socket
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import yaml

from cnn_mnist.core import files
from cnn_mnist.training.cluster import chief_task, read_tf_config
from cnn_mnist.config.load import differences, load_config
from cnn_mnist.core.errors import ClusterError, CnnError, OutputError
from cnn_mnist.training.record import (
    RunRecord,
    describe_resumed,
    find_run_to_resume,
    load_run_config,
    recorded_source,
)
from cnn_mnist.config.schema import Config
from cnn_mnist.core.stamps import new_run_id

if TYPE_CHECKING:
    from cnn_mnist.stages.evaluate import Evaluation

log = logging.getLogger(__name__)

RUN_MODEL = "model"  # the run's own copy: <run folder>/model.h5 (or .keras)


class PathTaken(OutputError):
    """The model path holds, at the end of a run, a file the run may not replace."""


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
    evaluation: Evaluation
    seed: int
    epochs_run: int
    replaced_run: str | None = None  # the run whose model was at model_path before
    resumed_from_epoch: int = 0
    timings: dict[str, float] = field(default_factory=dict)
    paths: dict[str, str] = field(default_factory=dict)
    chief: bool = True  # False: a multi-worker run's other worker, which saved nothing
    worker: str = ""  # "worker 1" in a multi-worker run
    distribution: dict = field(default_factory=dict)  # run.json's: replicas, batch sizes, ...


@dataclass(frozen=True)
class RunInputs:
    """What a run starts from, fixed for its whole length."""

    config: Config
    run_id: str
    run_dir: Path
    model_path: Path
    config_source: str = "default"
    progress: int = 1  # Keras's verbose: 0 silent, 1 a bar, 2 a line per epoch
    verbose: bool = False
    resumed: bool = False
    previous_run: str | None = None  # the run whose model is at model_path now
    overwrite: bool = False  # replace a model (and .tflite) at model_path we did not write
    chief: bool = True  # the process that writes the model, the record and the logs
    warn_differs: bool = True  # a worker warns if its config differs from the chief's
    callbacks: tuple = ()  # more Keras callbacks for fit, after the run's own (a sweep's)
    tags: dict = field(default_factory=dict)  # more run.json fields, e.g. {"sweep": {...}}
    started: float = field(default_factory=time.perf_counter)

    @property
    def epochs_file(self) -> Path:
        return self.run_dir / "epochs.jsonl"


@dataclass(frozen=True)
class TrainRequest:
    """`cnn train`'s options resolved: the config to train with, and the run to resume."""

    config: Config
    resume: Path | None = None
    own_config: bool = True  # False: another worker, which trains with the chief's config


def request(
    config_path: str | None = None,
    sets: tuple[str, ...] = (),
    overrides: dict | None = None,
    *,
    resume: str | None = None,
) -> TrainRequest:
    """The config and run for `cnn train`'s options. `resume` is "" for the most recent
    unfinished run, or a run id; `overrides` are key paths from the options (None: not given).
    A run resumes with the config it started with (its data path and distribution may change:
    the files may have moved, and the batch is global on any hardware)."""
    overrides = {k: v for k, v in (overrides or {}).items() if v is not None}
    config = load_config(config_path, sets=sets, overrides=overrides)
    if config.sweep is not None:
        log.info(
            "note: this config has a sweep: section; cnn train trains it as it is, and "
            "`cnn sweep` runs the search"
        )
        config = config.model_copy(update={"sweep": None})
    if resume is None:
        return TrainRequest(config)
    if config.training.distribution == "multi_worker" and not chief_task(read_tf_config()):
        return TrainRequest(config, own_config=False)  # the chief finds the run and sends it
    run_dir = find_run_to_resume(config.tensorboard.log_dir, resume or None)
    log.info("Resuming %s", describe_resumed(run_dir))
    resumed = load_run_config(run_dir, overrides.get("data.path"))
    if "training.distribution" in overrides:
        resumed = resumed.with_values({"training.distribution": overrides["training.distribution"]})
    return TrainRequest(resumed, run_dir)


def train(
    config: Config,
    *,
    config_source: str = "default",
    progress: int = 1,
    verbose: bool = False,
    resume: Path | None = None,
    overwrite: bool = False,
    own_config: bool = True,
    callbacks: tuple = (),
    tags: dict | None = None,
    run_id: str | None = None,
) -> RunResult:
    """Run the whole pipeline; `progress` is Keras's verbose (0 silent, 1 bar, 2 a line/epoch).

    `resume` is a run folder to continue from its last finished epoch (see
    runs.find_run_to_resume). With `training.distribution: multi_worker`, every worker calls
    this; the chief's run id, config and backups rule, and the other workers write only to
    temporary folders (one with `own_config=False` does not warn that its config differs).
    `callbacks` are more Keras callbacks for fit, `tags` more run.json fields, and `run_id`
    the new run's id (default: a fresh one).
    """
    common: dict[str, Any] = dict(
        config=config,
        config_source=config_source,
        progress=progress,
        verbose=verbose,
        callbacks=tuple(callbacks),
        tags=dict(tags or {}),
    )
    if config.training.distribution == "multi_worker" and not chief_task(read_tf_config()):
        return _train_as_worker(common, own_config)
    run_id = resume.name if resume else (run_id or new_run_id())
    run = RunInputs(
        run_id=run_id,
        run_dir=resume or Path(config.tensorboard.log_dir) / run_id,
        model_path=Path(config.output.model_path),
        resumed=resume is not None,
        **common,
    )
    # Unwritable outputs are found now, not after the training they would throw away.
    run = dataclasses.replace(
        run, previous_run=_check_model_path(run.model_path, overwrite), overwrite=overwrite
    )
    files.ensure_writable_dir(run.run_dir, "logs and run record")
    try:
        return _run(run)
    except BaseException as exc:
        from cnn_mnist.stages.guards import TrainingFailed

        started = run.epochs_file.exists() or (run.run_dir / "train").exists()
        if not run.resumed and not isinstance(exc, TrainingFailed) and not started:
            shutil.rmtree(run.run_dir, ignore_errors=True)  # failed before training: no empty run
        raise


def _train_as_worker(common: dict, own_config: bool) -> RunResult:
    """A multi-worker run's other worker: it writes only to a temporary folder."""
    with tempfile.TemporaryDirectory(prefix="cnn-mnist-worker-") as scratch:
        (Path(scratch) / "run").mkdir()
        suffix = Path(common["config"].output.model_path).suffix
        return _run(
            RunInputs(
                run_id=new_run_id(),
                run_dir=Path(scratch) / "run",
                model_path=Path(scratch) / f"model{suffix}",
                chief=False,
                warn_differs=own_config,
                **common,
            )
        )


def _run(run: RunInputs) -> RunResult:
    """The lecture's procedure, stage by stage; run.json says how far it got."""
    from cnn_mnist.stages import guards

    guards.check_model_fits(run.config)  # before TensorFlow: a refusal costs nothing
    watch = _Stopwatch()
    with watch("import"):
        tf = _import_stages(run.verbose)
    cluster = _connect(run.config, watch)
    run = _settle(run, cluster)
    try:
        record = _start_record(run, cluster, tf)
    except OSError as exc:  # before training: nothing to resume
        where = getattr(exc, "filename", None) or run.run_dir
        raise files.write_error(exc, where, "the run's record", advise=True) from None
    finished = lambda: len(_read_epochs(run.epochs_file))  # noqa: E731
    epochs = run.config.training.epochs
    try:
        with record.recording_failures(finished, watch.timings):
            try:
                return _stages(run, cluster, watch, record, tf)
            except (MemoryError, tf.errors.ResourceExhaustedError) as exc:
                if files.no_space(exc):  # TensorFlow's file writers say a full disk so
                    raise OSError(errno.ENOSPC, "No space left on device") from None
                raise guards.out_of_memory(run.config) from None
    except KeyboardInterrupt:
        raise TrainingInterrupted(
            f"interrupted: run {run.run_id} stopped after {finished()} of {epochs} epoch(s), "
            f"which are kept.\nResume it with: cnn train --resume {run.run_id}"
        ) from None
    except ClusterError as exc:
        raise ClusterError(
            f"{exc}.\nRun {run.run_id} keeps its last finished epoch ({finished()} of {epochs}): "
            f"restart `cnn train --resume {run.run_id}` on the chief and `cnn train --resume` "
            "on the other workers."
        ) from None
    except PathTaken:
        raise
    except (OSError, OutputError) as exc:
        if not run.run_dir.is_dir():
            raise OutputError(
                f"run {run.run_id}'s folder {run.run_dir} was removed while it trained, with "
                "its epochs; nothing is left to resume: start again with `cnn train`"
            ) from None
        error = (
            exc
            if isinstance(exc, OutputError)
            else files.write_error(exc, getattr(exc, "filename", None), "the run's files")
        )
        marked = "is marked failed and keeps" if record.on_disk == "failed" else "keeps"
        raise OutputError(
            f"{error}.\nRun {run.run_id} {marked} its last finished epoch "
            f"({finished()} of {epochs}): make room, then `cnn train --resume {run.run_id}`"
        ) from None
    finally:
        record.release()


def _stages(run: RunInputs, cluster, watch, record: RunRecord, tf) -> RunResult:
    from cnn_mnist.stages.guards import TrainingFailed, at_chance, check_input_shape

    data = _prepare_data(run.config, watch, record)
    check_input_shape(run.config, data.x_test.shape[1:])
    model, accelerator = _build_and_compile(run, cluster, data, watch, record, tf)
    card = _card(run)  # what the run's models carry: best.h5, model.h5, the .tflite
    with watch("fit"):
        timer, validation = _fit(run, cluster, model, data, card)
    epochs = _read_epochs(run.epochs_file)
    with watch("evaluate"):
        # What is evaluated, saved and exported: a float32 copy if training computed in 16 bits
        # (made once here), else the model itself.
        saved, evaluation = _evaluate(run, model, data, validation, accelerator)
        if cluster is not None:
            from cnn_mnist.training.distribute import weights_sha256

            assert record.file.distribution is not None  # recorded with the cluster
            record.file.distribution.weights_sha256 = weights_sha256(model)
        if not run.chief:  # the chief saves the results and the model
            return _result(run, record, evaluation, epochs, watch, chief=False, worker=cluster.task)
        plots = _report(run, evaluation, len(epochs))
        _log_hparams(run, record, model, accelerator)
    chance = at_chance(evaluation.accuracy, data.labels_test)
    with watch("save"):
        paths = {**_save(run, saved, data, evaluation, record, card, not chance), **plots}
    if chance:  # kept in the run folder, but not published over a model that learnt
        record.add("metrics", {"test_loss": evaluation.loss, "test_accuracy": evaluation.accuracy})
        record.add("paths", paths)
        kept = (
            f"{run.model_path} still holds run {run.previous_run}'s model"
            if run.previous_run
            else f"{run.model_path} was not written"
        )
        raise TrainingFailed(
            f"the model did not learn: test accuracy {evaluation.accuracy:.4f} is no better "
            f"than always answering the commonest class; it stays in {paths['run_model']}, and "
            f"{kept}. Lower compile.learning_rate (--learning-rate) or train longer"
        )
    return _complete(
        run,
        record,
        model,
        evaluation,
        epochs,
        watch,
        timer,
        validation,
        paths,
        worker=cluster.task if cluster is not None else "",
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


def _import_stages(verbose: bool):
    """TensorFlow (quietly, unless `verbose`) and the stage modules; returns tf."""
    from cnn_mnist.core.runtime import import_tensorflow

    tf = import_tensorflow(verbose)
    from cnn_mnist.stages import data, evaluate, model, save, fit  # noqa: F401
    from cnn_mnist.training import distribute  # noqa: F401

    return tf


def _connect(config: Config, watch):
    """The tf.distribute cluster, or None; multi_worker waits for every worker to join."""
    if config.training.distribution == "none":
        return None
    from cnn_mnist.training import distribute

    with watch("connect"):
        return distribute.make_cluster(config.training)


def _settle(run: RunInputs, cluster) -> RunInputs:
    """The seed drawn if the config has none (the resolved config carries the seed used, so
    `--config <run>/config.yaml` repeats the run), the chief's run id and config on every
    worker, and every generator seeded."""
    from cnn_mnist.core.runtime import seed_everything

    seed = run.config.training.seed
    config = run.config.with_values(
        {"training.seed": secrets.randbelow(2**31) if seed is None else seed}
    )
    run = dataclasses.replace(run, config=config)
    if cluster is not None:
        run_id, config = _agree(cluster, run)
        run = dataclasses.replace(run, run_id=run_id, config=config)
    assert run.config.training.seed is not None  # drawn above
    seed_everything(run.config.training.seed)
    return run


def _start_record(run: RunInputs, cluster, tf) -> RunRecord:
    """The resolved config and run.json (`running`), before anything slow happens."""
    import keras
    import numpy

    config = run.config
    # A resumed run keeps the config name it started with (`--resume` takes no --config).
    source = recorded_source(run.run_dir) if run.resumed else None
    record = RunRecord(
        run.run_dir,
        run.run_id,
        config_source=source or run.config_source,
        config=config.to_dict(),
        dataset=config.data.dataset,
        seed=config.training.seed,
        versions={
            "python": platform.python_version(),
            "tensorflow": tf.__version__,
            "keras": keras.__version__,
            "numpy": numpy.__version__,
            "platform": platform.platform(),
        },
        argv=sys.argv,
        host=socket.gethostname(),
        pid=os.getpid(),
        **run.tags,
    )
    if run.resumed:
        record.add("resumed_from_epoch", len(_read_epochs(run.epochs_file)))
    if cluster is not None:
        # The batch is global (shared among the replicas) and the learning rate is as configured.
        record.add(
            "distribution",
            {
                "strategy": cluster.kind,
                "replicas": cluster.replicas,
                "workers": cluster.workers,
                "global_batch_size": config.training.batch_size,
                "per_replica_batch_size": config.training.batch_size / cluster.replicas,
                "learning_rate": config.compile.learning_rate,
                "local_devices": list(cluster.strategy.extended.worker_devices),
            },
        )
    files.write_text(run.run_dir / "config.yaml", yaml.safe_dump(config.to_dict(), sort_keys=False))
    record.write()
    return record


def _prepare_data(config: Config, watch, record: RunRecord):
    """Steps 1-2: load the dataset, then scale and shape it as the config says."""
    from cnn_mnist.stages import data as stage

    with watch("load_data"):
        mnist = stage.check_trainable(
            stage.load_mnist(config.data.path, dataset=config.data.dataset)
        )
    with watch("prepare_data"):
        data = stage.prepare(
            mnist,
            config.data.normalize,
            config.data.limit_train,
            config.data.limit_test,
            config.data.augment,
        )
    log.info(
        "Data: %s training and %s test images from %s",
        _of(len(data.labels_train), len(mnist.x_train)),
        _of(len(data.labels_test), len(mnist.x_test)),
        mnist.source,
    )
    record.add(
        "data",
        {
            "dataset": config.data.dataset,
            "class_names": config.data.names,
            "source": mnist.source,
            "sha256": mnist.sha256,
            "num_train": int(len(data.labels_train)),
            "num_test": int(len(data.labels_test)),
            "normalize": config.data.normalize,
        },
    )
    return data


def _of(used: int, there: int) -> str:
    """'60,000', or '2,000 of 60,000' where data.limit_* takes a slice."""
    return f"{used:,}" if used == there else f"{used:,} of {there:,}"


def _build_and_compile(run: RunInputs, cluster, data, watch, record: RunRecord, tf):
    """Steps 3-4: the layers from the config, then the optimizer, loss and metrics, for the
    hardware found; returns (model, accelerator plan)."""
    from cnn_mnist.stages.model import accelerator_plan, build_model, compile_model, cpu_flags

    config = run.config
    accelerator = accelerator_plan(
        config.compile, _gpus(tf), cpu_flags(), distributed=cluster is not None
    )
    record.add("accelerator", accelerator.to_dict())
    # Under a strategy, variables are made mirrored on every replica.
    scope = cluster.strategy.scope if cluster is not None else contextlib.nullcontext
    with watch("build"), scope():
        model = build_model(config.model, accelerator.dtype_policy)
    with watch("compile"), scope():
        steps = math.ceil(len(data.labels_train) / config.training.batch_size)
        compile_model(
            model,
            config.compile,
            total_steps=steps * config.training.epochs,
            accelerator=accelerator,
        )
    # Keras resolves jit_compile "auto" at compile; our distributed step is never XLA-compiled.
    assert record.file.accelerator is not None  # recorded above
    xla = record.file.accelerator.jit_compile = bool(model.jit_compile) and cluster is None
    _log_plan(run, cluster, model, len(data.labels_train), accelerator, xla)
    return model, accelerator


def _log_plan(run: RunInputs, cluster, model, images: int, accelerator, xla: bool) -> None:
    config = run.config
    log.info(
        "Runtime: %s, %s compute (%s), XLA %s, %d step(s) per call",
        accelerator.device.upper(),
        accelerator.dtype_policy.replace("mixed_", "") + " (mixed)"
        if accelerator.mixed_precision
        else "float32",
        accelerator.reason,
        "on" if xla else "off",
        accelerator.steps_per_execution,
    )
    log.info(
        "Model: %d layers, %s parameters; training %d epoch(s) on %s images, batch size %d, "
        "seed %d",
        len(config.model.layers),
        f"{model.count_params():,}",
        config.training.epochs,
        f"{images:,}",
        config.training.batch_size,
        config.training.seed,
    )
    if cluster is not None:
        log.info(
            "Distributed (%s, this process: %s): %d replicas, global batch %d = %g per "
            "replica, learning rate %g as configured",
            cluster.kind,
            cluster.task,
            cluster.replicas,
            config.training.batch_size,
            config.training.batch_size / cluster.replicas,
            config.compile.learning_rate,
        )


def _card(run: RunInputs):
    """The model card (stages/card.py) of the run's models: the run, its config, its dataset
    and class names."""
    from cnn_mnist.stages.card import ModelCard

    config = run.config
    return ModelCard(
        run_id=run.run_id,
        config=config.to_dict(),
        dataset=config.data.dataset,
        class_names=config.data.names,
    )


def _fit(run: RunInputs, cluster, model, data, card):
    """Step 5: train, with validation, TensorBoard, backups and the epoch log (a best.h5
    carries `card`); returns (timer, validation)."""
    from cnn_mnist.stages import fit as stage

    config = run.config
    timer = stage.FitTimer()
    validation = (
        stage.TestValidation(data.x_test, data.labels_test)
        if config.training.validation == "test"
        else None
    )
    if cluster is None:
        stage.fit(
            model,
            data,
            config.training,
            config.tensorboard,
            run.run_dir,
            run.progress,
            card,
            timer,
            validation,
            run.callbacks,
        )
    else:
        _fit_distributed(run, cluster, model, data, card, timer, validation)
    return timer, validation


def _fit_distributed(run: RunInputs, cluster, model, data, card, timer, validation) -> None:
    from cnn_mnist.training import distribute

    config = run.config
    if not run.chief:  # the chief writes the logs and checkpoints
        config = config.with_values({"training.checkpoint": None, "tensorboard.enabled": False})
    distribute.fit(
        cluster,
        model,
        data,
        config.training,
        config.tensorboard,
        config.compile.loss,
        run.run_dir,
        run.progress,
        card,
        timer,
        validation,
    )


def _evaluate(run: RunInputs, model, data, validation, accelerator):
    """Step 6: test loss, accuracy and the confusion matrix; returns (the model to save, its
    evaluation)."""
    from cnn_mnist.stages import evaluate as stage
    from cnn_mnist.stages.save import float32_copy

    saved = float32_copy(model)
    # The last epoch's validation already made these predictions, unless early stopping may
    # have put back an earlier epoch's weights, or training computed in 16 bits: the report is
    # then the float32 model's, the one saved, so `cnn evaluate` repeats it.
    stop = run.config.training.early_stopping
    restored = stop is not None and stop.restore_best_weights
    names = run.config.data.names
    if (
        validation is not None
        and validation.last is not None
        and not restored
        and not accelerator.mixed_precision
    ):
        return saved, dataclasses.replace(validation.last[1], class_names=list(names))
    return saved, stage.evaluate(saved, data.x_test, data.labels_test, class_names=names)


def _report(run: RunInputs, evaluation, epochs: int) -> dict[str, str]:
    """The confusion matrix as PNG and JSON in the run folder, and in TensorBoard."""
    from cnn_mnist.stages import evaluate as stage

    plots = stage.save_results(evaluation, run.run_dir)
    if run.config.tensorboard.enabled:
        stage.log_to_tensorboard(
            evaluation, plots["confusion_matrix_png"], run.run_dir, step=epochs
        )
    return {name: str(path) for name, path in plots.items()}


def _log_hparams(run: RunInputs, record: RunRecord, model, accelerator) -> None:
    """The run's settings in run.json and, with the test metrics, in TensorBoard's HParams
    dashboard (the chief's alone: the other workers write no logs)."""
    from cnn_mnist.training.hparams import hparams_of, write_hparams

    sweep = record.file.sweep
    values = hparams_of(
        run.config.to_dict(),
        model.count_params(),
        accelerator.dtype_policy,
        record.file.config_source,
        sweep.model_dump() if sweep else None,
    )
    record.add("hparams", values)
    if run.config.tensorboard.enabled:
        write_hparams(run.run_dir, values, Path(run.config.tensorboard.log_dir))


def _save(
    run: RunInputs, saved, data, evaluation, record: RunRecord, card, publish: bool = True
) -> dict[str, str]:
    """Steps 7-8: the run's model (.h5, its `card` inside) and its LiteRT export for
    `cnn predict`, checked against the evaluation's predictions as `cnn export` checks (one
    LiteRT pass over the test set), then (if `publish`) the stable model path pointed at
    them."""
    from cnn_mnist.stages.export import export_checked
    from cnn_mnist.stages.save import save_model

    try:  # for `cnn predict` without TensorFlow; its checksum goes into the model file
        lite = export_checked(
            saved,
            "litert",
            "none",
            run.run_dir / f"{RUN_MODEL}.tflite",
            data.x_test,
            data.labels_test,
            evaluation.probabilities,
            card,
        )
        run_lite = lite.path
        card = card.model_copy(update={"litert_sha256": files.sha256(run_lite)})
        record.add("exports", [lite.to_dict()])
    except Exception as exc:  # noqa: BLE001 - predict falls back to Keras
        log.warning(
            "could not export the model for LiteRT (%s); cnn predict will use Keras",
            str(exc).splitlines()[0] if str(exc) else type(exc).__name__,
        )
        run_lite = None
    run_model = save_model(saved, run.run_dir / f"{RUN_MODEL}{run.model_path.suffix}", card)
    if publish:
        _publish_run(run, run_model, run_lite)
    paths = {
        "model": str(run.model_path),
        "run_model": str(run_model),
        "logs": str(run.run_dir),
        "config": str(run.run_dir / "config.yaml"),
    }
    if not publish:
        del paths["model"]
    if (run.run_dir / "best.h5").exists():
        paths["best_model"] = str(run.run_dir / "best.h5")
    return paths


def _complete(
    run: RunInputs,
    record: RunRecord,
    model,
    evaluation,
    epochs,
    watch,
    timer,
    validation,
    paths,
    worker: str,
) -> RunResult:
    """run.json `completed` with the metrics, timings and files; the backup is no longer
    needed."""
    watch.timings["total"] = round(time.perf_counter() - run.started, 3)
    if validation is not None:
        timer.timings["validation"] = validation.seconds
    watch.timings["fit_breakdown"] = {k: round(v, 3) for k, v in timer.timings.items()}
    history = {
        key: [e[key] for e in epochs if key in e]
        for key in dict.fromkeys(k for e in epochs for k in e if k != "epoch")
    }
    record.complete(
        metrics={
            "test_loss": evaluation.loss,
            "test_accuracy": evaluation.accuracy,
            "params": int(model.count_params()),
            "epochs_completed": len(epochs),
            "history": history,
        },
        timings_s=watch.timings,
        peak_memory_mb_after=watch.peak_mb,
        paths=paths,
    )
    shutil.rmtree(run.run_dir / "backup", ignore_errors=True)  # completed: nothing to resume
    return _result(
        run,
        record,
        evaluation,
        epochs,
        watch,
        paths=paths,
        worker=worker,
        replaced_run=run.previous_run,
    )


def _result(run: RunInputs, record: RunRecord, evaluation, epochs, watch, **fields) -> RunResult:
    assert run.config.training.seed is not None  # drawn by _settle
    return RunResult(
        run_id=run.run_id,
        run_dir=run.run_dir,
        model_path=run.model_path,
        record_path=record.path,
        evaluation=evaluation,
        seed=run.config.training.seed,
        epochs_run=len(epochs),
        resumed_from_epoch=record.file.resumed_from_epoch or 0,
        timings=watch.timings,
        distribution=_distribution(record),
        **fields,
    )


def _distribution(record: RunRecord) -> dict:
    """run.json's distribution section as it is written, {} for a run on one device."""
    return record.file.distribution.to_json() if record.file.distribution else {}


def _read_epochs(path: Path) -> list[dict]:
    from cnn_mnist.stages.fit import read_epochs

    return read_epochs(path)


def _peak_rss_mb() -> float:
    import resource

    return round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)  # KB on Linux


class _Stopwatch:
    """Seconds per stage, and the process's peak memory at the end of each (where it grew)."""

    def __init__(self) -> None:
        self.timings: dict[str, float] = {}
        self.peak_mb: dict[str, float] = {}

    @contextlib.contextmanager
    def __call__(self, name: str):
        start = time.perf_counter()
        try:
            yield
        finally:
            self.timings[name] = round(time.perf_counter() - start, 3)
            self.peak_mb[name] = _peak_rss_mb()


def _check_model_path(model_path: Path, overwrite: bool) -> str | None:
    """The run id of the model at `model_path`, if any; refuse to replace a model we did not save."""
    from cnn_mnist.stages.saved import card_of

    files.ensure_writable_dir(model_path.parent, "model")
    if not model_path.exists():
        _check_litert_beside(model_path, None, overwrite)
        return None
    if model_path.is_dir():
        raise OutputError(f"{model_path} is a folder; output.model_path must be a file path")
    card = card_of(model_path)  # an empty one for a file from elsewhere
    previous = card.run_id
    if previous is None and not overwrite:
        raise OutputError(
            f"{model_path} exists and was not saved by `cnn train`; pass "
            "--overwrite to replace it, or choose another --model-path"
        )
    _check_litert_beside(model_path, card.litert_sha256, overwrite)
    return previous


def _check_litert_beside(model_path: Path, recorded: str | None, overwrite: bool) -> None:
    """The .tflite `cnn train` keeps beside the model for `cnn predict`: replaced only if it
    is the one exported with the model there now (its SHA-256 is recorded in the model)."""
    lite = model_path.with_suffix(".tflite")
    files.check_target(
        lite,
        what="LiteRT copy `cnn train` keeps beside the model",
        ours=lambda p: recorded is not None and files.sha256(p) == recorded,
        overwrite=overwrite,
        option="",
    )


def _publish_run(run: RunInputs, run_model: Path, run_lite: Path | None) -> None:
    """The stable model path (and the .tflite beside it) pointed at the run's files, if what
    is there now may be replaced: checked again, as a file may have appeared meanwhile."""
    try:
        _check_model_path(run.model_path, run.overwrite)
    except OutputError as exc:
        raise PathTaken(
            f"{exc}.\nIt appeared while run {run.run_id} trained and is left as it is; the "
            f"run's model is {run_model}: copy it from there, or `cnn train --resume "
            f"{run.run_id} --overwrite`"
        ) from None
    _publish(run_model, run.model_path)
    stable_lite = run.model_path.with_suffix(".tflite")
    if run_lite is not None:
        _publish(run_lite, stable_lite)
    else:
        stable_lite.unlink(missing_ok=True)  # an older run's export must not stand in


def _publish(run_model: Path, model_path: Path) -> None:
    """Point the stable model path at the run's model: a hard link renamed into place."""
    with files.atomic_path(model_path) as tmp:
        tmp.unlink()
        try:
            os.link(run_model, tmp)
        except OSError:  # another file system, or no hard links: copy instead
            shutil.copyfile(run_model, tmp)


def _gpus(tf) -> list[tuple[str, tuple[int, int] | None]]:
    """The visible GPUs: (name, compute capability)."""
    found = []
    for gpu in tf.config.list_physical_devices("GPU"):
        details = tf.config.experimental.get_device_details(gpu)
        found.append((details.get("device_name", gpu.name), details.get("compute_capability")))
    return found


def _agree(cluster, run: RunInputs) -> tuple[str, Config]:
    """One run across the workers: the chief's run id and config (its seed included). Each
    worker keeps its own data path: the files may live in different places on each machine."""
    from cnn_mnist.training import distribute

    mine = yaml.safe_dump(run.config.to_dict(), sort_keys=False)
    run_id, chiefs = distribute.agree(cluster, run.run_id, mine)
    if run.chief:
        return run_id, run.config
    path = run.run_dir / "chief-config.yaml"
    files.write_text(path, chiefs)
    theirs = load_config(path, overrides={"data.path": run.config.data.path})
    # The seed aside: the chief may have drawn it.
    differs = list(differences(run.config.to_dict(), theirs.to_dict(), ignore=("training.seed",)))
    if differs and run.warn_differs:
        log.warning(
            "this worker was started with a config that differs from the chief's at %s; "
            "training with the chief's",
            ", ".join(differs[:5]),
        )
    return run_id, theirs
