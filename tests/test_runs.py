"""Run folders (cnn_mnist/tools/runs.py) and run.json (training/record.py): ids, the run to
resume, the record's states."""

from __future__ import annotations

import json
import time

import pytest

from cnn_mnist.core.errors import ConfigError
from cnn_mnist.core.stamps import new_run_id
from cnn_mnist.tools import runs
from cnn_mnist.training.record import (
    RunRecord,
    find_run_to_resume,
    load_run_config,
    read_status,
    recorded_source,
)


def _run(log_dir, run_id, status=None):
    folder = log_dir / run_id
    folder.mkdir(parents=True)
    (folder / "config.yaml").write_text("{}\n")
    if status:
        (folder / "run.json").write_text(json.dumps({"status": status}))
    return folder


def test_run_ids_sort_by_time_and_differ():
    first = new_run_id()
    time.sleep(1.01)
    second, third = new_run_id(), new_run_id()
    assert first < second and second != third
    assert len(first.split("-")) == 3 and len(first.split("-")[2]) == 4


def test_resume_picks_the_newest_unfinished_run(tmp_path):
    _run(tmp_path, "20260101-000000-aaaa", "interrupted")
    newest_unfinished = _run(tmp_path, "20260102-000000-bbbb", "failed")
    _run(tmp_path, "20260103-000000-cccc", "completed")
    assert find_run_to_resume(tmp_path) == newest_unfinished
    killed = _run(tmp_path, "20260104-000000-dddd")  # no run.json: killed before its first record
    assert find_run_to_resume(tmp_path) == killed
    assert find_run_to_resume(tmp_path, "20260101-000000-aaaa").name.endswith("aaaa")


@pytest.mark.parametrize(
    "run_id, message",
    [
        ("20990101-000000-ffff", "no such run"),
        ("20260103-000000-cccc", "that run completed"),
    ],
)
def test_resume_errors_say_why(tmp_path, run_id, message):
    _run(tmp_path, "20260103-000000-cccc", "completed")
    with pytest.raises(ConfigError, match=message):
        find_run_to_resume(tmp_path, run_id)
    with pytest.raises(ConfigError, match="no unfinished run"):
        find_run_to_resume(tmp_path)


def test_record_goes_from_running_to_completed(tmp_path):
    record = RunRecord(tmp_path, "r1", seed=3)
    record.write()
    assert json.loads((tmp_path / "run.json").read_text())["status"] == "running"
    record.add("data", {"num_train": 10})
    record.complete(metrics={"test_accuracy": 0.5})
    saved = json.loads((tmp_path / "run.json").read_text())
    assert saved["status"] == "completed" and saved["seed"] == 3 and saved["run_id"] == "r1"
    assert saved["data"] == {"num_train": 10} and saved["metrics"]["test_accuracy"] == 0.5
    assert saved["finished_at"] >= saved["started_at"]


@pytest.mark.parametrize(
    "error, status", [(KeyboardInterrupt, "interrupted"), (RuntimeError("disk on fire"), "failed")]
)
def test_a_stopped_stage_is_recorded_and_the_error_goes_on(tmp_path, error, status):
    record = RunRecord(tmp_path, "r2")
    with pytest.raises(type(error) if isinstance(error, Exception) else error):
        with record.recording_failures(lambda: 2, {"fit": 1.5}):
            raise error
    saved = json.loads((tmp_path / "run.json").read_text())
    assert saved["status"] == status and saved["epochs_completed"] == 2 and "stopped_at" in saved
    assert read_status(tmp_path) == status
    if status == "failed":
        assert saved["error"] == "disk on fire"
    else:
        assert saved["timings_s"] == {"fit": 1.5}


def test_run_config_comes_back_with_a_new_data_path(tmp_path):
    import yaml

    from cnn_mnist.config.load import load_config

    (tmp_path / "config.yaml").write_text(
        yaml.safe_dump(load_config(sets=["training.seed=5"]).to_dict())
    )
    config = load_run_config(tmp_path, "/elsewhere/mnist")
    assert config.training.seed == 5 and config.data.path == "/elsewhere/mnist"


# --- cnn runs: the runs in logs/fit/ -----------------------------------------------------------

import os  # noqa: E402
import subprocess  # noqa: E402
import sys  # noqa: E402
from pathlib import Path  # noqa: E402

from click.testing import CliRunner  # noqa: E402

from cnn_mnist.cli import cli  # noqa: E402
from tests.conftest import REPO, write_run_record  # noqa: E402

OLD, MID, NEW = "20261101-090000-aaaa", "20261102-093000-bbbb", "20261103-100000-cccc"


@pytest.fixture
def log_dir(tmp_path, monkeypatch) -> Path:
    """Three finished runs of the default config (the newest with two changes), one failed,
    one interrupted, one still running, and a folder with a corrupt run.json."""
    monkeypatch.chdir(tmp_path)  # the stable model path is relative, as cnn train writes it
    logs = tmp_path / "logs" / "fit"
    write_run_record(logs, OLD, accuracy=0.9810, loss=0.0610)
    write_run_record(logs, MID, accuracy=0.9850, loss=0.0480, f1=0.95)
    write_run_record(
        logs,
        NEW,
        accuracy=0.9832,
        loss=0.0450,
        changes={"compile.learning_rate": 0.003, "model.layers[3].rate": 0.3},
    )
    write_run_record(
        logs,
        "20261104-080000-dddd",
        status="failed",
        error="loss is NaN",
        stopped_at="2026-11-04T08:00:30+00:00",
        epochs_completed=0,
    )
    write_run_record(
        logs,
        "20261105-080000-eeee",
        status="interrupted",
        epochs_completed=1,
        stopped_at="2026-11-05T08:01:00+00:00",
    )
    write_run_record(logs, "20261106-080000-ffff", status="running")
    (logs / "20261107-080000-0000").mkdir()
    (logs / "20261107-080000-0000" / "run.json").write_text('{"status": "comp')
    return logs


def _cnn(*args, input=None):  # noqa: A002 - CliRunner.invoke's own name
    return CliRunner().invoke(cli, list(args), input=input)


def test_list_runs_reads_every_kind_of_run_folder(log_dir):
    listed = runs.list_runs(log_dir)
    assert [r.id for r in listed] == sorted((p.name for p in log_dir.iterdir()), reverse=True)
    by_id = {r.id: r for r in listed}
    assert by_id["20261107-080000-0000"].status == runs.CORRUPT
    assert "not valid JSON" in by_id["20261107-080000-0000"].problem
    assert by_id["20261104-080000-dddd"].status == "failed"
    assert by_id["20261104-080000-dddd"].problem == "loss is NaN"
    assert by_id["20261104-080000-dddd"].duration_s == 30
    assert by_id["20261105-080000-eeee"].epochs_done == 1
    assert by_id["20261106-080000-ffff"].duration_s > 60  # running since 2026-11-06: until now
    new = by_id[NEW]
    assert (new.status, new.test_accuracy, new.test_loss, new.epochs, new.config) == (
        "completed",
        0.9832,
        0.0450,
        1,
        "default",
    )
    # Only what differs from the default config (the seed, drawn for a null one, is not).
    assert new.differences == ("model.layers[3].rate=0.3", "compile.learning_rate=0.003")
    assert by_id[OLD].differences == () and by_id[OLD].model_path == log_dir / OLD / "model.h5"
    assert by_id[OLD].started == "2026-11-01T09:00:00+00:00" and by_id[OLD].duration_s == 51.5


def test_differences_are_from_the_named_config_or_the_default_if_it_is_gone(tmp_path):
    logs = tmp_path / "fit"
    write_run_record(logs, OLD, source="speedrun", changes={"training.batch_size": 64})
    mine = tmp_path / "mine.yaml"
    mine.write_text("training: {epochs: 2}\n")
    write_run_record(logs, MID, source=str(mine))
    mine.unlink()  # gone since: compared to the default
    by_id = {r.id: r for r in runs.list_runs(logs)}
    assert by_id[OLD].differences == ("training.batch_size=64",)
    assert by_id[OLD].compared_to == "speedrun"
    assert by_id[MID].differences == ("training.epochs=2",) and by_id[MID].compared_to == "default"


def test_a_run_with_an_odd_run_json_is_listed_as_corrupt(tmp_path):
    folder = tmp_path / "fit" / OLD
    folder.mkdir(parents=True)
    (folder / "run.json").write_text(json.dumps({"status": "completed", "metrics": [1, 2]}))
    (tmp_path / "fit" / MID).mkdir()
    (tmp_path / "fit" / MID / "config.yaml").write_text("{}\n")
    listed = {r.id: r for r in runs.list_runs(tmp_path / "fit")}
    assert listed[OLD].status == runs.CORRUPT and "unexpected contents" in listed[OLD].problem
    assert listed[MID].status == runs.NO_RECORD and "no run.json" in listed[MID].problem
    assert runs.list_runs(tmp_path / "nothing-here") == []


def test_run_ids_by_unique_prefix(log_dir):
    assert runs.find_run(log_dir, "20261103") == log_dir / NEW
    assert runs.find_run(log_dir, NEW) == log_dir / NEW
    with pytest.raises(ConfigError, match="ambiguous: 7 runs start with it"):
        runs.find_run(log_dir, "2026")
    with pytest.raises(ConfigError, match="no run 'zz'"):
        runs.find_run(log_dir, "zz")


def test_best_by_accuracy_or_by_loss_among_completed_runs(log_dir):
    assert runs.best_run(log_dir).id == MID
    assert runs.best_run(log_dir, "test_loss").id == NEW
    empty = log_dir.parent / "other"
    write_run_record(empty, OLD, status="failed")
    with pytest.raises(ConfigError, match="no completed run"):
        runs.best_run(empty)


def test_compare_shows_only_what_differs(log_dir):
    comparison = runs.compare_runs([log_dir / OLD, log_dir / NEW])
    assert comparison.settings == {
        "model.layers[3].rate": (0.25, 0.3),
        "compile.learning_rate": (0.001, 0.003),
    }
    assert comparison.f1[0][0] == pytest.approx(0.9) and comparison.f1[1][9] == pytest.approx(0.81)


def test_cnn_runs_lists_newest_first(log_dir):
    result = _cnn("runs")
    assert result.exit_code == 0, result.output
    lines = result.output.splitlines()
    assert lines[0].split()[:4] == ["ID", "STATUS", "STARTED", "TIME"]
    assert lines[1].startswith("20261107-080000-0000  corrupt")
    new = next(line for line in lines if line.startswith(NEW))
    assert "2026-11-03 10:00" in new and "0.9832" in new and "1/1" in new
    assert "model.layers[3].rate=0.3, compile.learning_rate=0.003" in new
    assert f"logs/fit/{NEW}/model.h5" in new
    assert [line.split()[1] for line in lines[1:]] == [
        "corrupt",
        "running",
        "interrupted",
        "failed",
        "completed",
        "completed",
        "completed",
    ]
    assert _cnn("runs", "-q").output.split() == sorted(os.listdir(log_dir), reverse=True)


def test_cnn_runs_json(log_dir):
    result = _cnn("runs", "--json")
    listed = json.loads(result.output)
    assert [r["id"] for r in listed][:2] == ["20261107-080000-0000", "20261106-080000-ffff"]
    new = next(r for r in listed if r["id"] == NEW)
    assert {k: new[k] for k in ("status", "test_accuracy", "config")} == {
        "status": "completed",
        "test_accuracy": 0.9832,
        "config": "default",
    }
    assert new["differences"] == ["model.layers[3].rate=0.3", "compile.learning_rate=0.003"]


def test_cnn_runs_show(log_dir):
    result = _cnn("runs", "show", "20261103")
    assert result.exit_code == 0, result.output
    out = result.output
    assert f"Run       {NEW} (completed)" in out
    assert "differs: model.layers[3].rate=0.3, compile.learning_rate=0.003" in out
    assert "layers=C32-C64-P2-D0.3-F-U128-D0.5-U10" in out and "learning_rate=0.003" in out
    assert "accuracy 0.9832, loss 0.0450" in out and "9: 0.810" in out
    assert "epoch  loss" in out and "total 51.5s" in out and "  model.h5" in out
    failed = _cnn("runs", "show", "20261104").output
    assert "Problem   loss is NaN" in failed


def test_cnn_runs_compare_and_best(log_dir):
    result = _cnn("runs", "compare", OLD, "20261103")
    assert result.exit_code == 0, result.output
    rows = {
        line.split()[0] + (" " + line.split()[1] if line.startswith("F1") else ""): line.split()[
            -2:
        ]
        for line in result.output.splitlines()[1:]
    }
    assert rows["compile.learning_rate"] == ["0.001", "0.003"]
    assert rows["model.layers[3].rate"] == ["0.25", "0.3"]
    assert "training.batch_size" not in rows  # the same in both
    assert rows["F1 9"] == ["0.810", "0.810"] and result.output.count("\ntest loss") == 1
    assert _cnn("runs", "compare", OLD).exit_code == 2
    best = _cnn("runs", "best", "--metric", "test_loss")
    assert best.exit_code == 0 and best.output.startswith(f"{NEW}  test_loss 0.0450")
    assert json.loads(_cnn("runs", "best", "--json").output)["id"] == MID


def test_cnn_runs_rm_asks_first_and_keeps_the_published_model(log_dir):
    assert _cnn("runs", "rm", OLD, input="n\n").exit_code == 1
    assert (log_dir / OLD).is_dir()
    result = _cnn("runs", "rm", OLD, input="y\n")
    assert result.exit_code == 0 and "Remove run 20261101-090000-aaaa (completed" in result.output
    assert not (log_dir / OLD).exists()
    stable = Path("models/digits_recognition_cnn.h5")  # the stable path, a hard link
    stable.parent.mkdir()
    os.link(log_dir / MID / "model.h5", stable)
    refused = _cnn("runs", "rm", MID, "--yes")
    assert (
        refused.exit_code == 2
        and "is the one at models/digits_recognition_cnn.h5" in refused.output
        and (log_dir / MID).is_dir()
    )
    assert f"* models/digits_recognition_cnn.h5 is run {MID}'s model" in _cnn("runs").output
    assert _cnn("runs", "rm", MID, "--yes", "--force").exit_code == 0
    assert not (log_dir / MID).exists() and stable.read_bytes().startswith(b"not really")
    assert _cnn("runs", "rm", "20261106", "--yes").exit_code == 2  # marked running


@pytest.mark.parametrize(
    "args, message",
    [
        (["runs", "show", "2026"], "ambiguous"),
        (["runs", "show", "nope"], "no run 'nope'"),
        (["runs", "rm", "nope", "--yes"], "no run 'nope'"),
        (["runs", "compare", "nope", "2026"], "no run 'nope'"),
    ],
)
def test_bad_run_ids_are_one_line_errors(log_dir, args, message):
    result = _cnn(*args)
    assert result.exit_code == 2 and message in result.output
    assert result.output.startswith("error: ") and len(result.output.splitlines()) == 1


@pytest.mark.parametrize(
    "command", [["runs"], ["runs", "--json"], ["runs", "best"], ["runs", "show", "x"]]
)
def test_no_runs_yet_is_an_error(tmp_path, command):
    (tmp_path / "empty").mkdir()
    for folder in ("empty", "missing"):
        result = _cnn(*command, "--logdir", str(tmp_path / folder))
        assert result.exit_code == 2
        assert (
            result.output == f"error: no runs in {tmp_path / folder}/ yet: run `cnn train` "
            "first, or pass --logdir\n"
        )


def test_the_group_logdir_reaches_the_subcommands(log_dir, tmp_path):
    other = tmp_path / "elsewhere"
    write_run_record(other, "20990101-000000-9999")
    result = _cnn("runs", "--logdir", str(other), "show", "2099")
    assert result.exit_code == 0 and "20990101-000000-9999" in result.output


def test_cnn_runs_never_imports_tensorflow(log_dir):
    """Reading runs is json and yaml: every subcommand, in a fresh process."""
    script = (
        "import sys\n"
        "from click.testing import CliRunner\n"
        "from cnn_mnist.cli import cli\n"
        f"for args in (['runs'], ['runs', '--json'], ['runs', 'show', '{NEW}'],\n"
        f"             ['runs', 'compare', '{OLD}', '{NEW}'], ['runs', 'best'],\n"
        f"             ['runs', 'rm', '{OLD}', '--yes']):\n"
        "    result = CliRunner().invoke(cli, args)\n"
        "    assert result.exit_code == 0, (args, result.output)\n"
        "heavy = sorted(m for m in ('tensorflow', 'keras', 'tensorboard') if m in sys.modules)\n"
        "print('imported:', heavy)\n"
    )
    env = dict(os.environ, PYTHONPATH=str(REPO))
    done = subprocess.run(
        [sys.executable, "-c", script],
        cwd=log_dir.parent.parent,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "imported: []"


def test_a_resumed_run_keeps_the_config_it_was_started_from(log_dir):
    assert recorded_source(log_dir / OLD) == "default"
    speedrun = write_run_record(log_dir.parent / "more", OLD, source="speedrun")
    assert recorded_source(speedrun) == "speedrun"
    assert recorded_source(log_dir / "20261107-080000-0000") is None


def test_a_corrupt_run_shows_compares_and_keeps_a_published_model(log_dir):
    corrupt = log_dir / "20261107-080000-0000"
    shown = _cnn("runs", "show", "20261107")
    assert shown.exit_code == 0 and "Problem   run.json is not valid JSON" in shown.output
    compared = _cnn("runs", "compare", OLD, NEW, "20261107").output.splitlines()
    assert compared[1].split() == ["config", "default", "default", "?"]
    assert compared[2].split() == ["model.layers[3].rate", "0.25", "0.3", "?"]
    assert compared[3].split() == ["compile.learning_rate", "0.001", "0.003", "?"]
    assert compared[4].split()[0] == "status"  # the other settings are the same
    (corrupt / "model.h5").write_bytes(b"a model")
    Path("models").mkdir()
    os.link(corrupt / "model.h5", "models/digits_recognition_cnn.h5")  # the default stable path
    assert _cnn("runs", "rm", "20261107", "--yes").exit_code == 2 and corrupt.is_dir()


def test_a_run_training_now_is_not_removed_even_with_force(tmp_path):
    """`cnn runs rm --force` on a run training in this very process (alive, on this host, and
    started before it) is refused; once its process is gone, --force removes it."""
    import socket

    from cnn_mnist.core.stamps import now
    from tests.conftest import write_run_record

    logs = tmp_path / "logs"
    folder = write_run_record(
        logs,
        "20261101-000000-live",
        status="running",
        host=socket.gethostname(),
        pid=os.getpid(),
        started_at=now(),  # after this process started, as its own run's would be
    )
    for extra in ([], ["--force"]):
        refused = _cnn("runs", "--logdir", str(logs), "rm", "20261101-000000-live", "--yes", *extra)
        assert refused.exit_code == 2 and "is training now (process" in refused.output
        assert f"kill {os.getpid()}" in refused.output and folder.is_dir()
    record = json.loads((folder / "run.json").read_text())
    record["pid"] = 2**22 + 12345  # above Linux's largest pid: certainly gone
    (folder / "run.json").write_text(json.dumps(record))
    removed = _cnn("runs", "--logdir", str(logs), "rm", "20261101-000000-live", "--yes", "--force")
    assert removed.exit_code == 0 and not folder.exists()
