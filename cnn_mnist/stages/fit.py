"""Step 5: train (fit) the model, logging to TensorBoard, with backups to resume from."""

from __future__ import annotations

import contextlib
import gc
import io
import json
import math
import os
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

import keras
import numpy as np
import tensorflow as tf

from cnn_mnist.analysis.network import CONV_TYPES, model_input, tensorboard_images
from cnn_mnist.config.schema import (
    AugmentConfig,
    CheckpointConfig,
    TensorBoardConfig,
    TrainingConfig,
)
from cnn_mnist.core import files
from cnn_mnist.core.errors import ConfigError
from cnn_mnist.core.runtime import signals_deferred
from cnn_mnist.stages import guards
from cnn_mnist.stages.augment import augment_batch, batch_key
from cnn_mnist.stages.card import ModelCard
from cnn_mnist.stages.data import Prepared
from cnn_mnist.stages.evaluate import from_probabilities, predict_probabilities, traced
from cnn_mnist.stages.save import save_model

if TYPE_CHECKING:
    from cnn_mnist.stages.evaluate import Evaluation


class BatchScalars(keras.callbacks.Callback):
    """Loss and accuracy every `every` batches, as `batch_loss`, `batch_accuracy`.

    Keras's own `TensorBoard(update_freq=N)` leaves a `record_if(step % N == 0)` in force at
    epoch end (Keras 3.15), which drops the epoch curves and histograms whenever an epoch does
    not end on a multiple of N; so that callback logs per epoch and this one per batch. The step
    is the optimizer's iteration count, so a resumed run continues its curves without a jump.
    """

    writer: Any  # tf.summary's file writer (untyped), made at train begin; None before

    def __init__(self, log_dir: Path, every: int) -> None:
        super().__init__()
        self.log_dir, self.every, self.step, self.writer = log_dir, every, 0, None

    def on_train_begin(self, logs=None):
        self.writer = tf.summary.create_file_writer(str(self.log_dir / "train"))

    def on_epoch_begin(self, epoch, logs=None):
        # Here, not at train begin: the backup, the last callback, has been restored by now.
        self.step = int(self.model.optimizer.iterations.numpy())

    def on_train_batch_end(self, batch, logs=None):
        # With steps_per_execution > 1 this is called once per call of several steps.
        before, self.step = self.step, int(self.model.optimizer.iterations.numpy())
        if self.step // self.every > before // self.every and logs:
            with self.writer.as_default(step=self.step):
                for name, value in logs.items():
                    tf.summary.scalar(f"batch_{name}", float(value))

    def on_train_end(self, logs=None):
        if self.writer is not None:
            self.writer.close()


class StopOnNonFinite(keras.callbacks.Callback):
    """A loss that is not finite (NaN, infinity) stops training at once with TrainingFailed,
    naming the step: nothing after it could be saved as a success. Keras's TerminateOnNaN only
    sets `stop_training`, and the run would then be evaluated and saved."""

    def on_train_batch_end(self, batch, logs=None):
        loss = (logs or {}).get("loss")
        if loss is not None and not guards.is_finite(loss):
            step = int(self.model.optimizer.iterations.numpy())
            rate = self.model.optimizer.learning_rate
            rate = float(rate.numpy() if hasattr(rate, "numpy") else rate)
            raise guards.TrainingFailed(
                guards.non_finite_message(float(loss), step, getattr(self, "epoch", 0), rate)
            )

    def on_epoch_begin(self, epoch, logs=None):
        self.epoch = epoch


class EpochSeeds(keras.callbacks.Callback):
    """Each epoch's randomness as a function of the seed and the epoch alone, so that a run
    resumed from a backup draws what the uninterrupted run drew.

    The backup (Keras's BackupAndRestore) holds the weights and the optimizer, whose iteration
    count drives the learning-rate schedule, but not the state of two random streams, which a
    new process starts over: tf.data's reshuffling (a resumed run's second epoch saw the first
    epoch's order again) and dropout's SeedGenerators (it got the first epoch's masks again).
    So at the start of every epoch this sets `epoch`, from which `make_dataset` draws that
    epoch's order, and moves each SeedGenerator's counter to `epoch * SEED_STRIDE`.
    """

    # A generator's draws per epoch, at most (a dropout layer draws once a step). Keras's
    # TensorFlow backend takes seeds modulo 2**31 - 2, so epochs draw apart for the first 2,047.
    SEED_STRIDE = 2**20

    def __init__(self) -> None:
        super().__init__()
        with tf.device("/CPU:0"):  # read by the input pipeline, which runs on the host
            self.epoch = tf.Variable(0, dtype=tf.int64, trainable=False, name="data_epoch")

    def on_epoch_begin(self, epoch, logs=None):
        self.epoch.assign(epoch)
        for state in seed_states(self.model):
            base = int(state.numpy()[0])  # the generator's seed: `next()` leaves it as it is
            state.assign(np.array([base, epoch * self.SEED_STRIDE], dtype=np.int64))


def seed_states(model: keras.Model) -> list:
    """The state variables of the model's SeedGenerators (dropout's): not in `save_weights`."""
    return [v for v in model.variables if v.name == "seed_generator_state"]


class TestValidation(keras.callbacks.Callback):
    """Validation on the test set after each epoch, by the same code as the final evaluation.

    It adds `val_loss` and `val_accuracy` to the epoch's logs, where Keras's progress bar,
    History and TensorBoard callbacks, early stopping and checkpoints read them (it must come
    first among the callbacks). The last epoch's predictions are kept, so the final evaluation
    does not pass over the test set a second time.
    """

    last: tuple[int, Evaluation] | None  # the last epoch and its evaluation

    def __init__(self, x: np.ndarray, labels: np.ndarray) -> None:
        super().__init__()
        self.x, self.labels, self.last, self.seconds = x, labels, None, 0.0

    def on_train_begin(self, logs=None):
        self.forward = traced(self.model)

    def on_epoch_end(self, epoch, logs=None):
        start = time.perf_counter()
        evaluation = from_probabilities(predict_probabilities(self.forward, self.x), self.labels)
        self.seconds += time.perf_counter() - start
        if logs is not None:
            logs["val_loss"], logs["val_accuracy"] = evaluation.loss, evaluation.accuracy
        self.last = (epoch, evaluation)


class EpochWriter(keras.callbacks.Callback):
    """Writes to the run's `train` event files every `every` epochs: subclasses say what."""

    writer: Any  # tf.summary's file writer (untyped), made at train begin; None before

    def __init__(self, log_dir: Path, every: int = 1) -> None:
        super().__init__()
        self.log_dir, self.every, self.writer = Path(log_dir), max(1, every), None

    def on_train_begin(self, logs=None):
        self.writer = tf.summary.create_file_writer(str(self.log_dir / "train"))

    def on_train_end(self, logs=None):
        if self.writer is not None:
            self.writer.close()

    def on_epoch_end(self, epoch, logs=None):
        if epoch % self.every:
            return
        with self.writer.as_default(step=epoch):
            self.write(epoch)
        self.writer.flush()

    def write(self, epoch: int) -> None:
        raise NotImplementedError


class Histograms(EpochWriter):
    """Weight histograms every `every` epochs, in TensorBoard's histogram format.

    Keras's callback builds them with `tf.summary.histogram`, which one-hot encodes every
    value into 30 buckets: about 290 MB at once for the lecture's 1.2M-weight Dense kernel.
    NumPy's histogram gives the same 30 buckets in a few milliseconds and no extra memory.
    """

    BUCKETS = 30  # TensorBoard's default

    def write(self, epoch: int) -> None:
        from tensorboard.plugins.histogram import metadata

        for weight in self.model.weights:
            values = np.asarray(weight.numpy(), dtype=np.float64).ravel()
            if values.size and values.min() < values.max():
                counts, edges = np.histogram(values, bins=self.BUCKETS)
                buckets = np.stack([edges[:-1], edges[1:], counts], axis=1)
            else:  # empty or constant (a bias at zero): one bucket
                value = float(values[0]) if values.size else 0.0
                buckets = np.array([[value - 0.5, value + 0.5, float(values.size)]])
            tag = f"{weight.path.replace(':', '_')}/histogram"
            tf.summary.write(
                tag,
                tf.constant(buckets, tf.float64),
                metadata=metadata.create_summary_metadata(tag, None),
            )


class EpochLog(keras.callbacks.Callback):
    """One JSON line per finished epoch: the run's history survives interrupts and resumes.

    Appended and fsync'd rather than rewritten: a kill mid-write costs at most a partial last
    line, which `read_epochs` skips.
    """

    def __init__(self, path: Path) -> None:
        super().__init__()
        self.path = path

    def on_train_begin(self, logs=None):
        self.path.parent.mkdir(parents=True, exist_ok=True)

    def on_epoch_end(self, epoch, logs=None):
        line = json.dumps({"epoch": epoch, **{k: float(v) for k, v in (logs or {}).items()}})
        try:
            with self.path.open("a", encoding="utf-8") as fh:
                fh.write(line + "\n")
                fh.flush()
                os.fsync(fh.fileno())
        except OSError as exc:
            raise files.write_error(exc, self.path, f"the record of epoch {epoch + 1}") from None


class Backup(keras.callbacks.BackupAndRestore):
    """Keras's BackupAndRestore, written whole: Ctrl-C or SIGTERM while it writes the weights
    and then the epoch number waits until both are written. Between the two, a resumed run
    would have redone the epoch from weights that had already been trained on it."""

    NEXT_WEIGHTS, NEXT_METADATA = "next.weights.h5", "next_training_metadata.json"

    def on_epoch_end(self, epoch, logs=None):
        with signals_deferred():
            super().on_epoch_end(epoch, logs)

    def _save_model(self):
        """Whole or not at all: the weights and the epoch number are written to new files,
        which then replace the backup (the previous one kept as .bkp) by renaming. A write that
        fails (a full disk) leaves the last complete backup as it was, and nothing partial."""
        folder = Path(self.backup_dir)
        weights, metadata = folder / self.NEXT_WEIGHTS, folder / self.NEXT_METADATA
        failed = None
        # On a failed write, h5py's destructors print tracebacks of the same error to stderr
        # (its Cython code does, whatever Python's hooks say), which the user has no use for:
        # they go nowhere, here and when the error's frames are freed.
        with contextlib.redirect_stderr(io.StringIO()):
            try:
                folder.mkdir(parents=True, exist_ok=True)
                files.check_room(folder, files.h5_bytes(self.model), "the backup")
                self.model.save_weights(str(weights), overwrite=True)
                metadata.write_text(
                    json.dumps({"epoch": self._current_epoch, "batch": self._last_batch_seen})
                )
            except (OSError, RuntimeError) as exc:  # h5py raises both
                failed = files.write_error(
                    exc, folder, f"the backup of epoch {self._current_epoch}"
                )
            if failed is not None:
                gc.collect()
        if failed is not None:
            weights.unlink(missing_ok=True)
            metadata.unlink(missing_ok=True)
            raise failed
        for latest, previous in (
            (self._weights_path, self._prev_weights_path),
            (self._training_metadata_path, self._prev_training_metadata_path),
        ):
            if os.path.exists(latest):
                os.replace(latest, previous)
        os.replace(weights, self._weights_path)
        os.replace(metadata, self._training_metadata_path)


def read_epochs(path: Path) -> list[dict]:
    """The finished epochs in order (the last record of an epoch wins)."""
    epochs: dict[int, dict] = {}
    if path.exists():
        for line in path.read_text(encoding="utf-8").splitlines():
            try:
                record = json.loads(line)
                epochs[int(record["epoch"])] = record
            except (ValueError, KeyError, TypeError):
                continue  # a line cut short by a kill
    return [epochs[e] for e in sorted(epochs)]


class BestModel(keras.callbacks.Callback):
    """Keep the best model by a monitored metric, written atomically after each epoch."""

    def __init__(
        self, config: CheckpointConfig, path: Path, card: ModelCard, history: list[dict]
    ) -> None:
        super().__init__()
        self.monitor, self.path, self.card = config.monitor, path, card
        self.better = (
            (lambda a, b: a < b) if config.monitor.endswith("loss") else (lambda a, b: a > b)
        )
        previous = [e[self.monitor] for e in history if self.monitor in e]
        self.best = None
        for value in previous:  # a resumed run remembers its best epoch
            if self.best is None or self.better(value, self.best):
                self.best = value

    def on_epoch_end(self, epoch, logs=None):
        value = (logs or {}).get(self.monitor)
        if value is None or math.isnan(value):
            return
        if self.best is None or self.better(value, self.best):
            self.best = float(value)
            card = self.card.model_copy(update={"epoch": epoch, self.monitor: value})
            save_model(self.model, self.path, card)  # the run's card, this epoch and its value


class FitTimer(keras.callbacks.Callback):
    """Where fit's time goes: the first step (tracing), the other steps, and the epoch-end work
    of the callbacks after it (histograms, logs, backups). Validation times itself."""

    _e: float | None  # when the last epoch ended, until the next one begins

    def __init__(self) -> None:
        super().__init__()
        self.timings = {"first_step": 0.0, "train_steps": 0.0, "validation": 0.0, "epoch_end": 0.0}
        self._first, self._t, self._e = True, 0.0, None

    def on_train_batch_begin(self, batch, logs=None):
        self._t = time.perf_counter()

    def on_train_batch_end(self, batch, logs=None):
        self.timings["first_step" if self._first else "train_steps"] += (
            time.perf_counter() - self._t
        )
        self._first = False

    def on_epoch_end(self, epoch, logs=None):
        self._e = time.perf_counter()

    def on_epoch_begin(self, epoch, logs=None):
        self._close_epoch()

    def on_train_end(self, logs=None):
        self._close_epoch()

    def _close_epoch(self):
        if self._e is not None:
            self.timings["epoch_end"] += time.perf_counter() - self._e
            self._e = None


def write_graph(model: keras.Model, log_dir: Path) -> None:
    """The model's forward graph for TensorBoard's Graphs tab.

    Keras 3's callback only writes a graph when `train_function` is a traced tf.function,
    which it is not by default, so the forward pass is traced here.
    """
    forward = tf.function(lambda x: model(x, training=False))
    spec = tf.TensorSpec((None, *model.input_shape[1:]), tf.float32)
    graph = forward.get_concrete_function(spec).graph
    with tf.summary.create_file_writer(str(log_dir / "train")).as_default():
        tf.summary.graph(graph)


def callbacks(
    *,
    training: TrainingConfig,
    tensorboard: TensorBoardConfig,
    run_dir: Path | None,
    card: ModelCard | None = None,
    timer: FitTimer | None = None,
    validation: TestValidation | None = None,
    seeds: EpochSeeds | None = None,
    images: keras.callbacks.Callback | None = None,
) -> list[keras.callbacks.Callback]:
    """Validation (first, so the others see its metrics), the non-finite loss check, epoch
    seeds, history, TensorBoard (with `images`, the feature maps, if given), stopping, and the
    backup last: an epoch in the backup is in the history too."""
    out: list[keras.callbacks.Callback] = []
    if validation is not None:
        out.append(validation)
    out.append(StopOnNonFinite())  # a batch-end check: the validation's place is kept
    if seeds is not None:
        out.append(seeds)
    if timer is not None:
        out.append(timer)
    if run_dir is not None:
        out.append(EpochLog(run_dir / "epochs.jsonl"))
        if training.checkpoint:
            out.append(
                BestModel(
                    training.checkpoint,
                    run_dir / "best.h5",
                    card or ModelCard(),
                    read_epochs(run_dir / "epochs.jsonl"),
                )
            )
        if tensorboard.enabled:
            out += _tensorboard_callbacks(tensorboard, run_dir, images)
    if training.early_stopping:
        stop = training.early_stopping
        out.append(
            keras.callbacks.EarlyStopping(
                monitor=stop.monitor,
                patience=stop.patience,
                min_delta=stop.min_delta,
                verbose=0,
                restore_best_weights=stop.restore_best_weights,
            )
        )
    if run_dir is not None:
        # Last, so that an interrupt between two callbacks never leaves a backed-up epoch out
        # of epochs.jsonl, best.h5 or TensorBoard: a resumed run redoes an unsaved epoch, the
        # same way. Kept after fit (delete_checkpoint=False): the pipeline removes it once the
        # run is recorded as completed, so an interrupt during evaluation or saving still resumes.
        out.append(
            Backup(
                str(run_dir / "backup"),
                save_freq="epoch",
                double_checkpoint=True,
                delete_checkpoint=False,
            )
        )
    return out


def _tensorboard_callbacks(
    tensorboard: TensorBoardConfig, run_dir: Path, images: keras.callbacks.Callback | None
) -> list[keras.callbacks.Callback]:
    """Keras's TensorBoard callback (graph, profile), our batch scalars, histograms, images."""
    profile = tensorboard.profile_batch
    out: list[keras.callbacks.Callback] = [
        keras.callbacks.TensorBoard(
            log_dir=str(run_dir),
            histogram_freq=0,
            update_freq="epoch",
            write_graph=tensorboard.write_graph,
            profile_batch=tuple(profile) if isinstance(profile, list) else profile,
        ),
        BatchScalars(run_dir, tensorboard.update_freq),
    ]
    if tensorboard.histogram_freq:
        out.append(Histograms(run_dir, tensorboard.histogram_freq))
    if images is not None:
        out.append(images)
    return out


def make_dataset(
    images: np.ndarray,
    labels: np.ndarray,
    batch_size: int,
    normalize: bool,
    shuffle: bool = False,
    seed: int | None = None,
    epoch: tf.Variable | int = 0,
    augment: AugmentConfig | None = None,
) -> tf.data.Dataset:
    """uint8 images and digit labels -> batches of float32 (N, 28, 28, 1) and one-hot labels.

    Batches are gathered from a shuffled index, so only 47 MB of uint8 pixels are held, not a
    float32 copy. Autotuning is off with fixed parallelism: with it on, `fit` sometimes sat idle
    for about 36 s after its last epoch, waiting for tf.data's autotuning thread to wake up.

    With `shuffle`, each pass's order is a permutation drawn from `seed` and `epoch` alone (a
    variable, such as EpochSeeds.epoch, is read when a pass starts), not from a reshuffling
    iterator's state, which a resumed process would start over.

    With `augment` active (data.augment), each batch is changed by augment.augment_batch with
    draws keyed by `seed`, `epoch` and the batch's number; inactive, the pipeline is the plain
    one, op for op.
    """
    pixels, digits = tf.constant(images), tf.constant(labels)

    def to_batch(index):
        x = tf.cast(tf.gather(pixels, index), tf.float32)
        if normalize:
            x = x / 255.0  # a division, as NumPy does it in data.prepare_images: same floats
        return tf.expand_dims(x, -1), tf.one_hot(tf.gather(digits, index), 10)

    count = len(images)
    dataset = _shuffled(count, seed, epoch) if shuffle else tf.data.Dataset.range(count)
    dataset = dataset.batch(batch_size)
    if augment is not None and augment.active:

        def augmented(number, index):
            x, y = to_batch(index)
            # `epoch` is read as the batch is made: after EpochSeeds has moved it (each epoch's
            # iterator is made after on_epoch_begin, in both fit loops).
            return augment_batch(x, batch_key(seed or 0, epoch, number), augment), y

        dataset = dataset.enumerate().map(augmented, num_parallel_calls=2)
    else:
        dataset = dataset.map(to_batch, num_parallel_calls=2)
    dataset = dataset.prefetch(2)
    options = tf.data.Options()
    options.autotune.enabled = False
    options.deterministic = True
    return dataset.with_options(options)


def _shuffled(count: int, seed: int | None, epoch: tf.Variable | int) -> tf.data.Dataset:
    """Indices 0..count-1 in an order drawn from `seed` and `epoch` alone, each pass."""

    def permutation(_):
        key = tf.stack([tf.constant(seed or 0, tf.int64), tf.cast(epoch, tf.int64)])
        return tf.random.experimental.stateless_shuffle(tf.range(count, dtype=tf.int64), key)

    dataset = tf.data.Dataset.from_tensors(0).map(permutation).unbatch()
    return dataset.apply(tf.data.experimental.assert_cardinality(count))


def train_dataset(
    data: Prepared, training: TrainingConfig, epoch: tf.Variable | int = 0
) -> tf.data.Dataset:
    """The training images in batches of `training.batch_size`, in the order that the seed
    and `epoch` give (EpochSeeds.epoch moves it on each epoch)."""
    return make_dataset(
        data.images_train,
        data.labels_train,
        training.batch_size,
        data.normalize,
        shuffle=training.shuffle,
        seed=training.seed,
        epoch=epoch,
        augment=data.augment,
    )


def fit_callbacks(
    data: Prepared,
    *,
    training: TrainingConfig,
    tensorboard: TensorBoardConfig,
    run_dir: Path | None,
    card: ModelCard | None = None,
    timer: FitTimer | None = None,
    validation: TestValidation | None = None,
    seeds: EpochSeeds | None = None,
) -> list[keras.callbacks.Callback]:
    """The callbacks of either fit loop; with `training.validation: test`, a TestValidation is
    made if none is given (pass one to keep its last predictions)."""
    if training.validation != "test":
        validation = None
    elif validation is None:
        validation = TestValidation(data.x_test, data.labels_test)
    images = None
    if run_dir is not None and tensorboard.enabled and tensorboard.feature_maps:
        images = feature_maps(data, tensorboard, run_dir)
    return callbacks(
        training=training,
        tensorboard=tensorboard,
        run_dir=run_dir,
        card=card,
        timer=timer,
        validation=validation,
        seeds=seeds,
        images=images,
    )


class FeatureMaps(EpochWriter):
    """Once per epoch, to the Images tab: the first convolution's kernels tiled into one image
    (`kernels/layer_<i>`), and every convolution's feature maps for one fixed digit (28x28 in
    [0, 1]), one image per layer (`feature_maps/layer_<i>_<type>`); drawn by network.py, as
    `cnn inspect` draws them. One forward pass of one image per epoch."""

    def __init__(
        self, log_dir: Path, sample: np.ndarray, normalize: bool = True, every: int = 1
    ) -> None:
        super().__init__(log_dir, every)
        self.x = model_input(sample, normalize)

    def write(self, epoch: int) -> None:
        if any(type(layer).__name__ in CONV_TYPES for layer in self.model.layers):
            for tag, image in tensorboard_images(self.model, self.x).items():
                tf.summary.image(tag, image[None], step=epoch)


def feature_maps(data: Prepared, tensorboard: TensorBoardConfig, run_dir: Path) -> FeatureMaps:
    """Kernels and feature maps for test digit `tensorboard.sample_index`, once per epoch."""
    index, count = tensorboard.sample_index, len(data.images_test)
    if index >= count:
        raise ConfigError(
            f"tensorboard.sample_index: {index} is past the {count:,} test images "
            f"in use; pick 0 to {count - 1}, or set tensorboard.feature_maps: false"
        )
    return FeatureMaps(run_dir, data.images_test[index] / np.float32(255), data.normalize)


def fit_history(
    model: keras.Model, history: dict, tensorboard: TensorBoardConfig, run_dir: Path | None
) -> dict:
    """After either fit loop: the model's graph for TensorBoard, and the history as floats."""
    if tensorboard.enabled and tensorboard.write_graph and run_dir is not None:
        write_graph(model, run_dir)
    return {name: [float(v) for v in values] for name, values in history.items()}


def fit(
    model: keras.Model,
    data: Prepared,
    *,
    training: TrainingConfig,
    tensorboard: TensorBoardConfig,
    run_dir: Path | None,
    verbose: int = 1,
    card: ModelCard | None = None,
    timer: FitTimer | None = None,
    validation: TestValidation | None = None,
    extra_callbacks=(),
) -> dict:
    """Train (resuming from `run_dir/backup` if a backup is there); returns this call's history.
    `extra_callbacks` run after the others (they see the validation metrics)."""
    seeds = EpochSeeds()  # each epoch's order and dropout masks, also after a resume
    history = model.fit(
        train_dataset(data, training, seeds.epoch),
        epochs=training.epochs,
        shuffle=False,  # the dataset shuffles itself
        callbacks=[
            *fit_callbacks(
                data,
                training=training,
                tensorboard=tensorboard,
                run_dir=run_dir,
                card=card,
                timer=timer,
                validation=validation,
                seeds=seeds,
            ),
            *extra_callbacks,
        ],
        verbose=verbose,
    )
    return fit_history(model, history.history, tensorboard, run_dir)
