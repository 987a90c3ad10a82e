"""The cluster of a multi-worker run, from `TF_CONFIG`: checked before TensorFlow loads."""

from __future__ import annotations

import json
import os
from collections.abc import Mapping

from cnn_mnist.core.errors import ConfigError


def read_tf_config(environ: Mapping[str, str] | None = None) -> dict:
    """The cluster from `TF_CONFIG`, checked: a clear error instead of a hang or a traceback."""
    raw = (os.environ if environ is None else environ).get("TF_CONFIG")
    example = (
        '{"cluster": {"worker": ["host1:12345", "host2:12345"]}, '
        '"task": {"type": "worker", "index": 0}}'
    )
    if not raw:
        raise ConfigError(
            "training.distribution 'multi_worker' needs the cluster in the "
            f"TF_CONFIG environment variable, for example:\n  TF_CONFIG='{example}'"
        )
    try:
        spec = json.loads(raw)
    except ValueError as exc:
        raise ConfigError(
            f"TF_CONFIG is not valid JSON ({exc}); expected for example '{example}'"
        ) from None
    cluster = spec.get("cluster") if isinstance(spec, dict) else None
    task = spec.get("task") if isinstance(spec, dict) else None
    if (
        not isinstance(cluster, dict)
        or not cluster
        or not all(
            isinstance(v, list) and v and all(isinstance(a, str) and ":" in a for a in v)
            for v in cluster.values()
        )
    ):
        raise ConfigError(
            "TF_CONFIG's 'cluster' must map job names ('chief', 'worker') to lists "
            f"of 'host:port' addresses; got {cluster!r}"
        )
    unknown = sorted(set(cluster) - {"chief", "worker"})
    if unknown:
        raise ConfigError(
            f"TF_CONFIG's cluster has job(s) {unknown}; multi_worker training uses "
            "only 'chief' (at most one) and 'worker'"
        )
    if len(cluster.get("chief", [])) > 1:
        raise ConfigError(f"TF_CONFIG names {len(cluster['chief'])} chiefs; expected at most one")
    if (
        not isinstance(task, dict)
        or task.get("type") not in cluster
        or not isinstance(task.get("index"), int)
        or isinstance(task.get("index"), bool)
        or not 0 <= task["index"] < len(cluster[task["type"]])
    ):
        raise ConfigError(
            f"TF_CONFIG's 'task' must name this process's job and index in the "
            f'cluster, for example {{"type": "worker", "index": 0}}; got '
            f"{task!r} for jobs { {k: len(v) for k, v in cluster.items()} }"
        )
    return spec


def chief_task(spec: dict) -> bool:
    """Whether TF_CONFIG's task is the chief: the 'chief' job if there is one, else worker 0
    (TensorFlow's rule). The chief alone writes what the user sees."""
    cluster, task = spec["cluster"], spec["task"]
    chief = ("chief", 0) if "chief" in cluster else ("worker", 0)
    return (task["type"], task["index"]) == chief
