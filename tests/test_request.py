"""`cnn train`'s options resolved (cnn_mnist/training/request.py): the config to train with and
the run to resume, before TensorFlow is imported."""

from __future__ import annotations

import json
import logging

import pytest
import yaml

from cnn_mnist.core.errors import ConfigError
from cnn_mnist.training.request import TrainRequest, request
from tests.conftest import write_run_record

OLD, NEW = "20261101-090000-aaaa", "20261102-093000-bbbb"


def test_the_options_given_override_the_config_and_the_others_leave_it(tiny_config_file):
    wanted = request(
        str(tiny_config_file),
        sets=("training.batch_size=16",),
        overrides={"training.epochs": 3, "training.seed": None},
    )
    assert wanted == TrainRequest(wanted.config)  # a new run: nothing to resume
    training = wanted.config.training
    assert (training.epochs, training.batch_size, training.seed) == (3, 16, 7)


def test_a_sweep_section_is_trained_as_it_is(tmp_path, tiny_config_file, caplog):
    config = yaml.safe_load(tiny_config_file.read_text())
    config["sweep"] = {"parameters": {"compile.learning_rate": {"values": [0.01, 0.001]}}}
    swept = tmp_path / "swept.yaml"
    swept.write_text(yaml.safe_dump(config))
    logger = logging.getLogger("cnn_mnist")  # caplog's own handler: the CLI stops propagation
    logger.addHandler(caplog.handler)
    try:
        with caplog.at_level(logging.INFO, logger="cnn_mnist"):
            wanted = request(str(swept))
    finally:
        logger.removeHandler(caplog.handler)
    assert wanted.config.sweep is None and "sweep" not in wanted.config.to_dict()
    assert "`cnn sweep` runs the search" in caplog.text


def test_resume_takes_the_runs_own_config_with_a_new_data_path(tmp_path, tiny_config_file):
    logs = tmp_path / "logs"
    source = str(tiny_config_file)
    write_run_record(logs, OLD, status="interrupted", source=source)
    run_dir = write_run_record(
        logs, NEW, status="failed", source=source, changes={"training.epochs": 5}
    )
    moved = tmp_path / "elsewhere"
    wanted = request(source, resume="", overrides={"data.path": str(moved)})
    assert wanted.resume == run_dir and wanted.own_config  # the most recent unfinished run
    assert wanted.config.training.epochs == 5 and wanted.config.training.seed == 42
    assert wanted.config.data.path == str(moved)
    # A run named, on other hardware: its config, with the distribution asked for.
    wanted = request(source, resume=OLD, overrides={"training.distribution": "mirrored"})
    assert wanted.resume == logs / OLD and wanted.config.training.epochs == 2
    assert wanted.config.training.distribution == "mirrored"


def test_resume_refuses_a_completed_run_and_an_unknown_one(tmp_path, tiny_config_file):
    write_run_record(tmp_path / "logs", OLD, source=str(tiny_config_file))
    with pytest.raises(ConfigError, match="that run completed; nothing to resume"):
        request(str(tiny_config_file), resume=OLD)
    with pytest.raises(ConfigError, match="no unfinished run"):
        request(str(tiny_config_file), resume="")
    with pytest.raises(ConfigError, match="--resume nope: no such run"):
        request(str(tiny_config_file), resume="nope")


def test_another_worker_resumes_what_the_chief_sends(tiny_config_file, monkeypatch):
    """A multi-worker run's other worker looks for no run of its own: the chief finds it."""
    cluster = {"cluster": {"worker": ["localhost:1", "localhost:2"]}, "task": {}}
    overrides = {"training.distribution": "multi_worker"}
    monkeypatch.setenv("TF_CONFIG", json.dumps({**cluster, "task": {"type": "worker", "index": 1}}))
    wanted = request(str(tiny_config_file), resume="", overrides=overrides)
    assert wanted.resume is None and not wanted.own_config
    assert wanted.config.training.distribution == "multi_worker"
    monkeypatch.setenv("TF_CONFIG", json.dumps({**cluster, "task": {"type": "worker", "index": 0}}))
    with pytest.raises(ConfigError, match="no unfinished run"):  # the chief looks for it
        request(str(tiny_config_file), resume="", overrides=overrides)
