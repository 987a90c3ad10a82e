"""Each run's settings and final test metrics in TensorBoard's HParams dashboard.

The settings that matter are flattened from the resolved config into one flat dict (the same
for every run, so the dashboard's columns line up): the optimizer, learning rate and schedule,
batch size, epochs, seed, compute dtype, the layer stack as a short string
(`C32-C64-P2-D0.25-F-U128-D0.5-U10`) and its main numbers, the parameter count, the config's
name, the dataset and the sweep. They are written with TensorBoard's own hparams API into the
run folder, whose `evaluation` run holds the metrics `test_loss` and `test_accuracy`.

Only `write_hparams` imports TensorFlow, so `cnn runs` can read the values without it.
"""

from __future__ import annotations

import typing
from pathlib import Path
from typing import Any

METRICS = {"test_accuracy": "test accuracy", "test_loss": "test loss"}  # tag: display name
METRICS_GROUP = "evaluation"  # the run folder's subfolder with the scalars (evaluate.py)

# Main numbers of the layer stack, by position, so every run has the same columns:
# the first convolutions' filters, the hidden Dense layers' units (the output layer's 10 are
# no setting), the dropout rates.
MAIN_NUMBERS = {
    "Conv2D": ("conv", "filters", 3),
    "Dense": ("dense", "units", 2),
    "Dropout": ("dropout", "rate", 3),
}

# Every hparam with its type: the columns of the dashboard.
HPARAMS: dict[str, type] = {
    "config": str,
    "data.dataset": str,
    "sweep": str,
    "compile.optimizer": str,
    "compile.learning_rate": float,
    "compile.schedule": str,
    "training.batch_size": int,
    "training.epochs": int,
    "training.seed": int,
    "compute_dtype": str,
    "model.layers": str,
    "model.params": int,
    "model.kernel_size": int,
    **{
        f"model.{short}{i}.{key}": float if key == "rate" else int
        for short, key, count in MAIN_NUMBERS.values()
        for i in range(1, count + 1)
    },
}

_POOLS = {"MaxPooling2D": "P", "AveragePooling2D": "A"}


def _size(value) -> int:
    """3 or [3, 3] -> 3 (the first side; square kernels are the rule)."""
    return int(value[0] if isinstance(value, (list, tuple)) else value)


def _layer_code(layer: dict) -> str:
    kind = layer["type"]
    if kind == "Conv2D":
        code = f"C{layer['filters']}"
        kernel, strides = _size(layer.get("kernel_size", 3)), _size(layer.get("strides", 1))
        return (
            code + (f"k{kernel}" if kernel != 3 else "") + (f"s{strides}" if strides != 1 else "")
        )
    if kind in _POOLS:
        return f"{_POOLS[kind]}{_size(layer.get('pool_size', 2))}"
    if kind == "Dropout":
        return f"D{layer['rate']:g}"
    if kind == "Dense":
        return f"U{layer['units']}"
    return {"Flatten": "F", "GlobalAveragePooling2D": "G", "BatchNormalization": "B"}.get(
        kind, kind
    )


def layer_stack(layers: list[dict]) -> str:
    """The layers in short: C32 a Conv2D of 32 filters (k5: 5x5 kernels, s2: strides 2; 3x3 and
    1 unless said), P2/A2 max/average pooling, D0.25 dropout, F flatten, G global average
    pooling, B batch normalization, U128 a Dense layer of 128 units."""
    return "-".join(_layer_code(layer) for layer in layers)


def main_numbers(layers: list[dict]) -> dict[str, Any]:
    """conv1.filters, conv2.filters, ..., dense1.units (hidden Dense layers), dropout1.rate, ...;
    and the first convolution's kernel size."""
    out: dict[str, Any] = {}
    seen: dict[str, int] = {}
    hidden = layers[:-1] if layers and layers[-1]["type"] == "Dense" else layers
    for layer in hidden:
        if layer["type"] not in MAIN_NUMBERS:
            continue
        short, key, count = MAIN_NUMBERS[layer["type"]]
        seen[short] = seen.get(short, 0) + 1
        if seen[short] <= count:
            out[f"model.{short}{seen[short]}.{key}"] = layer[key]
        if short == "conv" and seen[short] == 1:
            out["model.kernel_size"] = _size(layer.get("kernel_size", 3))
    return out


def config_name(source: str | None) -> str:
    """`default`, a shipped config's name, or a config file's name without its folder."""
    return Path(source).name if source else "default"


def hparams_of(
    config: dict,
    params: int | None = None,
    compute_dtype: str | None = None,
    source: str | None = None,
    sweep: dict | None = None,
) -> dict[str, Any]:
    """The flat settings of a run from its resolved config (a dict, as in run.json)."""
    compile_, training, layers = config["compile"], config["training"], config["model"]["layers"]
    schedule = compile_.get("schedule")
    values: dict[str, Any] = {
        "config": config_name(source),
        "data.dataset": config.get("data", {}).get("dataset") or "mnist",
        "compile.optimizer": compile_["optimizer"],
        "compile.learning_rate": float(compile_["learning_rate"]),
        "compile.schedule": schedule["type"] if schedule else "constant",
        "training.batch_size": training["batch_size"],
        "training.epochs": training["epochs"],
        "model.layers": layer_stack(layers),
        **main_numbers(layers),
    }
    if training.get("seed") is not None:
        values["training.seed"] = training["seed"]
    if compute_dtype:
        values["compute_dtype"] = compute_dtype.replace("mixed_", "")
    if params is not None:
        values["model.params"] = int(params)
    if sweep and sweep.get("name"):
        values["sweep"] = str(sweep["name"])
    return {key: HPARAMS[key](value) for key, value in values.items() if key in HPARAMS}


def recorded_hparams(log_dir: Path) -> list[dict[str, Any]]:
    """The hparams that the runs in `log_dir` recorded in their run.json (`hparams`)."""
    from cnn_mnist.training.record import read_record

    found = []
    for path in sorted(Path(log_dir).glob("*/run.json")):
        record, _ = read_record(path.parent)
        if record is not None and record.hparams is not None:
            found.append(record.hparams)
    return found


def choices() -> dict[str, list[str]]:
    """The text hparams whose every value the schema knows, with those values."""

    from cnn_mnist.config.schema import CompileConfig, DataConfig, ScheduleConfig

    def options(model, field: str, default: tuple = ()) -> list[str]:
        info = model.model_fields.get(field)
        return [str(v) for v in typing.get_args(info.annotation)] if info else list(default)

    return {
        "compile.optimizer": options(CompileConfig, "optimizer"),
        "compile.schedule": ["constant", *options(ScheduleConfig, "type")],
        "compute_dtype": ["float32", "bfloat16", "float16"],
        "data.dataset": options(DataConfig, "dataset", ("mnist",)) or ["mnist"],
    }


def _domains(runs: list[dict[str, Any]]) -> dict[str, Any]:
    """Each hparam's domain: the schema's choices; no list for open text (a config's name, the
    layer stack), which one run cannot know; for numbers, the range over the runs.

    The dashboard reads the columns of one run (whichever it finds first, often the oldest), so
    every run writes all of them, and a list of values must hold all there can be: its filter
    offers only those. A range filters nothing: TensorBoard 2.21 starts its filters open."""
    from tensorboard.plugins.hparams import api as hp

    known = choices()
    domains = {}
    for name, kind in HPARAMS.items():
        seen = [run[name] for run in runs if isinstance(run.get(name), (int, float, str))]
        if kind is str:
            values = known.get(name, [])
            domains[name] = hp.Discrete(
                values + sorted({str(v) for v in seen} - set(values)) if values else [], dtype=str
            )
        elif kind is int:
            ints = [int(v) for v in seen] or [0]
            domains[name] = hp.IntInterval(min(ints), max(ints))
        else:
            floats = [float(v) for v in seen] or [0.0]
            domains[name] = hp.RealInterval(min(floats), max(floats))
    return domains


def write_hparams(run_dir: Path, values: dict[str, Any], log_dir: Path | None = None) -> None:
    """The run's hparams (a session named by the run id) and the experiment's columns and
    metrics, into the run folder's own event file."""
    import tensorflow as tf
    from tensorboard.plugins.hparams import api as hp

    others = recorded_hparams(log_dir or run_dir.parent)
    domains = _domains([*others, values])
    columns = [hp.HParam(name, domains[name]) for name in HPARAMS]
    metrics = [
        hp.Metric(tag, group=METRICS_GROUP, display_name=shown) for tag, shown in METRICS.items()
    ]
    writer = tf.summary.create_file_writer(str(run_dir))
    with writer.as_default():
        hp.hparams_config(hparams=columns, metrics=metrics)
        hp.hparams(values, trial_id=run_dir.name)
    writer.close()
