"""Stage 4: fit the model, logging to TensorBoard."""

from __future__ import annotations

from pathlib import Path

import keras
import tensorflow as tf

from cnn_mnist.config import TensorBoardConfig, TrainingConfig
from cnn_mnist.data import Prepared


class BatchScalars(keras.callbacks.Callback):
    """Loss and accuracy every `every` batches, as `batch_loss`, `batch_accuracy`.

    Keras's own `TensorBoard(update_freq=N)` leaves a `record_if(step % N == 0)` in force at
    epoch end (Keras 3.15), which drops the epoch curves and histograms whenever an epoch does
    not end on a multiple of N; so the callback logs per epoch and this one per batch.
    """

    def __init__(self, log_dir: Path, every: int) -> None:
        super().__init__()
        self.log_dir, self.every, self.step, self.writer = log_dir, every, 0, None

    def on_train_begin(self, logs=None):
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


def tensorboard_callbacks(config: TensorBoardConfig, log_dir: Path) -> list[keras.callbacks.Callback]:
    """Epoch curves and weight histograms (Keras), and batch curves every `update_freq` batches."""
    return [
        keras.callbacks.TensorBoard(log_dir=str(log_dir), histogram_freq=config.histogram_freq,
                                    update_freq="epoch", write_graph=config.write_graph),
        BatchScalars(log_dir, config.update_freq),
    ]


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


def fit(model: keras.Model, data: Prepared, training: TrainingConfig,
        tensorboard: TensorBoardConfig, log_dir: Path | None, verbose: int = 1) -> dict:
    """Train; returns Keras's history (metric name -> one value per epoch)."""
    callbacks = []
    if tensorboard.enabled and log_dir is not None:
        callbacks += tensorboard_callbacks(tensorboard, log_dir)
    validation = (data.x_test, data.y_test) if training.validation == "test" else None
    history = model.fit(
        data.x_train, data.y_train,
        batch_size=training.batch_size,
        epochs=training.epochs,
        validation_data=validation,
        shuffle=training.shuffle,
        callbacks=callbacks,
        verbose=verbose,
    )
    if tensorboard.enabled and tensorboard.write_graph and log_dir is not None:
        write_graph(model, log_dir)
    return {name: [float(v) for v in values] for name, values in history.history.items()}
