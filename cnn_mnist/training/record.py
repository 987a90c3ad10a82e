"""A run's record, `logs/fit/<run-id>/run.json`, typed: written by the run, read by the tools.

`RunFile` is run.json's contents (pydantic, like the config's schema): every field optional,
so a record from an older version, or one cut short by a kill, still reads; fields this
version does not know are kept as they are. `read_record` is the one reader (`cnn runs`,
`cnn serve`, the HParams dashboard); `RunRecord` is the writer: `running` while the run
trains, then `completed`, `interrupted` (Ctrl-C, SIGTERM) or `failed` with the reason. On disk
a record holds the fields that were set, under the same names as ever (no defaults are added).
"""

from __future__ import annotations

import contextlib
import datetime
import json
import logging
import os
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, ValidationError

from cnn_mnist.config.load import load_config
from cnn_mnist.config.schema import Config
from cnn_mnist.core import files
from cnn_mnist.core.errors import ConfigError
from cnn_mnist.core.stamps import now, parse_time

log = logging.getLogger(__name__)

RUN_JSON = "run.json"


class _Section(BaseModel):
    """A part of run.json: known fields typed, unknown ones kept."""

    model_config = ConfigDict(extra="allow", validate_assignment=True)

    def to_json(self) -> dict[str, Any]:
        """The fields that were set, as run.json holds them."""
        return self.model_dump(exclude_unset=True)


class DataInfo(_Section):
    """What the run trained and tested on."""

    dataset: str | None = None
    class_names: list[str] | None = None
    source: str | None = None
    sha256: dict[str, str] | None = None  # of each file as it was on disk
    num_train: int | None = None
    num_test: int | None = None
    normalize: bool | None = None


class AcceleratorInfo(_Section):
    """model.Accelerator's fields, and whether XLA compiled the step in the end."""

    device: str | None = None
    jit_compile: bool | str | None = None
    steps_per_execution: int | None = None
    dtype_policy: str | None = None
    reason: str | None = None


class DistributionInfo(_Section):
    """A tf.distribute run: the batch is global, shared among the replicas."""

    strategy: str | None = None
    replicas: int | None = None
    workers: int | None = None
    global_batch_size: int | None = None
    per_replica_batch_size: float | None = None
    learning_rate: float | None = None
    local_devices: list[str] | None = None
    weights_sha256: str | None = None  # the same on every worker after training


class SweepTag(_Section):
    """A sweep's trial: the study's name and the trial's number."""

    name: str | None = None
    trial: int | None = None


class Metrics(_Section):
    test_loss: float | None = None
    test_accuracy: float | None = None
    params: int | None = None
    epochs_completed: int | None = None
    history: dict[str, list[float | None]] | None = None  # per epoch, by Keras's metric name


class Export(_Section):
    """A file exported from the run's model (`cnn export`), and the checks it passed."""

    format: str | None = None
    quantize: str | None = None
    path: str | None = None
    bytes: int | None = None
    checks: dict[str, Any] = {}


class RunFile(_Section):
    """run.json's contents; see the module docstring."""

    run_id: str | None = None
    status: str = "running"  # running, completed, interrupted, failed
    started_at: str | None = None
    config_source: str | None = None  # the config it was started from: a shipped name or a file
    config: dict[str, Any] | None = None  # the resolved config, as config.yaml has it
    dataset: str | None = None
    seed: int | None = None
    versions: dict[str, str] | None = None
    argv: list[str] | None = None
    host: str | None = None
    pid: int | None = None
    sweep: SweepTag | None = None
    resumed_from_epoch: int | None = None
    distribution: DistributionInfo | None = None
    data: DataInfo | None = None
    accelerator: AcceleratorInfo | None = None
    hparams: dict[str, Any] | None = None  # as the HParams dashboard has them
    finished_at: str | None = None
    stopped_at: str | None = None
    error: str | None = None  # why a failed run failed
    epochs_completed: int | None = None  # of an interrupted or failed run
    metrics: Metrics | None = None
    timings_s: dict[str, Any] | None = None  # seconds per stage; fit_breakdown is a dict
    peak_memory_mb_after: dict[str, float] | None = None
    paths: dict[str, str] | None = None
    exports: list[Export] | None = None

    @property
    def epochs_done(self) -> int | None:
        """Finished epochs, as recorded (None: not recorded)."""
        if self.metrics is not None and self.metrics.epochs_completed is not None:
            return self.metrics.epochs_completed
        return self.epochs_completed

    @property
    def dataset_name(self) -> str:
        data = (self.config or {}).get("data")
        return str(
            (data.get("dataset") if isinstance(data, dict) else None) or self.dataset or "mnist"
        )

    def duration_s(self) -> float | None:
        """Seconds from start to finish (or to the interrupt, or until now while running)."""
        total = (self.timings_s or {}).get("total")
        if isinstance(total, (int, float)):
            return float(total)
        started = parse_time(self.started_at)
        end = parse_time(self.finished_at or self.stopped_at)
        if end is None and self.status == "running":
            end = datetime.datetime.now().astimezone()
        return (end - started).total_seconds() if started and end else None


def read_record(run_dir: str | Path) -> tuple[RunFile | None, str | None]:
    """A run's run.json, or None and what is wrong with it."""
    path = Path(run_dir) / RUN_JSON
    if not path.is_file():
        return None, "no run.json (stopped before its first record, or not a run folder)"
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except OSError as exc:
        return None, f"run.json cannot be read ({exc.strerror or exc})"
    except ValueError as exc:
        return None, f"run.json is not valid JSON ({str(exc).splitlines()[0][:80]})"
    if not isinstance(data, dict):
        return None, "run.json is not a JSON object"
    try:
        return RunFile.model_validate(data), None
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(part) for part in first["loc"])
        return None, f"run.json has unexpected contents ({where}: {first['msg']})"


def read_status(run_dir: Path) -> str:
    """A run's status from its run.json; `running` if it has none yet (killed before its
    first record), which makes it resumable."""
    record, _ = read_record(run_dir)
    return record.status if record is not None else "running"


def killed(record: RunFile) -> bool:
    """A run.json that says `running` whose process is gone from this host (SIGKILL, a crash,
    a power cut: nothing could record how it ended)."""
    from cnn_mnist.stages.guards import process_gone

    return record.status == "running" and process_gone(record.host, record.pid, record.started_at)


def killed_reason(record: RunFile) -> str:
    return (
        f"its process ({record.pid} on {record.host}) is gone without recording "
        "how it ended (killed, or crashed)"
    )


def epochs_logged(run_dir: Path) -> int:
    """Finished epochs in epochs.jsonl (a partial last line, from a kill, is not one)."""
    try:
        lines = (run_dir / "epochs.jsonl").read_text(encoding="utf-8").splitlines()
    except (OSError, ValueError):
        return 0
    return sum(1 for line in lines if line.strip().endswith("}"))


def describe_resumed(run_dir: Path) -> str:
    """What `--resume` picked up: the run, how it ended, and the epochs it keeps."""
    record, problem = read_record(run_dir)
    status, epochs, source, done = "no-record", None, None, None
    if record is not None:
        status, problem, source, done = (
            record.status,
            record.error,
            record.config_source,
            record.epochs_done,
        )
        if status == "running" and killed(record):
            status, problem = "interrupted", killed_reason(record)
        epochs = ((record.config or {}).get("training") or {}).get("epochs")
    why = f": {problem.splitlines()[0]}" if problem else ""
    done = done if done is not None else epochs_logged(run_dir)
    return (
        f"run {Path(run_dir).name} ({status}{why}; config {source or 'default'}) after "
        f"epoch {done or 0} of {epochs}"
    )


def recorded_source(run_dir: Path) -> str | None:
    """The config a run was started from (`config_source` in its run.json), if recorded."""
    record, _ = read_record(run_dir)
    return record.config_source if record is not None else None


class RunRecord:
    """The writer of a run's `run.json`: started as `running`, given sections as the stages
    finish, then `completed`; `recording_failures` records a stage that is interrupted or
    fails. `file` is the record so far.

    Every write is atomic (a new file renamed over the old one), so run.json is always valid
    JSON. While the run is `running`, a reserve file beside it (`.run.json.reserve`) holds
    room for the last record: on a full disk, `stop` frees it and writes the failed record
    into the room it leaves. The reserve goes when the run ends (`completed`, `interrupted`,
    `failed`, or `release`)."""

    RESERVE = ".run.json.reserve"
    RESERVE_MIN = 64 * 1024  # bytes; and at least twice the record (the new file and the old)

    def __init__(self, run_dir: Path, run_id: str, **fields: Any) -> None:
        self.path = Path(run_dir) / RUN_JSON
        self.reserve = Path(run_dir) / self.RESERVE
        self.file = RunFile(run_id=run_id, status="running", started_at=now(), **fields)
        self.on_disk: str | None = None  # the status the last record written says

    def write(self) -> Path:
        text = json.dumps(self.file.to_json(), indent=2, sort_keys=False) + "\n"
        files.write_text(self.path, text)
        self.on_disk = self.file.status
        if self.file.status == "running":
            self._keep_room(2 * len(text.encode()) + self.RESERVE_MIN)
        else:
            self.release()
        return self.path

    def _keep_room(self, size: int) -> None:
        """The reserve file grown to `size` bytes of real blocks (best effort: on a disk
        already full it stays as it is)."""
        try:
            have = self.reserve.stat().st_size if self.reserve.exists() else 0
            if have >= size:
                return
            with self.reserve.open("ab") as fh:
                fh.write(b"\0" * (size - have))
                fh.flush()
                os.fsync(fh.fileno())
        except OSError:
            pass

    def release(self) -> None:
        """The reserve removed: the run writes no more records."""
        with contextlib.suppress(OSError):
            self.reserve.unlink(missing_ok=True)

    def add(self, section: str, value: Any) -> None:
        """A section (data, accelerator, ...), written with the next write."""
        setattr(self.file, section, value)

    def _update(self, **fields: Any) -> None:
        for name, value in fields.items():
            setattr(self.file, name, value)

    def complete(self, **fields: Any) -> Path:
        self._update(status="completed", finished_at=now(), **fields)
        return self.write()

    def stop(self, status: str, **fields: Any) -> Path | None:
        """`interrupted` or `failed`, with when and, for a failure, why. On a full disk the
        reserve is freed and the record written in its room; if even that fails, the last
        run.json written stays as it was (valid, and a resumable status)."""
        self._update(status=status, stopped_at=now(), **fields)
        if not self.path.parent.is_dir():  # the run's folder was removed (`cnn runs rm`)
            return None
        try:
            return self.write()
        except OSError:
            self.release()  # the room kept for this record
        try:
            return self.write()
        except OSError as exc:
            log.warning(
                "could not record the run as %s in %s (%s)", status, self.path, exc.strerror or exc
            )
            return None

    @contextlib.contextmanager
    def recording_failures(
        self, epochs_done: Callable[[], int], timings: dict | None = None
    ) -> Iterator[None]:
        """Ctrl-C or SIGTERM inside the block: `interrupted`; an error: `failed` with its
        message. Either way with the epochs finished, and the exception goes on."""
        try:
            yield
        except KeyboardInterrupt:
            self.stop("interrupted", epochs_completed=epochs_done(), timings_s=timings or {})
            raise
        except Exception as exc:
            self.stop("failed", error=str(exc), epochs_completed=epochs_done())
            raise


# --- the run to resume ---------------------------------------------------------------------


def find_run_to_resume(log_dir: str | Path, run_id: str | None = None) -> Path:
    """The run folder to resume: `run_id`, or the most recent run that did not complete."""
    log_dir = Path(log_dir)
    if run_id:
        run_dir = log_dir / run_id
        if not (run_dir / "config.yaml").is_file():
            raise ConfigError(
                f"--resume {run_id}: no such run in {log_dir}/ (run ids are the folder names there)"
            )
        if read_status(run_dir) == "completed":
            raise ConfigError(f"--resume {run_id}: that run completed; nothing to resume")
        return run_dir
    for run_dir in sorted((p.parent for p in log_dir.glob("*/config.yaml")), reverse=True):
        if read_status(run_dir) != "completed":
            return run_dir
    raise ConfigError(
        f"--resume: no unfinished run in {log_dir}/ to resume; start one with `cnn train`"
    )


def load_run_config(run_dir: Path, data_path: str | None = None) -> Config:
    """The resolved config a run was started with (`data_path` may point elsewhere now)."""
    overrides = {"data.path": data_path} if data_path else None
    return load_config(run_dir / "config.yaml", overrides=overrides)
