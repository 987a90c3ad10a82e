"""Run folders and their records: `logs/fit/<run-id>/` with `config.yaml` and `run.json`.

A run id sorts by time. `run.json` says how a run went: `running` while it trains, then
`completed`, `interrupted` (Ctrl-C, SIGTERM) or `failed` with the reason; an unfinished run can
be resumed from its last finished epoch.
"""

from __future__ import annotations

import contextlib
import dataclasses
import datetime
import json
import logging
import secrets
import shutil
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

from cnn_mnist import files
from cnn_mnist.config import load_config
from cnn_mnist.errors import CnnError, ConfigError, OutputError
from cnn_mnist.paths import MODEL_PATH
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


def killed(data: dict) -> bool:
    """A run.json that says `running` whose process is gone from this host (SIGKILL, a crash,
    a power cut: nothing could record how it ended)."""
    from cnn_mnist.guards import process_gone

    return data.get("status", "running") == "running" and \
        process_gone(data.get("host"), data.get("pid"), data.get("started_at"))


def killed_reason(data: dict) -> str:
    return (f"its process ({data.get('pid')} on {data.get('host')}) is gone without recording "
            "how it ended (killed, or crashed)")


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


def recorded_source(run_dir: Path) -> str | None:
    """The config a run was started from (`config_source` in its run.json), if recorded."""
    data, _ = read_record(run_dir)
    source = (data or {}).get("config_source")
    return source if isinstance(source, str) else None


# --- the runs in logs/fit/: `cnn runs` ---------------------------------------------------------

NO_RECORD, CORRUPT = "no-record", "corrupt"  # the statuses of folders without a readable run.json
METRICS = {"test_accuracy": max, "test_loss": min}  # what `cnn runs best` ranks by: the better


@dataclass(frozen=True)
class RunSummary:
    """One run folder, as `cnn runs` lists it. `differences` are `key=value` settings of the
    resolved config that differ from `compared_to`, the config it was started from."""

    id: str
    status: str  # running, completed, interrupted, failed; no-record, corrupt (see `problem`)
    started: str | None
    test_accuracy: float | None
    config: str
    model_path: Path | None
    run_dir: Path
    test_loss: float | None = None
    duration_s: float | None = None
    epochs_done: int | None = None
    epochs: int | None = None  # as configured
    differences: tuple[str, ...] = ()
    compared_to: str | None = None
    sweep: str | None = None
    trial: int | None = None
    dataset: str = "mnist"
    published: str | None = None  # the stable model path that holds this run's model
    problem: str | None = None  # a failure's reason, or what is wrong with run.json

    def to_dict(self) -> dict:
        out = dataclasses.asdict(self)
        out.update(model_path=str(self.model_path) if self.model_path else None,
                   run_dir=str(self.run_dir), differences=list(self.differences))
        return out


def read_record(run_dir: Path) -> tuple[dict | None, str | None]:
    """A run's run.json as a dict, or None and what is wrong with it."""
    path = Path(run_dir) / "run.json"
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
    return data, None


def run_folders(log_dir: str | Path) -> list[Path]:
    """The run folders in `log_dir`, newest first (run ids sort by time); [] if none."""
    log_dir = Path(log_dir)
    if not log_dir.is_dir():
        return []
    return sorted((p for p in log_dir.iterdir() if p.is_dir() and not p.name.startswith(".")),
                  key=lambda p: p.name, reverse=True)


def list_runs(log_dir: str | Path) -> list[RunSummary]:
    """Every run in `log_dir`, newest first; [] if there is none (or no such folder)."""
    bases: dict = {}
    return [summarize(run_dir, bases) for run_dir in run_folders(log_dir)]


def no_runs(log_dir: str | Path) -> ConfigError:
    return ConfigError(f"no runs in {Path(log_dir)}/ yet: run `cnn train` first, or pass "
                       "--logdir")


def find_run(log_dir: str | Path, prefix: str) -> Path:
    """The run folder whose id is `prefix` or starts with it, if exactly one does."""
    folders = run_folders(log_dir)
    if not folders:
        raise no_runs(log_dir)
    matches = [p for p in folders if p.name == prefix] or \
        [p for p in folders if p.name.startswith(prefix)]
    if not matches:
        raise ConfigError(f"no run {prefix!r} in {Path(log_dir)}/; `cnn runs` lists the run ids")
    if len(matches) > 1:
        shown = ", ".join(p.name for p in matches[:3]) + (", ..." if len(matches) > 3 else "")
        raise ConfigError(f"run id {prefix!r} is ambiguous: {len(matches)} runs start with it "
                          f"({shown}); give more of it")
    return matches[0]


def summarize(run_dir: Path, bases: dict | None = None) -> RunSummary:
    """A run folder's summary from its run.json; a folder without a readable one is listed
    as `no-record` or `corrupt`, with what is wrong (never an exception)."""
    run_dir = Path(run_dir)
    data, problem = read_record(run_dir)
    if data is not None:
        try:
            return _summary(run_dir, data, {} if bases is None else bases)
        except (TypeError, KeyError, AttributeError, ValueError, IndexError) as exc:
            problem = f"run.json has unexpected contents ({type(exc).__name__}: {exc})"
    model = _run_model(run_dir)
    return RunSummary(id=run_dir.name, status=NO_RECORD if data is None and
                      not (run_dir / "run.json").exists() else CORRUPT, started=None,
                      test_accuracy=None, config="?", model_path=model, run_dir=run_dir,
                      epochs_done=_epochs_logged(run_dir) or None,
                      published=_published(model, {}, {} if bases is None else bases),
                      problem=problem)


def _summary(run_dir: Path, data: dict, bases: dict) -> RunSummary:
    metrics = data.get("metrics") or {}
    config = data.get("config") or {}
    source = data.get("config_source")
    differences, compared_to = config_differences(config, source, bases) if config else ((), None)
    done = metrics.get("epochs_completed", data.get("epochs_completed"))
    sweep = data.get("sweep") if isinstance(data.get("sweep"), dict) else {}
    model = _run_model(run_dir)
    status, problem = str(data.get("status", "running")), data.get("error")
    if status == "running" and killed(data):
        status, problem = "interrupted", killed_reason(data)
    return RunSummary(
        id=run_dir.name, status=status,
        started=data.get("started_at"), test_accuracy=_number(metrics.get("test_accuracy")),
        config=source or "default", model_path=model, run_dir=run_dir,
        test_loss=_number(metrics.get("test_loss")), duration_s=_duration(data),
        epochs_done=int(done) if done is not None else _epochs_logged(run_dir),
        epochs=config.get("training", {}).get("epochs"), differences=differences,
        compared_to=compared_to, sweep=sweep.get("name"), trial=sweep.get("trial"),
        dataset=str((config.get("data") or {}).get("dataset") or data.get("dataset") or "mnist"),
        published=_published(model, config, bases), problem=problem)


def _number(value) -> float | None:
    return float(value) if isinstance(value, (int, float)) and not isinstance(value, bool) \
        else None


def _run_model(run_dir: Path) -> Path | None:
    return next((p for p in (run_dir / "model.h5", run_dir / "model.keras") if p.is_file()), None)


def _epochs_logged(run_dir: Path) -> int:
    """Finished epochs in epochs.jsonl (a partial last line, from a kill, is not one)."""
    try:
        lines = (run_dir / "epochs.jsonl").read_text(encoding="utf-8").splitlines()
    except (OSError, ValueError):
        return 0
    return sum(1 for line in lines if line.strip().endswith("}"))


def _duration(data: dict) -> float | None:
    """Seconds from start to finish (or to the interrupt, or until now while running)."""
    total = (data.get("timings_s") or {}).get("total")
    if isinstance(total, (int, float)):
        return float(total)
    started = _time(data.get("started_at"))
    end = _time(data.get("finished_at") or data.get("stopped_at"))
    if end is None and data.get("status", "running") == "running":
        end = datetime.datetime.now().astimezone()
    return (end - started).total_seconds() if started and end else None


def _time(text) -> datetime.datetime | None:
    try:
        return datetime.datetime.fromisoformat(text) if isinstance(text, str) else None
    except ValueError:
        return None


def _published(model: Path | None, config: dict, cache: dict) -> str | None:
    """The stable model path (output.model_path, or the default one) if it holds this run's
    model: the same file (a hard link) or, where links were not possible, a copy that names
    this run inside (save.py's metadata; read once per path)."""
    if model is None:
        return None
    for stable in dict.fromkeys([config.get("output", {}).get("model_path"), MODEL_PATH]):
        if not stable or not Path(stable).is_file():
            continue
        try:
            if model.samefile(stable):
                return stable
        except OSError:
            continue
        if ("stable", stable) not in cache:
            from cnn_mnist.save import read_metadata

            cache[("stable", stable)] = read_metadata(stable).get("run_id")
        if cache[("stable", stable)] == model.parent.name:
            return stable
    return None


# --- what differs: from the config a run came from, or between runs -------------------------

# Where the data lives is not a setting, nor the sweep: section a sweep's trials came from (their
# settings are the differences); a seed drawn at random (the config has none) always differs
# from null.
_NOT_SETTINGS = ("data.path", "sweep")
_ORDER = ("model", "compile", "training", "data")  # differences list the model's first


def config_differences(config: dict, source: str | None,
                       bases: dict | None = None) -> tuple[tuple[str, ...], str]:
    """`key=value` for each setting of the resolved `config` that differs from the config it
    came from (`source`: a shipped name or a file), or from the default config if that is gone;
    returns (differences, the config compared to). `bases` caches loaded configs."""
    bases = {} if bases is None else bases
    name = source or "default"
    if name not in bases:
        try:
            bases[name] = (load_config(None if name == "default" else name).to_dict(), name)
        except CnnError:  # moved, changed or removed since: the default is what is left
            bases[name] = (load_config(None).to_dict(), "default")
    base, compared_to = bases[name]
    changed = changed_settings(base, config)
    return tuple(f"{key}={show_value(changed[key][1])}" for key in _in_order(changed)), \
        compared_to


def _in_order(keys) -> list[str]:
    """Key paths, the model's first, then compile, training, data and the rest."""
    return sorted(keys, key=lambda k: _ORDER.index(k.split(".")[0])
                  if k.split(".")[0] in _ORDER else len(_ORDER))


def changed_settings(a, b, path: str = "") -> dict[str, tuple]:
    """{key path: (value in a, value in b)} where two config dicts differ; a list of layers
    that changes in kind or length is one value (shown as the layer stack)."""
    if isinstance(a, dict) and isinstance(b, dict):
        out: dict[str, tuple] = {}
        for key in dict.fromkeys([*a, *b]):
            out.update(changed_settings(a.get(key), b.get(key), f"{path}.{key}".lstrip(".")))
        return out
    if isinstance(a, list) and isinstance(b, list) and len(a) == len(b) and \
            [_kind(x) for x in a] == [_kind(x) for x in b]:
        out = {}
        for i, (x, y) in enumerate(zip(a, b)):
            out.update(changed_settings(x, y, f"{path}[{i}]"))
        return out
    if a == b or path in _NOT_SETTINGS or (path == "training.seed" and a is None):
        return {}
    return {path: (a, b)}


def _kind(item):
    return item.get("type") if isinstance(item, dict) else type(item).__name__


def show_value(value) -> str:
    """A setting as `--set` would take it; a list of layers as the layer stack."""
    from cnn_mnist.hparams import layer_stack

    if isinstance(value, list) and value and all(isinstance(x, dict) and "type" in x
                                                 for x in value):
        return layer_stack(value)
    if isinstance(value, float):
        return f"{value:g}"
    if isinstance(value, (dict, list)):
        return json.dumps(value, separators=(",", ":"))
    return "null" if value is None else str(value).lower() if isinstance(value, bool) \
        else str(value)


def _at(config, path: str):
    """The value at a key path such as `model.layers[3].rate` (None where there is none)."""
    value = config
    for part in path.replace("[", ".[").split("."):
        if part.startswith("["):
            index = int(part[1:-1])
            value = value[index] if isinstance(value, list) and index < len(value) else None
        else:
            value = value.get(part) if isinstance(value, dict) else None
    return value


UNKNOWN = "?"  # a setting of a run whose record is unreadable


@dataclass(frozen=True)
class Comparison:
    """Runs side by side: the settings where any of them differs (key path: value per run),
    and each run's per-digit F1 (None where its confusion_matrix.json is missing)."""

    runs: tuple[RunSummary, ...]
    settings: dict[str, tuple]
    f1: tuple[tuple[float, ...] | None, ...]


def compare_runs(run_dirs: list[Path]) -> Comparison:
    summaries = tuple(summarize(run_dir) for run_dir in run_dirs)
    configs = [_config_of(run_dir) for run_dir in run_dirs]
    known = [config for config in configs if config is not None]  # a corrupt record has none
    keys = _in_order(dict.fromkeys(key for other in known[1:]
                                   for key in changed_settings(known[0], other)))
    # A list that changed as a whole (the layer stack) needs no rows for its items too.
    keys = [k for k in keys if not any(k.startswith(f"{whole}[") for whole in keys)]
    settings = {key: tuple(_at(config, key) if config is not None else UNKNOWN
                           for config in configs) for key in keys}
    if len({s.config for s in summaries}) > 1:
        settings = {"config": tuple(s.config for s in summaries), **settings}
    return Comparison(summaries, settings, tuple(per_class_f1(d) for d in run_dirs))


def _config_of(run_dir: Path) -> dict | None:
    config = (read_record(run_dir)[0] or {}).get("config")
    return config if isinstance(config, dict) else None


def per_class_f1(run_dir: Path) -> tuple[float, ...] | None:
    """F1 per class from the run's confusion_matrix.json."""
    try:
        data = json.loads((Path(run_dir) / "confusion_matrix.json").read_text(encoding="utf-8"))
        per_class = data["per_class"]
        return tuple(float(per_class[str(d)]["f1"]) for d in range(len(per_class)))
    except (OSError, ValueError, KeyError, TypeError):
        return None


def class_names(run_dir: Path) -> list[str]:
    """The run's class names, from its confusion_matrix.json; the digits for MNIST and for runs
    recorded before other datasets."""
    try:
        data = json.loads((Path(run_dir) / "confusion_matrix.json").read_text(encoding="utf-8"))
        names = data["class_names"]
        if isinstance(names, list) and len(names) == 10:
            return [str(n) for n in names]
    except (OSError, ValueError, KeyError, TypeError):
        pass
    return [str(d) for d in range(10)]


def best_run(log_dir: str | Path, metric: str = "test_accuracy") -> RunSummary:
    """The completed run with the best `metric` (test_accuracy: highest; test_loss: lowest)."""
    if metric not in METRICS:
        raise ConfigError(f"--metric {metric}: expected one of {', '.join(METRICS)}")
    listed = list_runs(log_dir)
    if not listed:
        raise no_runs(log_dir)
    scored = [r for r in listed if r.status == "completed" and getattr(r, metric) is not None]
    if not scored:
        raise ConfigError(f"no completed run in {Path(log_dir)}/ has a {metric} yet "
                          f"({len(listed)} run(s), none completed)")
    return METRICS[metric](scored, key=lambda r: getattr(r, metric))


def folder_size(folder: Path) -> int:
    return sum(p.stat().st_size for p in Path(folder).rglob("*") if p.is_file())


def check_removable(summary: RunSummary, force: bool = False) -> None:
    """A run whose model the stable model path holds, or one that may still be training, is
    only removed with `force`."""
    if force:
        return
    if summary.published:
        raise ConfigError(f"run {summary.id}'s model is the one at {summary.published}; pass "
                          f"--force to remove the run anyway ({summary.published} stays)")
    if summary.status == "running":
        raise ConfigError(f"run {summary.id} is marked running (training now, or killed before "
                          "it could record how it ended); pass --force to remove it")


def remove_run(run_dir: Path, force: bool = False) -> RunSummary:
    """Delete a run folder (see `check_removable`); returns what it was."""
    summary = summarize(run_dir)
    check_removable(summary, force)
    try:
        shutil.rmtree(run_dir)
    except OSError as exc:
        raise OutputError(f"could not remove {run_dir}/: {exc.strerror or exc}") from None
    return summary
