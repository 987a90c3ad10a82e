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


def learning_rate(config: CompileConfig, total_steps: int):
    """The constant learning rate, or a Keras schedule over `total_steps` optimizer steps."""
    schedule = config.schedule
    if schedule is None:
        return config.learning_rate
    total_steps = max(1, total_steps)
    if schedule.type == "cosine":
        return keras.optimizers.schedules.CosineDecay(
            config.learning_rate, decay_steps=total_steps, alpha=schedule.end_factor)
    warmup = int(round(schedule.warmup * total_steps))
    return keras.optimizers.schedules.CosineDecay(
        config.learning_rate * schedule.start_factor, decay_steps=max(1, total_steps - warmup),
        alpha=schedule.end_factor, warmup_target=config.learning_rate, warmup_steps=warmup)


def compile_model(model: keras.Model, config: CompileConfig, total_steps: int = 1) -> keras.Model:
    """Optimizer with its learning rate (or schedule over `total_steps`), loss and metrics."""
    optimizer = OPTIMIZERS[config.optimizer](learning_rate=learning_rate(config, total_steps))
    model.compile(optimizer=optimizer, loss=config.loss, metrics=list(config.metrics))
    return model
