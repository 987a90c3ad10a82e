"""Runs that cannot work, stopped with one line that says why and what to change.

Before building: a model whose weights, gradients and optimizer slots do not fit in memory, and
a model input that is not the data's image shape. While training: a loss that is not finite.
After evaluation: a model that is no better than always guessing one class. No TensorFlow at
import: the memory check runs before TensorFlow is loaded.
"""

from __future__ import annotations

import datetime
import math
import os
import socket

import numpy as np

from cnn_mnist.core.errors import CnnError, ConfigError

# Float32 copies of the weights that an optimizer keeps per weight (its "slots").
OPTIMIZER_SLOTS = {"adam": 2, "adamw": 2, "rmsprop": 1, "sgd": 0}
BYTES = 4  # float32


class TrainingFailed(CnnError):
    """Training ran but produced nothing usable (a diverging loss, a model at chance)."""


def model_memory(params: int, optimizer: str) -> int:
    """Bytes that training holds per parameter, at the least: the weight, its gradient, the
    optimizer's slots, and the float32 copy that is evaluated and saved."""
    return params * BYTES * (3 + OPTIMIZER_SLOTS.get(optimizer, 2))


def available_memory() -> tuple[int | None, str]:
    """The memory this process may use (bytes, where that figure comes from): the smallest of
    the machine's available memory, the cgroup's limit and the address-space limit."""
    found: list[tuple[int, str]] = []
    try:
        with open("/proc/meminfo", encoding="utf-8") as info:
            for line in info:
                if line.startswith("MemAvailable:"):
                    found.append((int(line.split()[1]) * 1024, "available on this machine"))
    except (OSError, ValueError, IndexError):
        pass
    try:
        limit = open("/sys/fs/cgroup/memory.max", encoding="utf-8").read().strip()
        if limit.isdigit():
            found.append((int(limit), "this container's memory limit"))
    except OSError:
        pass
    try:
        import resource

        soft, _ = resource.getrlimit(resource.RLIMIT_AS)
        if soft != resource.RLIM_INFINITY:
            found.append((soft, "this process's address-space limit (ulimit -v)"))
    except (ImportError, ValueError, OSError):
        pass
    return min(found) if found else (None, "")


def gb(size: float) -> str:
    return f"{size / 1e9:,.1f} GB" if size >= 1e8 else f"{size / 1e6:,.0f} MB"


def check_model_fits(config) -> None:
    """ConfigError if the model's parameters alone (with gradients and the optimizer's slots)
    need more memory than this process has; names the largest layer."""
    from cnn_mnist.config.shapes import infer

    rows, _ = infer(config.model)
    params = sum(r.params for r in rows)
    need = model_memory(params, config.compile.optimizer)
    have, where = available_memory()
    if have is None or need <= have:
        return
    big = max(rows, key=lambda r: r.params)
    layer = config.model.layers[big.index]
    size = ", ".join(
        f"{k} {v:,}" for k, v in layer.model_dump().items() if k in ("units", "filters")
    )
    raise ConfigError(
        f"the model is too large for memory: {params:,} parameters need about {gb(need)} to "
        f"train (weights, gradients, {config.compile.optimizer}'s "
        f"{OPTIMIZER_SLOTS.get(config.compile.optimizer, 2)} slot(s) each), and "
        f"{gb(have)} is {where}. model.layers[{big.index}] ({layer.type}{', ' + size if size else ''}"
        f") holds {big.params:,} of them: make it smaller (`cnn summary` shows each layer's count)"
    )


def out_of_memory(config) -> TrainingFailed:
    """The one line for an allocation that failed while building or training."""
    from cnn_mnist.config.shapes import infer

    have, where = available_memory()
    size = f"{sum(r.params for r in infer(config.model)[0]):,} parameters, "
    limit = f" ({gb(have)} {where})" if have else ""
    return TrainingFailed(
        f"out of memory while training ({size}batch size {config.training.batch_size}"
        f"{limit}): lower training.batch_size (--batch-size), or the model's units and filters"
    )


def check_input_shape(config, image_shape: tuple[int, ...]) -> None:
    """ConfigError if model.input_shape is not the shape of one image of the data."""
    wanted = tuple(config.model.input_shape)
    if wanted != tuple(image_shape):
        show = lambda shape: "x".join(str(s) for s in shape)  # noqa: E731
        raise ConfigError(
            f"model.input_shape is {show(wanted)}, but the data's images are "
            f"{show(image_shape)}; set model.input_shape: {list(image_shape)} (or give the model "
            "data of that shape)"
        )


def chance_level(labels: np.ndarray) -> float:
    """The accuracy of always answering the commonest class of `labels`."""
    if not len(labels):
        return 0.0
    return float(np.bincount(np.asarray(labels, dtype=np.int64)).max() / len(labels))


def at_chance(accuracy: float, labels: np.ndarray, margin: float = 0.01) -> bool:
    """Whether `accuracy` is no better than a constant guess (within `margin`)."""
    return accuracy <= chance_level(labels) + margin


def non_finite_message(value: float, step: int, epoch: int, learning_rate: float | None) -> str:
    rate = f" (learning rate {learning_rate:g})" if learning_rate else ""
    lower = f", e.g. --learning-rate {learning_rate / 10:g}" if learning_rate else ""
    return (
        f"training diverged: the loss became {value} at step {step} of epoch {epoch + 1}"
        f"{rate}; lower compile.learning_rate{lower}, or warm it up with compile.schedule"
    )


def is_finite(value) -> bool:
    try:
        return math.isfinite(float(value))
    except (TypeError, ValueError):
        return True  # not a number: nothing to check


def process_gone(host: str | None, pid, started_at: str | None = None) -> bool:
    """Whether the process that recorded a run (`host`, `pid`) is certainly gone: it ran on
    this machine and no process has that id now, or the one that has it started later."""
    return _process_state(host, pid, started_at) == "gone"


def process_alive(host: str | None, pid, started_at: str | None = None) -> bool:
    """Whether the process that recorded a run is certainly still there: on this machine, with
    that id, and started before the run (not a later process that reused the id)."""
    return _process_state(host, pid, started_at) == "alive"


def _process_state(host: str | None, pid, started_at: str | None) -> str | None:
    """ "gone" or "alive" for a process of this machine; None where that cannot be known (no
    pid, another machine)."""
    if (
        not isinstance(pid, int)
        or isinstance(pid, bool)
        or pid <= 0
        or host != socket.gethostname()
    ):
        return None
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return "gone"
    except OSError:  # PermissionError: it exists, another user's
        pass
    return "gone" if _started_after(pid, started_at) else "alive"


def _started_after(pid: int, started_at: str | None) -> bool:
    """Whether process `pid` started after `started_at` (so it reused the id)."""
    if started_at is None:
        return False
    try:
        ticks = int(
            open(f"/proc/{pid}/stat", encoding="utf-8").read().rsplit(")", 1)[1].split()[19]
        )
        boot = next(
            float(line.split()[1])
            for line in open("/proc/stat", encoding="utf-8")
            if line.startswith("btime")
        )
        began = boot + ticks / os.sysconf("SC_CLK_TCK")
        recorded = datetime.datetime.fromisoformat(started_at).timestamp()
    except (OSError, ValueError, IndexError, StopIteration, TypeError):
        return False
    return began > recorded + 2  # run.json's time has whole seconds
