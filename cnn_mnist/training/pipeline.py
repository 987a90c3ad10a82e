"""`cnn train`: the lecture's procedure as one call, stage by stage, with a run record.

The tutorial's eight steps (docs/tutorial.md), the first seven of them here: 1. import the
libraries (`Run.start`) -> 2. load and prepare the data -> 3-4. build and compile -> 5. train
(fit, TensorBoard, backups) -> 6. evaluate -> 7. save (and the LiteRT export beside it);
8. use the model is `cnn predict`, `cnn inspect` and `cnn serve` (tools/).

`train` checks the outputs and makes the run's folder; a `Run` holds what the run needs on the
way (its inputs, the stopwatch, TensorFlow, the cluster, the run record) and, called, does the
stages in order, one method each.

Each run has a folder `logs/fit/<run-id>/` holding its TensorBoard logs, the resolved config,
`run.json` (status: running, interrupted, failed or completed), the epoch history, a backup of
the last finished epoch while it runs, and its model. The stable model path
(`models/digits_recognition_cnn.h5`) is then pointed at the newest finished run's model, so an
earlier run's model is never lost: it stays in that run's folder.

The stage modules import TensorFlow or numpy, so they are imported inside the functions here:
the CLI checks the options and the config first, and answers at once when they are wrong.
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
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import yaml

from cnn_mnist.config.load import differences, load_config
from cnn_mnist.config.schema import Config
from cnn_mnist.core import files
from cnn_mnist.core.errors import ClusterError, CnnError, OutputError
from cnn_mnist.core.runtime import import_tensorflow, seed_everything
from cnn_mnist.core.stamps import new_run_id
from cnn_mnist.stages.card import ModelCard
from cnn_mnist.stages.save import float32_copy, save_model
from cnn_mnist.training.cluster import chief_task, read_tf_config
from cnn_mnist.training.hparams import hparams_of, write_hparams
from cnn_mnist.training.record import RunRecord, recorded_source

if TYPE_CHECKING:  # for the annotations alone: the stage modules import TensorFlow
    import keras

    from cnn_mnist.stages.card import ModelCard
    from cnn_mnist.stages.data import Prepared
    from cnn_mnist.stages.evaluate import Evaluation
    from cnn_mnist.stages.fit import FitTimer, TestValidation
    from cnn_mnist.stages.model import Accelerator
    from cnn_mnist.training.distribute import Cluster

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
    timings: dict[str, Any] = field(default_factory=dict)
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
    inputs = RunInputs(
        run_id=run_id,
        run_dir=resume or Path(config.tensorboard.log_dir) / run_id,
        model_path=Path(config.output.model_path),
        resumed=resume is not None,
        **common,
    )
    # Unwritable outputs are found now, not after the training they would throw away.
    inputs = dataclasses.replace(
        inputs, previous_run=_check_model_path(inputs.model_path, overwrite), overwrite=overwrite
    )
    files.ensure_writable_dir(inputs.run_dir, "logs and run record")
    try:
        run = Run.start(inputs)
        return run()
    except BaseException as exc:
        from cnn_mnist.stages.guards import TrainingFailed

        started = inputs.epochs_file.exists() or (inputs.run_dir / "train").exists()
        if not inputs.resumed and not isinstance(exc, TrainingFailed) and not started:
            shutil.rmtree(inputs.run_dir, ignore_errors=True)  # failed before training: no run
        raise


def _train_as_worker(common: dict, own_config: bool) -> RunResult:
    """A multi-worker run's other worker: it writes only to a temporary folder."""
    with tempfile.TemporaryDirectory(prefix="cnn-mnist-worker-") as scratch:
        (Path(scratch) / "run").mkdir()
        suffix = Path(common["config"].output.model_path).suffix
        run = Run.start(
            RunInputs(
                run_id=new_run_id(),
                run_dir=Path(scratch) / "run",
                model_path=Path(scratch) / f"model{suffix}",
                chief=False,
                warn_differs=own_config,
                **common,
            )
        )
        return run()


class Run:
    """One training run, from its started record to its result. It holds what the run started
    from (`inputs`), the stopwatch (`watch`: seconds and peak memory per stage), TensorFlow
    (`tf`), the tf.distribute cluster (None on one device), the run record (run.json) and the
    model card its models carry; the stages add what the later ones need: the hardware plan
    (3-4), fit's timer, validation and epoch log (5), the confusion matrix's files (6).

    `Run.start(inputs)` makes one, with TensorFlow imported and run.json written; calling it
    does the stages, in the lecture's order, one method each."""

    # Set by the stages, for the later ones:
    accelerator: Accelerator  # 3-4: the plan for the hardware found
    timer: FitTimer  # 5: fit's seconds by part
    validation: TestValidation | None  # 5: on the test set, with its last predictions

    def __init__(
        self,
        inputs: RunInputs,
        *,
        watch: _Stopwatch,
        tf,
        cluster: Cluster | None,
        record: RunRecord,
    ) -> None:
        self.inputs = inputs
        self.watch = watch
        self.tf = tf
        self.cluster = cluster
        self.record = record
        self.card: ModelCard = _card(inputs)  # in best.h5, model.h5 and the .tflite
        self.epochs: list[dict] = []  # 5: the epoch log as fit left it
        self.plots: dict[str, str] = {}  # 6: the confusion matrix as PNG and JSON

    @property
    def config(self) -> Config:
        return self.inputs.config

    @classmethod
    def start(cls, inputs: RunInputs) -> Run:
        """Step 1, before the stages: TensorFlow imported, the cluster joined, the seed drawn
        (and on every worker the chief's run id and config), then the resolved config and
        run.json (`running`) written."""
        from cnn_mnist.stages import guards

        guards.check_model_fits(inputs.config)  # before TensorFlow: a refusal costs nothing
        watch = _Stopwatch()
        with watch("import"):
            tf = _import_stages(inputs.verbose)
        cluster = _connect(inputs.config, watch)
        inputs = _settle(inputs, cluster)
        try:
            record = _start_record(inputs, cluster, tf)
        except OSError as exc:  # before training: nothing to resume
            where = getattr(exc, "filename", None) or inputs.run_dir
            raise files.write_error(exc, where, "the run's record", advise=True) from None
        return cls(inputs, watch=watch, tf=tf, cluster=cluster, record=record)

    def __call__(self) -> RunResult:
        """The lecture's procedure, stage by stage; run.json says how far it got."""
        with self._recorded():
            data = self.prepare_data()  # 1-2
            model = self.build_and_compile(data)  # 3-4
            self.fit(model, data)  # 5
            saved, evaluation = self.evaluate(model, data)  # 6
            if not self.inputs.chief:  # the chief saves the results and the model
                return self._result(evaluation, chief=False, worker=self._worker())
            paths = self.save(saved, data, evaluation)  # 7-8
            return self.complete(model, evaluation, paths)

    @contextlib.contextmanager
    def _recorded(self) -> Iterator[None]:
        """How the stages stopped, in run.json (interrupted, or failed with the error; the
        epochs finished either way) and in one message that says what the run keeps and how to
        go on; the record's reserve is released however they end."""
        from cnn_mnist.stages import guards

        run_id, epochs = self.inputs.run_id, self.config.training.epochs
        try:
            with self.record.recording_failures(self._finished, self.watch.timings):
                try:
                    yield
                except (MemoryError, self.tf.errors.ResourceExhaustedError) as exc:
                    if files.no_space(exc):  # TensorFlow's file writers say a full disk so
                        raise OSError(errno.ENOSPC, "No space left on device") from None
                    raise guards.out_of_memory(self.config) from None
        except KeyboardInterrupt:
            raise TrainingInterrupted(
                f"interrupted: run {run_id} stopped after {self._finished()} of {epochs} "
                f"epoch(s), which are kept.\nResume it with: cnn train --resume {run_id}"
            ) from None
        except ClusterError as exc:
            raise ClusterError(
                f"{exc}.\nRun {run_id} keeps its last finished epoch ({self._finished()} of "
                f"{epochs}): restart `cnn train --resume {run_id}` on the chief and `cnn train "
                "--resume` on the other workers."
            ) from None
        except PathTaken:
            raise
        except (OSError, OutputError) as exc:
            raise self._make_room(exc) from None
        finally:
            self.record.release()

    def _make_room(self, exc: OSError | OutputError) -> OutputError:
        """A file the run could not write: what it keeps, and how to go on once there is room
        (or that nothing is left, if its folder was removed meanwhile)."""
        inputs = self.inputs
        if not inputs.run_dir.is_dir():
            return OutputError(
                f"run {inputs.run_id}'s folder {inputs.run_dir} was removed while it trained, "
                "with its epochs; nothing is left to resume: start again with `cnn train`"
            )
        error = (
            exc
            if isinstance(exc, OutputError)
            else files.write_error(exc, getattr(exc, "filename", None), "the run's files")
        )
        marked = "is marked failed and keeps" if self.record.on_disk == "failed" else "keeps"
        return OutputError(
            f"{error}.\nRun {inputs.run_id} {marked} its last finished epoch "
            f"({self._finished()} of {self.config.training.epochs}): make room, then "
            f"`cnn train --resume {inputs.run_id}`"
        )

    def _finished(self) -> int:
        """The epochs finished so far, as the epoch log has them."""
        return len(_read_epochs(self.inputs.epochs_file))

    # --- 2. load and prepare the data -------------------------------------------------------------

    def prepare_data(self) -> Prepared:
        """Step 2: load the dataset, then scale and shape it as the config says; a model
        whose input is not the images' shape stops here, before training."""
        from cnn_mnist.stages import data as stage
        from cnn_mnist.stages.guards import check_input_shape

        config = self.config
        with self.watch("load_data"):
            mnist = stage.check_trainable(
                stage.load_mnist(config.data.path, dataset=config.data.dataset)
            )
        with self.watch("prepare_data"):
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
        self.record.add(
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
        check_input_shape(config, data.x_test.shape[1:])
        return data

    # --- 3-4. build and compile -------------------------------------------------------------------

    def build_and_compile(self, data: Prepared) -> keras.Model:
        """Steps 3-4: the layers from the config, then the optimizer, loss and metrics, for the
        hardware found (its plan kept as `accelerator`); returns the model."""
        from cnn_mnist.stages.model import accelerator_plan, build_model, compile_model, cpu_flags

        config, cluster = self.config, self.cluster
        self.accelerator = accelerator = accelerator_plan(
            config.compile, _gpus(self.tf), cpu_flags(), distributed=cluster is not None
        )
        self.record.add("accelerator", accelerator.to_dict())
        # Under a strategy, variables are made mirrored on every replica.
        scope = cluster.strategy.scope if cluster is not None else contextlib.nullcontext
        with self.watch("build"), scope():
            model = build_model(config.model, accelerator.dtype_policy)
        with self.watch("compile"), scope():
            steps = math.ceil(len(data.labels_train) / config.training.batch_size)
            compile_model(
                model,
                config.compile,
                total_steps=steps * config.training.epochs,
                accelerator=accelerator,
            )
        # Keras resolves jit_compile "auto" at compile; our distributed step is never XLA-compiled.
        assert self.record.file.accelerator is not None  # recorded above
        xla = self.record.file.accelerator.jit_compile = bool(model.jit_compile) and cluster is None
        self._log_plan(model, len(data.labels_train), xla)
        return model

    def _log_plan(self, model: keras.Model, images: int, xla: bool) -> None:
        config, cluster, accelerator = self.config, self.cluster, self.accelerator
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

    # --- 5. train (fit) ---------------------------------------------------------------------------

    def fit(self, model: keras.Model, data: Prepared) -> None:
        """Step 5: train, with validation, TensorBoard, backups and the epoch log (a best.h5
        carries the run's card); under tf.distribute, distribute.py's loop does it."""
        from cnn_mnist.stages import fit as stage

        config, inputs, cluster = self.config, self.inputs, self.cluster
        with self.watch("fit"):
            self.timer = stage.FitTimer()
            self.validation = (
                stage.TestValidation(data.x_test, data.labels_test)
                if config.training.validation == "test"
                else None
            )
            if cluster is None:
                stage.fit(
                    model,
                    data,
                    training=config.training,
                    tensorboard=config.tensorboard,
                    run_dir=inputs.run_dir,
                    verbose=inputs.progress,
                    card=self.card,
                    timer=self.timer,
                    validation=self.validation,
                    extra_callbacks=inputs.callbacks,
                )
            else:
                self._fit_distributed(cluster, model, data)
        self.epochs = _read_epochs(inputs.epochs_file)

    def _fit_distributed(self, cluster: Cluster, model: keras.Model, data: Prepared) -> None:
        from cnn_mnist.training import distribute

        config = self.config
        if not self.inputs.chief:  # the chief writes the logs and checkpoints
            config = config.with_values({"training.checkpoint": None, "tensorboard.enabled": False})
        distribute.fit(
            cluster,
            model,
            data,
            training=config.training,
            tensorboard=config.tensorboard,
            loss=config.compile.loss,
            run_dir=self.inputs.run_dir,
            verbose=self.inputs.progress,
            card=self.card,
            timer=self.timer,
            validation=self.validation,
        )

    # --- 6. evaluate ------------------------------------------------------------------------------

    def evaluate(self, model: keras.Model, data: Prepared) -> tuple[keras.Model, Evaluation]:
        """Step 6: test loss, accuracy and the confusion matrix; returns (the model to save,
        its evaluation). What is evaluated, saved and exported is a float32 copy if training
        computed in 16 bits (made once here), else the model itself. The chief also writes the
        report and the run's settings (HParams)."""
        with self.watch("evaluate"):
            saved, evaluation = self._evaluation(model, data)
            if self.cluster is not None:
                from cnn_mnist.training.distribute import weights_sha256

                assert self.record.file.distribution is not None  # recorded with the cluster
                self.record.file.distribution.weights_sha256 = weights_sha256(model)
            if self.inputs.chief:  # the other workers write no files
                self.plots = self._report(evaluation)
                self._log_hparams(model)
        return saved, evaluation

    def _evaluation(self, model: keras.Model, data: Prepared) -> tuple[keras.Model, Evaluation]:
        from cnn_mnist.stages import evaluate as stage

        saved = float32_copy(model)
        # The last epoch's validation already made these predictions, unless early stopping may
        # have put back an earlier epoch's weights, or training computed in 16 bits: the report is
        # then the float32 model's, the one saved, so `cnn evaluate` repeats it.
        stop = self.config.training.early_stopping
        restored = stop is not None and stop.restore_best_weights
        names = self.config.data.names
        validation = self.validation
        if (
            validation is not None
            and validation.last is not None
            and not restored
            and not self.accelerator.mixed_precision
        ):
            return saved, dataclasses.replace(validation.last[1], class_names=list(names))
        return saved, stage.evaluate(saved, data.x_test, data.labels_test, class_names=names)

    def _report(self, evaluation: Evaluation) -> dict[str, str]:
        """The confusion matrix as PNG and JSON in the run folder, and in TensorBoard."""
        from cnn_mnist.stages import evaluate as stage

        run_dir = self.inputs.run_dir
        plots = stage.save_results(evaluation, run_dir)
        if self.config.tensorboard.enabled:
            stage.log_to_tensorboard(
                evaluation, plots["confusion_matrix_png"], run_dir, step=len(self.epochs)
            )
        return {name: str(path) for name, path in plots.items()}

    def _log_hparams(self, model: keras.Model) -> None:
        """The run's settings in run.json and, with the test metrics, in TensorBoard's HParams
        dashboard (the chief's alone: the other workers write no logs)."""
        config, record = self.config, self.record
        sweep = record.file.sweep
        values = hparams_of(
            config.to_dict(),
            model.count_params(),
            self.accelerator.dtype_policy,
            record.file.config_source,
            sweep.model_dump() if sweep else None,
        )
        record.add("hparams", values)
        if config.tensorboard.enabled:
            write_hparams(self.inputs.run_dir, values, Path(config.tensorboard.log_dir))

    # --- 7. save (and the LiteRT export) ----------------------------------------------------------

    def save(self, saved: keras.Model, data: Prepared, evaluation: Evaluation) -> dict[str, str]:
        """Step 7: the run's model (.h5, its card inside) and its LiteRT export, then the
        stable model path pointed at them; returns where the run's files are. A model no better
        than chance stays in the run folder, unpublished: TrainingFailed."""
        from cnn_mnist.stages.guards import at_chance

        chance = at_chance(evaluation.accuracy, data.labels_test)
        with self.watch("save"):
            paths = {**self._save_files(saved, data, evaluation, not chance), **self.plots}
        if chance:  # kept in the run folder, but not published over a model that learnt
            raise self._learnt_nothing(evaluation, paths)
        return paths

    def _save_files(
        self, saved: keras.Model, data: Prepared, evaluation: Evaluation, publish: bool
    ) -> dict[str, str]:
        inputs = self.inputs
        run_lite, card = self._export(saved, data, evaluation)
        run_model = save_model(
            saved, inputs.run_dir / f"{RUN_MODEL}{inputs.model_path.suffix}", card
        )
        if publish:
            _publish_run(inputs, run_model, run_lite)
        paths = {
            "model": str(inputs.model_path),
            "run_model": str(run_model),
            "logs": str(inputs.run_dir),
            "config": str(inputs.run_dir / "config.yaml"),
        }
        if not publish:
            del paths["model"]
        if (inputs.run_dir / "best.h5").exists():
            paths["best_model"] = str(inputs.run_dir / "best.h5")
        return paths

    def _export(
        self, saved: keras.Model, data: Prepared, evaluation: Evaluation
    ) -> tuple[Path | None, ModelCard]:
        """The LiteRT copy, for `cnn predict` without TensorFlow, checked against the
        evaluation's predictions as `cnn export` checks (one LiteRT pass over the test set);
        returns (its path, the card with its checksum), or (None, the card) if it could not be
        made."""
        from cnn_mnist.stages.export import export_checked

        try:
            lite = export_checked(
                saved,
                "litert",
                "none",
                self.inputs.run_dir / f"{RUN_MODEL}.tflite",
                data.x_test,
                data.labels_test,
                evaluation.probabilities,
                self.card,
            )
            card = self.card.model_copy(update={"litert_sha256": files.sha256(lite.path)})
            self.record.add("exports", [lite.to_dict()])
        except Exception as exc:  # noqa: BLE001 - predict falls back to Keras
            log.warning(
                "could not export the model for LiteRT (%s); cnn predict will use Keras",
                str(exc).splitlines()[0] if str(exc) else type(exc).__name__,
            )
            return None, self.card
        return lite.path, card

    def _learnt_nothing(self, evaluation: Evaluation, paths: dict[str, str]) -> CnnError:
        """The metrics and files in run.json, and the error that marks the run failed."""
        from cnn_mnist.stages.guards import TrainingFailed

        inputs = self.inputs
        self.record.add(
            "metrics", {"test_loss": evaluation.loss, "test_accuracy": evaluation.accuracy}
        )
        self.record.add("paths", paths)
        kept = (
            f"{inputs.model_path} still holds run {inputs.previous_run}'s model"
            if inputs.previous_run
            else f"{inputs.model_path} was not written"
        )
        return TrainingFailed(
            f"the model did not learn: test accuracy {evaluation.accuracy:.4f} is no better "
            f"than always answering the commonest class; it stays in {paths['run_model']}, and "
            f"{kept}. Lower compile.learning_rate (--learning-rate) or train longer"
        )

    # --- the end ----------------------------------------------------------------------------------

    def complete(
        self, model: keras.Model, evaluation: Evaluation, paths: dict[str, str]
    ) -> RunResult:
        """run.json `completed` with the metrics, timings and files; the backup is no longer
        needed."""
        timings, epochs = self.watch.timings, self.epochs
        timings["total"] = round(time.perf_counter() - self.inputs.started, 3)
        if self.validation is not None:
            self.timer.timings["validation"] = self.validation.seconds
        timings["fit_breakdown"] = {k: round(v, 3) for k, v in self.timer.timings.items()}
        history = {
            key: [e[key] for e in epochs if key in e]
            for key in dict.fromkeys(k for e in epochs for k in e if k != "epoch")
        }
        self.record.complete(
            metrics={
                "test_loss": evaluation.loss,
                "test_accuracy": evaluation.accuracy,
                "params": int(model.count_params()),
                "epochs_completed": len(epochs),
                "history": history,
            },
            timings_s=timings,
            peak_memory_mb_after=self.watch.peak_mb,
            paths=paths,
        )
        shutil.rmtree(self.inputs.run_dir / "backup", ignore_errors=True)  # nothing to resume
        return self._result(
            evaluation,
            paths=paths,
            worker=self._worker(),
            replaced_run=self.inputs.previous_run,
        )

    def _worker(self) -> str:
        """This process in a distributed run ("worker 1"), "" on one device."""
        return self.cluster.task if self.cluster is not None else ""

    def _result(self, evaluation: Evaluation, **fields) -> RunResult:
        inputs, record = self.inputs, self.record
        return RunResult(
            run_id=inputs.run_id,
            run_dir=inputs.run_dir,
            model_path=inputs.model_path,
            record_path=record.path,
            evaluation=evaluation,
            seed=_seed(inputs),
            epochs_run=len(self.epochs),
            resumed_from_epoch=record.file.resumed_from_epoch or 0,
            timings=self.watch.timings,
            distribution=_distribution(record),
            **fields,
        )


# --- 1. before the stages: TensorFlow, the cluster, the seed, run.json ----------------------------


def _import_stages(verbose: bool):
    """TensorFlow (quietly, unless `verbose`) and the stage modules; returns tf."""
    tf = import_tensorflow(verbose)
    from cnn_mnist.stages import data, evaluate, fit, model  # noqa: F401
    from cnn_mnist.training import distribute  # noqa: F401

    return tf


def _connect(config: Config, watch):
    """The tf.distribute cluster, or None; multi_worker waits for every worker to join."""
    if config.training.distribution == "none":
        return None
    from cnn_mnist.training import distribute

    with watch("connect"):
        return distribute.make_cluster(config.training)


def _settle(inputs: RunInputs, cluster) -> RunInputs:
    """The seed drawn if the config has none (the resolved config carries the seed used, so
    `--config <run>/config.yaml` repeats the run), the chief's run id and config on every
    worker, and every generator seeded."""
    seed = inputs.config.training.seed
    config = inputs.config.with_values(
        {"training.seed": secrets.randbelow(2**31) if seed is None else seed}
    )
    inputs = dataclasses.replace(inputs, config=config)
    if cluster is not None:
        run_id, config = _agree(cluster, inputs)
        inputs = dataclasses.replace(inputs, run_id=run_id, config=config)
    seed_everything(_seed(inputs))
    return inputs


def _seed(inputs: RunInputs) -> int:
    """The run's seed, drawn in _settle if the config left it open."""
    seed = inputs.config.training.seed
    assert seed is not None, "the seed is settled before training"
    return seed


def _agree(cluster, inputs: RunInputs) -> tuple[str, Config]:
    """One run across the workers: the chief's run id and config (its seed included). Each
    worker keeps its own data path: the files may live in different places on each machine."""
    from cnn_mnist.training import distribute

    mine = yaml.safe_dump(inputs.config.to_dict(), sort_keys=False)
    run_id, chiefs = distribute.agree(cluster, inputs.run_id, mine)
    if inputs.chief:
        return run_id, inputs.config
    path = inputs.run_dir / "chief-config.yaml"
    files.write_text(path, chiefs)
    theirs = load_config(path, overrides={"data.path": inputs.config.data.path})
    # The seed aside: the chief may have drawn it.
    differs = list(
        differences(inputs.config.to_dict(), theirs.to_dict(), ignore=("training.seed",))
    )
    if differs and inputs.warn_differs:
        log.warning(
            "this worker was started with a config that differs from the chief's at %s; "
            "training with the chief's",
            ", ".join(differs[:5]),
        )
    return run_id, theirs


def _start_record(inputs: RunInputs, cluster, tf) -> RunRecord:
    """The resolved config and run.json (`running`), before anything slow happens."""
    import keras
    import numpy

    config = inputs.config
    # A resumed run keeps the config name it started with (`--resume` takes no --config).
    source = recorded_source(inputs.run_dir) if inputs.resumed else None
    record = RunRecord(
        inputs.run_dir,
        inputs.run_id,
        config_source=source or inputs.config_source,
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
        **inputs.tags,
    )
    if inputs.resumed:
        record.add("resumed_from_epoch", len(_read_epochs(inputs.epochs_file)))
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
    files.write_text(
        inputs.run_dir / "config.yaml", yaml.safe_dump(config.to_dict(), sort_keys=False)
    )
    record.write()
    return record


def _gpus(tf) -> list[tuple[str, tuple[int, int] | None]]:
    """The visible GPUs: (name, compute capability)."""
    found = []
    for gpu in tf.config.list_physical_devices("GPU"):
        details = tf.config.experimental.get_device_details(gpu)
        found.append((details.get("device_name", gpu.name), details.get("compute_capability")))
    return found


# --- the run's pieces -----------------------------------------------------------------------------


def _card(inputs: RunInputs) -> ModelCard:
    """The model card (stages/card.py) of the run's models: the run, its config, its dataset
    and class names."""
    config = inputs.config
    return ModelCard(
        run_id=inputs.run_id,
        config=config.to_dict(),
        dataset=config.data.dataset,
        class_names=config.data.names,
    )


def _of(used: int, there: int) -> str:
    """'60,000', or '2,000 of 60,000' where data.limit_* takes a slice."""
    return f"{used:,}" if used == there else f"{used:,} of {there:,}"


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
        self.timings: dict[str, Any] = {}  # seconds; fit_breakdown is a dict of them
        self.peak_mb: dict[str, float] = {}

    @contextlib.contextmanager
    def __call__(self, name: str):
        start = time.perf_counter()
        try:
            yield
        finally:
            self.timings[name] = round(time.perf_counter() - start, 3)
            self.peak_mb[name] = _peak_rss_mb()


# --- the model path: checked at the start, and again before it is replaced ------------------------


def _check_model_path(model_path: Path, overwrite: bool) -> str | None:
    """The run id of the model at `model_path`, if any; refuse to replace a model we did not save."""
    from cnn_mnist.stages.handle import card_of

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


def _publish_run(inputs: RunInputs, run_model: Path, run_lite: Path | None) -> None:
    """The stable model path (and the .tflite beside it) pointed at the run's files, if what
    is there now may be replaced: checked again, as a file may have appeared meanwhile."""
    try:
        _check_model_path(inputs.model_path, inputs.overwrite)
    except OutputError as exc:
        raise PathTaken(
            f"{exc}.\nIt appeared while run {inputs.run_id} trained and is left as it is; the "
            f"run's model is {run_model}: copy it from there, or `cnn train --resume "
            f"{inputs.run_id} --overwrite`"
        ) from None
    _publish(run_model, inputs.model_path)
    stable_lite = inputs.model_path.with_suffix(".tflite")
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
