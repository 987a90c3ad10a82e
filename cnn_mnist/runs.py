"""Run folders and their records: `logs/fit/<run-id>/` with `config.yaml` and `run.json`.

A run id sorts by time. `run.json` says how a run went: `running` while it trains, then
`completed`, `interrupted` (Ctrl-C, SIGTERM) or `failed` with the reason; an unfinished run can
be resumed from its last finished epoch.
"""

from __future__ import annotations

import contextlib
import datetime
import json
import logging
import secrets
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

from cnn_mnist import files
from cnn_mnist.config import load_config
from cnn_mnist.errors import ConfigError
from cnn_mnist.schema import Config

log = logging.getLogger(__name__)


def new_run_id() -> str:
    """Sortable by time; the random suffix keeps two runs started together apart."""
    return datetime.datetime.now().strftime("%Y%m%d-%H%M%S") + "-" + secrets.token_hex(2)


def now() -> str:
    """The local time with its offset, to the second, as run.json gives times."""
    return datetime.datetime.now().astimezone().isoformat(timespec="seconds")


def read_status(run_dir: Path) -> str:
    """A run's status from its run.json; `running` if it has none yet (killed before its
    first record), which makes it resumable."""
    try:
        return json.loads((run_dir / "run.json").read_text()).get("status", "running")
    except (OSError, ValueError):
        return "running"


def find_run_to_resume(log_dir: str | Path, run_id: str | None = None) -> Path:
    """The run folder to resume: `run_id`, or the most recent run that did not complete."""
    log_dir = Path(log_dir)
    if run_id:
        run_dir = log_dir / run_id
        if not (run_dir / "config.yaml").is_file():
            raise ConfigError(f"--resume {run_id}: no such run in {log_dir}/ "
                              "(run ids are the folder names there)")
        if read_status(run_dir) == "completed":
            raise ConfigError(f"--resume {run_id}: that run completed; nothing to resume")
        return run_dir
    for run_dir in sorted((p.parent for p in log_dir.glob("*/config.yaml")), reverse=True):
        if read_status(run_dir) != "completed":
            return run_dir
    raise ConfigError(f"--resume: no unfinished run in {log_dir}/ to resume; "
                      "start one with `cnn train`")


def load_run_config(run_dir: Path, data_path: str | None = None) -> Config:
    """The resolved config a run was started with (`data_path` may point elsewhere now)."""
    overrides = {"data.path": data_path} if data_path else None
    return load_config(run_dir / "config.yaml", overrides=overrides)


class RunRecord:
    """A run's `run.json`: started as `running`, given sections as the stages finish, then
    `completed`; `recording_failures` records a stage that is interrupted or fails."""

    def __init__(self, run_dir: Path, run_id: str, **fields) -> None:
        self.path = run_dir / "run.json"
        self.data: dict = {"run_id": run_id, "status": "running", "started_at": now(), **fields}

    def write(self) -> Path:
        return files.write_json(self.path, self.data)

    def add(self, section: str, value) -> None:
        """A section (data, accelerator, ...), written with the next write."""
        self.data[section] = value

    def complete(self, **fields) -> Path:
        self.data.update(status="completed", finished_at=now(), **fields)
        return self.write()

    def stop(self, status: str, **fields) -> Path | None:
        """`interrupted` or `failed`, with when and, for a failure, why. On a full disk this
        may not be written either: the last run.json written stays (a resumable status)."""
        self.data.update(status=status, stopped_at=now(), **fields)
        try:
            return self.write()
        except OSError:
            pass
        # A full disk has no room for a new file beside the old one: rewrite the old one in
        # its own blocks (not atomic, but a run still marked `running` would be worse).
        try:
            with self.path.open("r+", encoding="utf-8") as fh:
                fh.truncate(0)
                fh.write(json.dumps(self.data, indent=2) + "\n")
            return self.path
        except OSError as exc:
            log.warning("could not record the run as %s in %s (%s)", status, self.path,
                        exc.strerror or exc)
            return None

    @contextlib.contextmanager
    def recording_failures(self, epochs_done: Callable[[], int],
                           timings: dict | None = None) -> Iterator[None]:
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


@dataclass(frozen=True)
class RunSummary:
    """One run folder at a glance, from its run.json."""

    id: str
    status: str
    started: str | None
    test_accuracy: float | None
    config: str  # the config's name: "default", "speedrun", or a file's stem
    model_path: Path | None  # the run's own model, when it has one
    run_dir: Path


def list_runs(log_dir: str | Path) -> list[RunSummary]:
    """Every run in `log_dir`, newest first (run ids sort by time)."""
    runs = []
    for run_dir in sorted((p for p in Path(log_dir).glob("*") if p.is_dir()), reverse=True):
        try:
            record = json.loads((run_dir / "run.json").read_text())
        except (OSError, ValueError):
            if not (run_dir / "config.yaml").is_file():
                continue  # not a run folder
            record = {}
        model = next((p for p in (run_dir / "model.h5", run_dir / "model.keras") if p.is_file()),
                     None)
        accuracy = (record.get("metrics") or {}).get("test_accuracy")
        runs.append(RunSummary(id=run_dir.name, status=record.get("status", "running"),
                               started=record.get("started_at"),
                               test_accuracy=float(accuracy) if accuracy is not None else None,
                               config=Path(str(record.get("config_source") or "?")).stem,
                               model_path=model, run_dir=run_dir))
    return runs
