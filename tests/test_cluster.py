"""TF_CONFIG, read and checked without TensorFlow (cnn_mnist/training/cluster.py)."""

from __future__ import annotations

import pytest

from cnn_mnist.core.errors import ConfigError
from cnn_mnist.training.cluster import chief_task, read_tf_config


def test_tf_config_missing_names_the_variable_and_shows_an_example():
    with pytest.raises(ConfigError, match="TF_CONFIG environment variable.*for example"):
        read_tf_config({})


@pytest.mark.parametrize(
    "raw, message",
    [
        ("{not json", "not valid JSON"),
        ('{"cluster": {}, "task": {"type": "worker", "index": 0}}', "'cluster' must map"),
        (
            '{"cluster": {"worker": ["no-port"]}, "task": {"type": "worker", "index": 0}}',
            "'host:port'",
        ),
        (
            '{"cluster": {"ps": ["a:1"], "worker": ["b:1"]}, "task": {"type": "worker", "index": 0}}',
            r"job\(s\) \['ps'\]",
        ),
        (
            '{"cluster": {"chief": ["a:1", "b:1"]}, "task": {"type": "chief", "index": 0}}',
            "2 chiefs",
        ),
        (
            '{"cluster": {"worker": ["a:1", "b:1"]}, "task": {"type": "worker", "index": 2}}',
            "'task' must name this process's job and index",
        ),
        (
            '{"cluster": {"worker": ["a:1"]}, "task": {"type": "chief", "index": 0}}',
            "'task' must name",
        ),
    ],
)
def test_bad_tf_config_is_a_config_error(raw, message):
    with pytest.raises(ConfigError, match=message):
        read_tf_config({"TF_CONFIG": raw})


def test_the_chief_is_the_chief_job_else_worker_0():
    workers = {"worker": ["a:1", "b:1"]}
    assert chief_task({"cluster": workers, "task": {"type": "worker", "index": 0}})
    assert not chief_task({"cluster": workers, "task": {"type": "worker", "index": 1}})
    with_chief = {"chief": ["c:1"], **workers}
    assert chief_task({"cluster": with_chief, "task": {"type": "chief", "index": 0}})
    assert not chief_task({"cluster": with_chief, "task": {"type": "worker", "index": 0}})
