"""Stage 4: fit the model, logging to TensorBoard, with backups to resume from."""

from __future__ import annotations

import json
import math
import os
from pathlib import Path

import keras
import tensorflow as tf

from cnn_mnist.config import CheckpointConfig, TensorBoardConfig, TrainingConfig
from cnn_mnist.data import Prepared


class BatchScalars(keras.callbacks.Callback):
    """Loss and accuracy every `every` batches, as `batch_loss`, `batch_accuracy`.

    Keras's own `TensorBoard(update_freq=N)` leaves a `record_if(step % N == 0)` in force at
    epoch end (Keras 3.15), which drops the epoch curves and histograms whenever an epoch does
    not end on a multiple of N; so that callback logs per epoch and this one per batch. The step
    is the optimizer's iteration count, so a resumed run continues its curves without a jump.
    """

    def __init__(self, log_dir: Path, every: int) -> None:
        super().__init__()
        self.log_dir, self.every, self.step, self.writer = log_dir, every, 0, None

    def on_train_begin(self, logs=None):
        self.step = int(self.model.optimizer.iterations.numpy())
        self.writer = tf.summary.create_file_writer(str(self.log_dir / "train"))

    def on_train_batch_end(self, batch, logs=None):
        self.step += 1
        if self.step % self.every == 0 and logs:
            with self.writer.as_default(step=self.step):
                for name, value in logs.items():
                    tf.summary.scalar(f"batch_{name}", float(value))

    def on_train_end(self, logs=None):
        if self.writer is not None:
            self.writer.close()


class EpochLog(keras.callbacks.Callback):
    """One JSON line per finished epoch: the run's history survives interrupts and resumes.

    Appended and fsync'd rather than rewritten: a kill mid-write costs at most a partial last
    line, which `read_epochs` skips.
    """

    def __init__(self, path: Path) -> None:
        super().__init__()
        self.path = path

    def on_epoch_end(self, epoch, logs=None):
        line = json.dumps({"epoch": epoch, **{k: float(v) for k, v in (logs or {}).items()}})
        with self.path.open("a", encoding="utf-8") as fh:
            fh.write(line + "\n")
            fh.flush()
            os.fsync(fh.fileno())


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

    def __init__(self, config: CheckpointConfig, path: Path, metadata: dict,
                 history: list[dict]) -> None:
        super().__init__()
        self.monitor, self.path, self.metadata = config.monitor, path, metadata
        self.better = (lambda a, b: a < b) if config.monitor.endswith("loss") else (lambda a, b: a > b)
        previous = [e[self.monitor] for e in history if self.monitor in e]
        self.best = None
        for value in previous:  # a resumed run remembers its best epoch
            if self.best is None or self.better(value, self.best):
                self.best = value

    def on_epoch_end(self, epoch, logs=None):
        from cnn_mnist.save import save_model

        value = (logs or {}).get(self.monitor)
        if value is None or math.isnan(value):
            return
        if self.best is None or self.better(value, self.best):
            self.best = float(value)
            save_model(self.model, self.path, {**self.metadata, "epoch": epoch, self.monitor: value})


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


def callbacks(training: TrainingConfig, tensorboard: TensorBoardConfig, run_dir: Path | None,
              metadata: dict | None = None) -> list[keras.callbacks.Callback]:
    """Backup (first, so the others see the restored state), history, TensorBoard, stopping."""
    out: list[keras.callbacks.Callback] = []
    if run_dir is not None:
        # Kept after fit (delete_checkpoint=False): the pipeline removes it once the run is
        # recorded as completed, so an interrupt during evaluation or saving still resumes.
        out.append(keras.callbacks.BackupAndRestore(str(run_dir / "backup"), save_freq="epoch",
                                                    double_checkpoint=True,
                                                    delete_checkpoint=False))
        out.append(EpochLog(run_dir / "epochs.jsonl"))
        if training.checkpoint:
            out.append(BestModel(training.checkpoint, run_dir / "best.h5", metadata or {},
                                 read_epochs(run_dir / "epochs.jsonl")))
        if tensorboard.enabled:
            out.append(keras.callbacks.TensorBoard(
                log_dir=str(run_dir), histogram_freq=tensorboard.histogram_freq,
                update_freq="epoch", write_graph=tensorboard.write_graph))
            out.append(BatchScalars(run_dir, tensorboard.update_freq))
    if training.early_stopping:
        stop = training.early_stopping
        out.append(keras.callbacks.EarlyStopping(
            monitor=stop.monitor, patience=stop.patience, min_delta=stop.min_delta,
            restore_best_weights=stop.restore_best_weights, verbose=0))
    return out


def fit(model: keras.Model, data: Prepared, training: TrainingConfig,
        tensorboard: TensorBoardConfig, run_dir: Path | None, verbose: int = 1,
        metadata: dict | None = None) -> dict:
    """Train (resuming from `run_dir/backup` if a backup is there); returns this call's history."""
    validation = (data.x_test, data.y_test) if training.validation == "test" else None
    history = model.fit(
        data.x_train, data.y_train,
        batch_size=training.batch_size,
        epochs=training.epochs,
        validation_data=validation,
        shuffle=training.shuffle,
        callbacks=callbacks(training, tensorboard, run_dir, metadata),
        verbose=verbose,
    )
    if tensorboard.enabled and tensorboard.write_graph and run_dir is not None:
        write_graph(model, run_dir)
    return {name: [float(v) for v in values] for name, values in history.history.items()}
