"""`cnn sweep`: real trials on a slice of real MNIST with a tiny model, a SQLite study shared by
two processes, the same on a throwaway PostgreSQL server, the median pruner, failures, Ctrl-C."""

from __future__ import annotations

import json
import os
import pwd
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest
import yaml
from click.testing import CliRunner

from cnn_mnist.cli import cli
from cnn_mnist.core.errors import ConfigError
from tests.conftest import sigint_as_in_a_terminal

REPO = Path(__file__).resolve().parent.parent

# Layer 3 is the Dropout whose rate the sweeps search.
LAYERS = [
    {"type": "Conv2D", "filters": 8, "kernel_size": 3, "activation": "relu"},
    {"type": "MaxPooling2D", "pool_size": 2},
    {"type": "Flatten"},
    {"type": "Dropout", "rate": 0.2},
    {"type": "Dense", "units": 10, "activation": "softmax"},
]


def write_sweep(folder: Path, data: Path, sweep: dict, name: str = "search", **training) -> Path:
    """A sweep over a tiny model on 2,000 real training and 500 test images, under `folder`."""
    config = {
        "data": {"path": str(data), "limit_train": 2000, "limit_test": 500},
        "model": {"layers": LAYERS},
        "compile": {"learning_rate": 0.002},
        "training": {"epochs": 2, "batch_size": 64, "seed": 3, **training},
        "tensorboard": {
            "log_dir": str(folder / "logs" / "fit"),
            "histogram_freq": 0,
            "feature_maps": False,
            "write_graph": False,
        },
        "output": {"model_path": str(folder / "models" / "tiny.h5")},
        "sweep": sweep,
    }
    path = folder / f"{name}.yaml"
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    return path


def load(config: Path, study: str | None = None, storage: str | None = None):
    """The study as Optuna has it."""
    from cnn_mnist.tools import sweep

    return sweep.open_study(sweep.plan(str(config), study=study, storage=storage), create=False)


def runs(folder: Path) -> list[dict]:
    return [json.loads(p.read_text()) for p in sorted((folder / "logs" / "fit").glob("*/run.json"))]


SEARCH = {
    "parameters": {
        "compile.learning_rate": {"low": 0.0005, "high": 0.01, "log": True},
        "model.layers[3].rate": {"values": [0.1, 0.3, 0.5]},
        "training.batch_size": {"values": [32, 64]},
    },
    "trials": 4,
    "method": "random",
    "pruning": False,
}


# --- the sweep section ------------------------------------------------------------------------


@pytest.mark.parametrize(
    "sweep, message",
    [
        (
            {"parameters": {"compile.learning_rate": {"values": [0.1]}}, "trails": 3},
            "sweep.trails: unknown key (did you mean 'trials'?); valid keys here: parameters, metric",
        ),
        (
            {"parameters": {"compile.learning_rate": {"lo": 0.1, "high": 1}}},
            "sweep.parameters.compile.learning_rate.lo: unknown key (did you mean 'low'?)",
        ),
        (
            {"parameters": {"compile.learning_rate": {"low": 0.1}}},
            "sweep.parameters.compile.learning_rate: a range needs both low and high",
        ),
        (
            {"parameters": {"compile.learning_rate": {"low": 0.1, "high": 0.01}}},
            "low must be below high",
        ),
        (
            {"parameters": {"compile.learning_rate": {"low": 0.0, "high": 0.1, "log": True}}},
            "log: true needs low above 0",
        ),
        (
            {"parameters": {"model.layers[3].rate": {"values": [[0.1, 0.2]]}}},
            "sweep.parameters.model.layers[3].rate.values[0]: expected a valid boolean",
        ),
        (
            {"parameters": {"compile.learning_rate": {"values": [0.1]}}, "method": "anneal"},
            "sweep.method: Input should be 'tpe', 'random' or 'grid'",
        ),
        (
            {
                "parameters": {"compile.learning_rate": {"low": 0.001, "high": 0.1}},
                "method": "grid",
            },
            "method grid needs values: [...] for every parameter; compile.learning_rate has low/high",
        ),
        (
            {"parameters": {"trianing.epochs": {"values": [1, 2]}}},
            "'trianing.epochs' is not a key path in a section (data, model, compile, training",
        ),
        # Key paths into the config, checked with each value: the same messages as --set.
        (
            {"parameters": {"model.layers[3].units": {"values": [64]}}},
            "sweep.parameters.model.layers[3].units: 64 does not fit the config: model.layers[3].units: "
            "unknown key; valid keys here: rate",
        ),
        (
            {"parameters": {"model.layers[9].rate": {"values": [0.1]}}},
            "model.layers[9] is out of range (the list has 5 items: 0 to 4)",
        ),
        (
            {"parameters": {"training.batch_size": {"values": [32, "big"]}}},
            "sweep.parameters.training.batch_size: 'big' does not fit the config: training.batch_size: "
            "Input should be a valid integer",
        ),
        (
            {"parameters": {"model.layers[3].rate": {"low": 0.1, "high": 1.5}}},
            "sweep.parameters.model.layers[3].rate: 1.5 does not fit the config",
        ),
        (
            {"parameters": {"compile.optimizer": {"values": ["adam", "adamm"]}}},
            "'adamm' does not fit the config: compile.optimizer: Input should be 'adam'",
        ),
    ],
)
def test_a_bad_sweep_section_names_the_key_path(tmp_path, sweep, message):
    from cnn_mnist.tools.sweep import plan

    with pytest.raises(ConfigError) as error:
        plan(str(write_sweep(tmp_path, tmp_path, sweep)))
    assert message in str(error.value)


def test_sweep_needs_a_sweep_section_and_a_started_study(tmp_path):
    from cnn_mnist.tools.sweep import plan

    plain = tmp_path / "plain.yaml"
    plain.write_text("training: {epochs: 1}\n")
    with pytest.raises(ConfigError, match="has no sweep: section"):
        plan(str(plain))
    config = write_sweep(tmp_path, tmp_path, SEARCH)
    result = CliRunner().invoke(cli, ["sweep", "--config", str(config), "--status"])
    assert result.exit_code == 1
    assert "error: no study 'search' in sqlite:///" in result.output
    assert "start it with: cnn sweep --config" in result.output
    assert not list((tmp_path / "logs" / "sweeps").glob("*.db"))  # --status made no empty study
    result = CliRunner().invoke(
        cli,
        [
            "sweep",
            "--config",
            str(config),
            "--status",
            "--study",
            "x",
            "--storage",
            f"sqlite:///{tmp_path}/other.db",
        ],
    )
    assert result.exit_code == 1 and not (tmp_path / "other.db").exists()
    assert result.output.rstrip().endswith(
        f"--study x --storage sqlite:///{tmp_path}/other.db"
    )  # the command that starts it
    result = CliRunner().invoke(cli, ["sweep"])
    assert result.exit_code == 2 and "--config FILE" in result.output
    result = CliRunner().invoke(cli, ["sweep", "--config", str(config), "--storage", "nosuch://x"])
    assert (
        result.exit_code == 1 and "error: cannot open the sweep storage nosuch://x" in result.output
    )
    assert "expected sqlite:///FILE.db or postgresql://" in result.output
    assert "Traceback" not in result.output and len(result.output.strip().splitlines()) == 2


def test_defaults_and_what_cnn_train_makes_of_a_sweep_section(tmp_path):
    from cnn_mnist.tools.sweep import plan
    from cnn_mnist.training.request import request

    config = write_sweep(tmp_path, tmp_path, {"parameters": SEARCH["parameters"]})
    sweep = plan(str(config))
    section = sweep.config.sweep
    assert (section.metric, section.direction, section.trials, section.method, section.pruning) == (
        "val_accuracy",
        "maximize",
        10,
        "tpe",
        True,
    )
    assert sweep.study == "search"
    assert sweep.storage == f"sqlite:///{(tmp_path / 'logs' / 'sweeps').resolve()}/search.db"
    assert plan(str(config), trials=3, study="other").trials == 3
    grid = write_sweep(
        tmp_path,
        tmp_path,
        {
            "parameters": {
                "model.layers[3].rate": {"values": [0.1, 0.3]},
                "training.batch_size": {"values": [32, 64, 128]},
            },
            "method": "grid",
            "trials": 50,
        },
        name="grid",
    )
    assert plan(str(grid)).trials == 6  # every combination, once
    # `cnn train` trains the config as it is; its run's config has no sweep.
    trained = request(str(config)).config
    assert trained.sweep is None and "sweep" not in trained.to_dict()
    assert trained.compile.learning_rate == 0.002


# --- trials in this process -------------------------------------------------------------------


def test_four_trials_then_the_best_config_trains_again_the_same(tmp_path, real_mnist_path):
    config = write_sweep(tmp_path, real_mnist_path, SEARCH)
    result = CliRunner().invoke(cli, ["sweep", "--config", str(config), "-q"])
    assert result.exit_code == 0, result.output
    study = load(config)
    trials = study.get_trials()
    assert [t.state.name for t in trials] == ["COMPLETE"] * 4
    settings = [tuple(sorted(t.params.items())) for t in trials]
    assert len(set(settings)) == 4  # distinct settings
    # Each trial is an ordinary run, tagged with the sweep, trained with the trial's values.
    records = {r["run_id"]: r for r in runs(tmp_path)}
    assert len(records) == 4
    for trial in trials:
        record = records[trial.user_attrs["run_id"]]
        assert record["status"] == "completed"
        assert record["sweep"] == {"name": "search", "trial": trial.number}
        assert record["config"]["compile"]["learning_rate"] == trial.params["compile.learning_rate"]
        assert (
            record["config"]["model"]["layers"][3]["rate"] == trial.params["model.layers[3].rate"]
        )
        assert record["config"]["training"]["batch_size"] == trial.params["training.batch_size"]
        assert record["metrics"]["test_accuracy"] == trial.value
        assert (Path(record["paths"]["logs"]) / "train").is_dir()  # TensorBoard's
    # The trials never touched the config's model path.
    assert not (tmp_path / "models" / "tiny.h5").exists()
    best = study.best_trial
    assert "Best trial    %d: val_accuracy %.4g" % (best.number, best.value) in result.output
    path = tmp_path / "logs" / "sweeps" / "search-best.yaml"
    assert f"Best config   {path}" in result.output
    again = CliRunner().invoke(cli, ["train", "--config", str(path), "-q"])
    assert again.exit_code == 0, again.output
    retrained = runs(tmp_path)[-1]
    assert retrained["run_id"] not in records and "sweep" not in retrained
    assert retrained["seed"] == records[best.user_attrs["run_id"]]["seed"]
    assert retrained["metrics"]["test_accuracy"] == pytest.approx(best.value, abs=1e-9)
    assert (tmp_path / "models" / "tiny.h5").exists()  # the config's own model path, now
    status = CliRunner().invoke(cli, ["sweep", "--config", str(config), "--status"])
    assert status.exit_code == 0
    assert status.output.count(" complete ") == 4 and "4 of 4 trial(s)" in status.output


def test_the_median_pruner_stops_a_diverging_learning_rate(tmp_path, real_mnist_path):
    from cnn_mnist.tools import sweep

    good = write_sweep(
        tmp_path,
        real_mnist_path,
        {
            "parameters": {"compile.learning_rate": {"low": 0.002, "high": 0.004, "log": True}},
            "trials": 2,
            "method": "random",
            "pruning_startup_trials": 2,
        },
        name="good",
    )
    sweep.run(sweep.plan(str(good), study="prune"), progress=0)
    # The same study, now searching learning rates at which Adam diverges on this model.
    bad = write_sweep(
        tmp_path,
        real_mnist_path,
        {
            "parameters": {"compile.learning_rate": {"low": 1.0, "high": 2.0, "log": True}},
            "trials": 3,
            "method": "random",
            "pruning_startup_trials": 2,
        },
        name="bad",
    )
    report = sweep.run(sweep.plan(str(bad), study="prune"), progress=0)
    assert [r.state for r in report.rows] == ["complete", "complete", "pruned"]
    pruned = report.rows[2]
    assert pruned.reason == "pruned after epoch 1: below the median of earlier trials"
    assert pruned.value < 0.5 < min(r.value for r in report.rows[:2])
    record = next(r for r in runs(tmp_path) if r["run_id"] == pruned.run_id)
    # Stopped after one epoch at chance: its run says it did not learn, the study says pruned.
    assert record["status"] == "failed" and record["epochs_completed"] == 1
    assert "did not learn" in record["error"]
    assert "pruned" in sweep.format_report(report)


def test_a_failing_trial_is_recorded_and_the_sweep_goes_on(tmp_path, real_mnist_path):
    from cnn_mnist.tools import sweep

    # SGD at 1e30 in float32: the weights overflow and the loss turns NaN.
    config = write_sweep(
        tmp_path,
        real_mnist_path,
        {
            "parameters": {
                "compile.learning_rate": {"values": [1e30, 0.1]},
                "model.layers[0].kernel_size": {"values": [3, 40]},
            },
            "method": "grid",
            "pruning": False,
        },
        name="failing",
    )
    raw = yaml.safe_load(config.read_text())
    raw["compile"].update(optimizer="sgd", mixed_precision=False)
    config.write_text(yaml.safe_dump(raw))
    report = sweep.run(sweep.plan(str(config)), progress=0)
    rows = {
        (r.params["compile.learning_rate"], r.params["model.layers[0].kernel_size"]): r
        for r in report.rows
    }
    assert len(rows) == 4 and report.counted == 4
    assert rows[(0.1, 3)].state == "complete"
    diverged = rows[(1e30, 3)]
    assert diverged.state == "failed"
    assert diverged.reason.startswith("training diverged: the loss became nan at step ")
    assert "of epoch 1 (learning rate 1e+30); lower compile.learning_rate" in diverged.reason
    assert next(r for r in runs(tmp_path) if r["run_id"] == diverged.run_id)["status"] == "failed"
    for lr in (1e30, 0.1):  # a 40x40 kernel on a 28x28 image: rejected before training
        assert rows[(lr, 40)].state == "failed"
        assert "does not fit its 28x28x1 input" in rows[(lr, 40)].reason
    assert len(runs(tmp_path)) == 2
    assert report.best.number == rows[(0.1, 3)].number


# --- processes --------------------------------------------------------------------------------


def cnn(*args: str, cwd: Path) -> subprocess.Popen:
    env = dict(os.environ, PYTHONPATH=str(REPO))
    return subprocess.Popen(
        [sys.executable, "-m", "cnn_mnist", *args],
        cwd=cwd,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        preexec_fn=sigint_as_in_a_terminal,
    )


def two_workers(config: Path, *args: str) -> None:
    """Two `cnn sweep` processes, started together on one study; both must succeed."""
    workers = [
        cnn("sweep", "--config", str(config), "-q", *args, cwd=config.parent) for _ in range(2)
    ]
    for worker in workers:
        out, err = worker.communicate(timeout=240)
        assert worker.returncode == 0, err[-3000:]


def assert_shared(study, folder: Path, total: int) -> None:
    """`total` trials run between the two workers, each once, in its own run."""
    trials = [t for t in study.get_trials() if t.user_attrs.get("reason") != "surplus"]
    assert [t.state.name for t in trials] == ["COMPLETE"] * total
    records = runs(folder)
    assert sorted(r["sweep"]["trial"] for r in records) == sorted(t.number for t in trials)
    assert sorted(r["run_id"] for r in records) == sorted(t.user_attrs["run_id"] for t in trials)
    assert len({t.user_attrs["pid"] for t in trials}) == 2  # both workers ran trials


SHARED = {
    "parameters": {"compile.learning_rate": {"low": 0.0005, "high": 0.01, "log": True}},
    "trials": 6,
    "method": "random",
    "pruning": False,
}


@pytest.mark.slow
def test_two_processes_share_one_sqlite_study(tmp_path, real_mnist_path):
    config = write_sweep(tmp_path, real_mnist_path, SHARED)
    two_workers(config)
    assert_shared(load(config), tmp_path, 6)


PG_BINS = sorted(Path("/usr/lib/postgresql").glob("*/bin"), reverse=True)


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture
def postgres():
    """A throwaway PostgreSQL cluster on a free loopback port: its URL. initdb refuses root,
    so as root it runs as the `postgres` user."""
    found = [
        b
        for b in [*(Path(p).parent for p in filter(None, [shutil.which("initdb")])), *PG_BINS]
        if (b / "pg_ctl").exists()
    ]
    if not found:
        message = "PostgreSQL's initdb and pg_ctl not found (apt-get install postgresql)"
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail(message)
        pytest.skip(message)
    bin_dir, user = found[0], []
    folder = Path(tempfile.mkdtemp(prefix="cnn-mnist-pg-"))  # not under pytest's 0700 folders
    if os.geteuid() == 0:
        owner = pwd.getpwnam("postgres")
        os.chown(folder, owner.pw_uid, owner.pw_gid)
        user = ["runuser", "-u", "postgres", "--"]
    port, data = _free_port(), folder / "data"
    subprocess.run(
        [
            *user,
            str(bin_dir / "initdb"),
            "-D",
            str(data),
            "-U",
            "postgres",
            "--auth=trust",
            "-E",
            "UTF8",
        ],
        check=True,
        capture_output=True,
    )
    subprocess.run(
        [
            *user,
            str(bin_dir / "pg_ctl"),
            "-D",
            str(data),
            "-l",
            str(folder / "log"),
            "-w",
            "-o",
            f"-p {port} -k {folder} -c listen_addresses=127.0.0.1",
            "start",
        ],
        check=True,
        capture_output=True,
    )
    try:
        yield f"postgresql://postgres@127.0.0.1:{port}/postgres"
    finally:
        subprocess.run(
            [*user, str(bin_dir / "pg_ctl"), "-D", str(data), "-m", "fast", "stop"],
            capture_output=True,
        )
        shutil.rmtree(folder, ignore_errors=True)


def test_a_postgresql_server_that_never_answers_is_an_error(tmp_path, monkeypatch):
    from cnn_mnist.tools import sweep

    monkeypatch.setattr(sweep, "CONNECT_TIMEOUT_S", 1)
    config = write_sweep(tmp_path, tmp_path, SEARCH)
    with socket.socket() as silent:  # takes connections, says nothing
        silent.bind(("127.0.0.1", 0))
        silent.listen(8)
        url = f"postgresql://u:secret@127.0.0.1:{silent.getsockname()[1]}/sweeps"
        result = CliRunner().invoke(
            cli, ["sweep", "--config", str(config), "--storage", url, "--status"]
        )
    assert result.exit_code == 1 and "Traceback" not in result.output
    assert result.output.startswith(
        f"error: cannot open the sweep storage postgresql://u:***@{url.split('@')[1]}: "
    )
    assert "timeout" in result.output and "secret" not in result.output


@pytest.mark.slow
def test_two_processes_share_one_postgresql_study(tmp_path, real_mnist_path, postgres):
    config = write_sweep(tmp_path, real_mnist_path, SHARED)
    two_workers(config, "--storage", postgres, "--study", "shared")
    assert_shared(load(config, study="shared", storage=postgres), tmp_path, 6)
    assert not (tmp_path / "logs" / "sweeps" / "shared.db").exists()  # nothing in SQLite


@pytest.mark.slow
def test_ctrl_c_marks_the_trial_and_the_same_command_continues(tmp_path, real_mnist_path):
    # Ten epochs a trial: the signal lands while the first trial trains.
    config = write_sweep(tmp_path, real_mnist_path, {**SHARED, "trials": 2}, epochs=10)
    command = ("sweep", "--config", str(config), "-q")
    worker = cnn(*command, cwd=tmp_path)
    deadline = time.monotonic() + 120
    while not any(
        p.read_text().strip() for p in (tmp_path / "logs" / "fit").glob("*/epochs.jsonl")
    ):
        assert worker.poll() is None and time.monotonic() < deadline, worker.communicate()
        time.sleep(0.05)
    worker.send_signal(signal.SIGINT)
    out, err = worker.communicate(timeout=60)
    assert worker.returncode == 130, err
    assert (
        "error: interrupted: trial 0 is marked failed (interrupted); 0 of 2 trial(s) count "
        "so far. Run the same command again to continue the study."
    ) in err
    assert "Traceback" not in err
    [record] = runs(tmp_path)
    assert record["status"] == "interrupted"
    again = cnn(*command, cwd=tmp_path)
    out, err = again.communicate(timeout=240)
    assert again.returncode == 0, err
    trials = load(config).get_trials()
    assert [(t.state.name, t.user_attrs.get("reason")) for t in trials] == [
        ("FAIL", "interrupted"),
        ("COMPLETE", None),
        ("COMPLETE", None),
    ]
    assert "2 of 2 trial(s)" in out and "interrupted" in out
    assert [r["status"] for r in runs(tmp_path)] == ["interrupted", "completed", "completed"]


def test_the_shipped_sweep_searches_the_lecture_model():
    from cnn_mnist.config.load import default_config_path
    from cnn_mnist.config.schema import Config
    from cnn_mnist.tools.sweep import plan, trial_config

    shipped = default_config_path().parent / "sweep.yaml"
    assert shipped.read_text() == (REPO / "configs" / "sweep.yaml").read_text()
    sweep = plan("sweep")
    assert sweep.study == "sweep" and sweep.trials == 12
    assert set(sweep.config.sweep.parameters) == {
        "compile.learning_rate",
        "training.batch_size",
        "model.layers[3].rate",
        "model.layers[5].units",
        "model.layers[6].rate",
    }
    config = trial_config(
        sweep,
        {
            "compile.learning_rate": 0.004,
            "training.batch_size": 32,
            "model.layers[3].rate": 0.1,
            "model.layers[5].units": 64,
            "model.layers[6].rate": 0.3,
        },
    )
    lecture = Config().model.layers  # the key paths reach into the default layers
    assert [layer.type for layer in config.model.layers] == [layer.type for layer in lecture]
    assert (
        config.model.layers[3].rate,
        config.model.layers[5].units,
        config.model.layers[6].rate,
    ) == (0.1, 64, 0.3)
    assert (config.compile.learning_rate, config.training.batch_size) == (0.004, 32)
    assert config.sweep is None and config.training.seed == 1


@pytest.mark.parametrize("args", [["sweep", "--help"], ["sweep", "--config", "CONFIG", "--status"]])
def test_help_and_status_do_not_import_tensorflow(tmp_path, args):
    config = write_sweep(tmp_path, tmp_path, SEARCH)
    args = [str(config) if a == "CONFIG" else a for a in args]
    code = (
        "import sys; from cnn_mnist.cli import main; sys.argv = ['cnn'] + %r\n"
        "try:\n    main()\nexcept SystemExit as e:\n    print('exit', e.code)\n"
        "heavy = [m for m in ('tensorflow', 'keras') if m in sys.modules]\n"
        "assert not heavy, heavy" % args
    )
    result = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        env=dict(os.environ, PYTHONPATH=str(REPO)),
    )
    assert result.returncode == 0, result.stderr
    if "--help" in args:
        assert "Usage: cnn sweep" in result.stdout and "--storage URL" in result.stdout
    else:  # no study yet: a one-line error, still without TensorFlow
        assert "exit 1" in result.stdout and "error: no study 'search'" in result.stderr


def test_which_trials_count_toward_the_total():
    import optuna

    from cnn_mnist.tools.sweep import counted

    study = optuna.create_study()
    outcomes = [
        ("complete", None),
        ("pruned", None),
        ("failed", "the loss became nan"),
        ("failed", "interrupted"),
        ("failed", "surplus"),
        ("failed", None),  # abandoned
        ("running", None),
    ]
    for state, reason in outcomes:
        trial = study.ask()
        if reason:
            trial.set_user_attr("reason", reason)
        if state == "complete":
            study.tell(trial, 0.9)
        elif state == "pruned":
            study.tell(trial, state=optuna.trial.TrialState.PRUNED)
        elif state == "failed":
            study.tell(trial, state=optuna.trial.TrialState.FAIL)
    # Completed, pruned, failed with a reason, and running; not interrupted, surplus, abandoned.
    assert counted(study) == 4
    assert counted(study, before=3) == 3


def test_ctrl_c_during_a_database_write_waits_for_its_end(tmp_path):
    # Ctrl-C in the middle of the write after an epoch left its transaction open and the
    # database locked for the write that marks the trial interrupted (the sweep then hung):
    # the write ends first, then the interruption is raised.
    import optuna

    from cnn_mnist.tools.sweep import _set, pruning_reporter

    optuna.logging.set_verbosity(optuna.logging.ERROR)
    study = optuna.create_study(storage=f"sqlite:///{tmp_path / 's.db'}", direction="maximize")
    trial = study.ask()
    storage = study._storage
    for method in ("set_trial_intermediate_value", "set_trial_user_attr"):
        write = getattr(storage, method)

        def interrupted(*args, write=write):
            os.kill(os.getpid(), signal.SIGINT)  # lands while the write runs
            return write(*args)

        setattr(storage, method, interrupted)
    with pytest.raises(KeyboardInterrupt):
        pruning_reporter(trial, "val_accuracy").on_epoch_end(0, {"val_accuracy": 0.5})
    with pytest.raises(KeyboardInterrupt):
        _set(trial, "reason", "interrupted")
    [stored] = study.get_trials()
    assert stored.intermediate_values == {0: 0.5}
    assert stored.user_attrs == {"reason": "interrupted"}
