"""What `cnn runs` prints (cnn_mnist/tools/run_tables.py), from realistic run folders."""

from __future__ import annotations

from cnn_mnist.tools import runs
from cnn_mnist.tools.run_tables import format_comparison, format_list, format_show, seconds, table
from tests.conftest import write_run_record


def test_seconds_and_tables():
    assert [seconds(s) for s in (None, 4.23, 92, 7500)] == ["-", "4.2s", "1m32s", "2h05m"]
    assert table([["A", "BB"], ["ccc", "d"]]) == "A    BB\nccc  d"


def test_the_list_has_a_line_per_run_and_cuts_long_differences(tmp_path):
    logs = tmp_path / "fit"
    write_run_record(
        logs,
        "20261101-090000-aaaa",
        changes={
            "compile.learning_rate": 0.003,
            "model.layers[3].rate": 0.3,
            "data.limit_train": 2000,
            "data.limit_test": 1000,
        },
    )
    write_run_record(logs, "20261102-090000-bbbb", status="failed", error="loss is NaN")
    lines = format_list(runs.list_runs(logs)).splitlines()
    assert lines[1].startswith("20261102-090000-bbbb  failed     2026-11-02 09:00")
    assert "model.layers[3].rate=0.3, compile.learning_rate=0.003, da..." in lines[2]
    assert lines[2].index("0.9800") == lines[0].index("TEST ACC")


def test_show_and_compare_read_old_runs_without_hparams(tmp_path):
    logs = tmp_path / "fit"
    a = write_run_record(logs, "20261101-090000-aaaa")
    b = write_run_record(logs, "20261102-090000-bbbb", source="speedrun")
    shown = format_show(a)
    assert "layers=C32-C64-P2-D0.25-F-U128-D0.5-U10" in shown and "params=1199882" in shown
    compared = format_comparison(runs.compare_runs([a, b])).splitlines()
    assert compared[1].split() == ["config", "default", "speedrun"]
    assert compared[2].split() == [
        "model.layers",
        "C32-C64-P2-D0.25-F-U128-D0.5-U10",
        "C24k5-P2-C32-P2-F-U256-U10",
    ]

    (b / "run.json").write_text('{"status": "completed", "config": {"model": 3}}')
    assert "Settings  ? (run.json's config is incomplete)" in format_show(b)  # no traceback


def test_a_sweeps_trial_is_listed_with_its_sweep_and_not_its_sweep_section(tmp_path):
    logs = tmp_path / "fit"
    write_run_record(
        logs,
        "20261103-090000-cccc",
        source="sweep",
        changes={"compile.learning_rate": 0.003},
        sweep={"name": "lr", "trial": 4},
    )
    listed = format_list(runs.list_runs(logs))
    assert "sweep (lr #4)" in listed
    assert "compile.learning_rate=0.003" in listed
    assert "sweep=" not in listed  # the trial's config has no sweep: section, its source does


def test_a_fashion_run_shows_its_dataset_and_class_names(tmp_path):
    import json

    logs = tmp_path / "fit"
    folder = write_run_record(logs, "20261104-090000-dddd", source="fashion")
    matrix = json.loads((folder / "confusion_matrix.json").read_text())
    from cnn_mnist.core.datasets import CLASS_NAMES

    names = list(CLASS_NAMES["fashion_mnist"])
    (folder / "confusion_matrix.json").write_text(json.dumps({**matrix, "class_names": names}))
    write_run_record(logs, "20261105-090000-eeee")
    listed = format_list(runs.list_runs(logs)).splitlines()
    assert "DATASET" in listed[0]
    assert " fashion_mnist " in listed[2] and " mnist " in listed[1]
    assert "T-shirt/top: 0.900" in format_show(folder) and "Ankle boot: 0.810" in format_show(
        folder
    )
    comparison = format_comparison(runs.compare_runs([folder, logs / "20261105-090000-eeee"]))
    # Label 9 is an ankle boot in one run and the digit 9 in the other: the row names both.
    assert "F1 Ankle boot / 9 " in comparison and "F1 T-shirt/top / 0 " in comparison
    other = write_run_record(logs, "20261106-090000-ffff", changes={"compile.learning_rate": 0.003})
    same = format_comparison(runs.compare_runs([logs / "20261105-090000-eeee", other]))
    assert "F1 9 " in same and "F1 9 /" not in same  # two MNIST runs: the digits alone
