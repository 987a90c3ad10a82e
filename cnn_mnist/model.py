"""Stages 2 and 3: build the network from the config's layer list, and compile it."""

from __future__ import annotations

import keras

from cnn_mnist.config import CompileConfig, ModelConfig

OPTIMIZERS = {
    "adam": keras.optimizers.Adam,
    "adamw": keras.optimizers.AdamW,
    "sgd": keras.optimizers.SGD,
    "rmsprop": keras.optimizers.RMSprop,
}


def build_model(config: ModelConfig) -> keras.Model:
    """A Sequential model: each config layer is the Keras layer of that name with those arguments."""
    model = keras.Sequential(name=config.name)
    model.add(keras.Input(shape=tuple(config.input_shape)))
    for layer in config.layers:
        arguments = layer.model_dump(exclude={"type"})
        model.add(getattr(keras.layers, layer.type)(**arguments))
    return model


def compile_model(model: keras.Model, config: CompileConfig) -> keras.Model:
    """Optimizer with its learning rate, loss and metrics, as the config says."""
    optimizer = OPTIMIZERS[config.optimizer](learning_rate=config.learning_rate)
    model.compile(optimizer=optimizer, loss=config.loss, metrics=list(config.metrics))
    return model
