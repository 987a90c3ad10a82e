"""Run folders and run.json (cnn_mnist/runs.py): ids, the run to resume, the record's states."""

from __future__ import annotations

import json
import time

import pytest

from cnn_mnist import runs
from cnn_mnist.errors import ConfigError


def _run(log_dir, run_id, status=None):
    folder = log_dir / run_id
    folder.mkdir(parents=True)
    (folder / "config.yaml").write_text("{}\n")
    if status:
        (folder / "run.json").write_text(json.dumps({"status": status}))
    return folder


def test_run_ids_sort_by_time_and_differ():
    first = runs.new_run_id()
    time.sleep(1.01)
    second, third = runs.new_run_id(), runs.new_run_id()
    assert first < second and second != third
    assert len(first.split("-")) == 3 and len(first.split("-")[2]) == 4


def test_resume_picks_the_newest_unfinished_run(tmp_path):
    _run(tmp_path, "20260101-000000-aaaa", "interrupted")
    newest_unfinished = _run(tmp_path, "20260102-000000-bbbb", "failed")
    _run(tmp_path, "20260103-000000-cccc", "completed")
    assert runs.find_run_to_resume(tmp_path) == newest_unfinished
    killed = _run(tmp_path, "20260104-000000-dddd")  # no run.json: killed before its first record
    assert runs.find_run_to_resume(tmp_path) == killed
    assert runs.find_run_to_resume(tmp_path, "20260101-000000-aaaa").name.endswith("aaaa")


@pytest.mark.parametrize("run_id, message", [
    ("20990101-000000-ffff", "no such run"),
    ("20260103-000000-cccc", "that run completed"),
])
def test_resume_errors_say_why(tmp_path, run_id, message):
    _run(tmp_path, "20260103-000000-cccc", "completed")
    with pytest.raises(ConfigError, match=message):
        runs.find_run_to_resume(tmp_path, run_id)
    with pytest.raises(ConfigError, match="no unfinished run"):
        runs.find_run_to_resume(tmp_path)


def test_record_goes_from_running_to_completed(tmp_path):
    record = runs.RunRecord(tmp_path, "r1", seed=3)
    record.write()
    assert json.loads((tmp_path / "run.json").read_text())["status"] == "running"
    record.add("data", {"num_train": 10})
    record.complete(metrics={"test_accuracy": 0.5})
    saved = json.loads((tmp_path / "run.json").read_text())
    assert saved["status"] == "completed" and saved["seed"] == 3 and saved["run_id"] == "r1"
    assert saved["data"] == {"num_train": 10} and saved["metrics"]["test_accuracy"] == 0.5
    assert saved["finished_at"] >= saved["started_at"]


@pytest.mark.parametrize("error, status", [(KeyboardInterrupt, "interrupted"),
                                           (RuntimeError("disk on fire"), "failed")])
def test_a_stopped_stage_is_recorded_and_the_error_goes_on(tmp_path, error, status):
    record = runs.RunRecord(tmp_path, "r2")
    with pytest.raises(type(error) if isinstance(error, Exception) else error):
        with record.recording_failures(lambda: 2, {"fit": 1.5}):
            raise error
    saved = json.loads((tmp_path / "run.json").read_text())
    assert saved["status"] == status and saved["epochs_completed"] == 2 and "stopped_at" in saved
    assert runs.read_status(tmp_path) == status
    if status == "failed":
        assert saved["error"] == "disk on fire"
    else:
        assert saved["timings_s"] == {"fit": 1.5}


def test_run_config_comes_back_with_a_new_data_path(tmp_path):
    from cnn_mnist.config import load_config

    import yaml

    (tmp_path / "config.yaml").write_text(yaml.safe_dump(
        load_config(sets=["training.seed=5"]).to_dict()))
    config = runs.load_run_config(tmp_path, "/elsewhere/mnist")
    assert config.training.seed == 5 and config.data.path == "/elsewhere/mnist"


def test_list_runs_newest_first_with_their_results(tmp_path):
    old = _run(tmp_path, "20260101-000000-aaaa", "completed")
    (old / "run.json").write_text(json.dumps({
        "status": "completed", "started_at": "2026-01-01T00:00:00+00:00",
        "config_source": "configs/speedrun.yaml", "metrics": {"test_accuracy": 0.99}}))
    (old / "model.h5").write_bytes(b"model")
    _run(tmp_path, "20260102-000000-bbbb")  # killed before its first record
    (tmp_path / "not-a-run").mkdir()
    found = runs.list_runs(tmp_path)
    assert [r.id for r in found] == ["20260102-000000-bbbb", "20260101-000000-aaaa"]
    new, done = found
    assert (new.status, new.test_accuracy, new.model_path) == ("running", None, None)
    assert (done.status, done.started, done.test_accuracy, done.config, done.model_path,
            done.run_dir) == ("completed", "2026-01-01T00:00:00+00:00", 0.99, "speedrun",
                              old / "model.h5", old)
    assert runs.list_runs(tmp_path / "missing") == []
