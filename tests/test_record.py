"""The typed run record (cnn_mnist/training/record.py): what the run writes is what the tools read,
and older or damaged run.json files still read (or say what is wrong)."""

from __future__ import annotations

import json

from cnn_mnist.training import record


def _write(folder, data) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "run.json").write_text(json.dumps(data) if not isinstance(data, str) else data)


def test_an_old_record_reads_with_its_missing_fields_defaulted(tmp_path):
    # As the first versions wrote it: no config_source, dataset, hparams, host or exports.
    _write(
        tmp_path,
        {
            "run_id": "20260101-000000-aaaa",
            "status": "completed",
            "started_at": "2026-01-01T00:00:00+00:00",
            "finished_at": "2026-01-01T00:01:30+00:00",
            "seed": 7,
            "metrics": {"test_loss": 0.05, "test_accuracy": 0.98},
        },
    )
    run, problem = record.read_record(tmp_path)
    assert problem is None and run is not None
    assert run.status == "completed" and run.metrics.test_accuracy == 0.98
    assert run.config_source is None and run.hparams is None and run.host is None
    assert run.exports is None and run.dataset_name == "mnist"
    assert run.duration_s() == 90.0 and run.epochs_done is None


def test_what_is_written_reads_back_with_the_same_fields_and_values(tmp_path):
    writer = record.RunRecord(
        tmp_path,
        "r1",
        seed=3,
        config_source="speedrun",
        sweep={"name": "lr", "trial": 2},
        future_field={"kept": True},
    )
    writer.add("accelerator", {"device": "cpu", "jit_compile": "auto", "dtype_policy": "float32"})
    writer.file.accelerator.jit_compile = False  # as the pipeline settles it after compile
    writer.complete(
        metrics={"test_accuracy": 0.5, "epochs_completed": 2, "history": {"loss": [0.3, 0.2]}},
        timings_s={"total": 12.5},
        exports=[
            {
                "format": "tflite",
                "quantize": "int8",
                "path": "m.tflite",
                "bytes": 1234,
                "checks": {"agreement": 0.99},
            }
        ],
    )
    on_disk = json.loads((tmp_path / "run.json").read_text())
    assert on_disk["accelerator"] == {
        "device": "cpu",
        "jit_compile": False,
        "dtype_policy": "float32",
    }  # no defaults added
    assert on_disk["sweep"] == {"name": "lr", "trial": 2} and on_disk["future_field"] == {
        "kept": True
    }
    assert on_disk["exports"][0]["checks"] == {"agreement": 0.99}
    run, _ = record.read_record(tmp_path)
    assert run.to_json() == on_disk
    assert run.sweep.name == "lr" and run.epochs_done == 2 and run.duration_s() == 12.5
    assert run.exports[0].bytes == 1234 and record.read_status(tmp_path) == "completed"
    assert record.recorded_source(tmp_path) == "speedrun"


def test_a_damaged_record_says_what_is_wrong(tmp_path):
    _write(tmp_path / "a", {"status": "completed", "metrics": {"test_accuracy": "high"}})
    _write(tmp_path / "b", "[1, 2]")
    _write(tmp_path / "c", "{not json")
    run, problem = record.read_record(tmp_path / "a")
    assert run is None and problem.startswith(
        "run.json has unexpected contents (metrics.test_accuracy: "
    )
    assert record.read_record(tmp_path / "b") == (None, "run.json is not a JSON object")
    assert record.read_record(tmp_path / "c")[1].startswith("run.json is not valid JSON")
    assert record.read_record(tmp_path / "none")[1].startswith("no run.json")
    assert record.read_status(tmp_path / "c") == "running"  # unreadable: resumable
