"""`cnn runs`: the run folders in `logs/fit/<run-id>/`, listed, compared, ranked and removed.

Each folder holds `config.yaml` and `run.json`, read through record.py (the typed record that
the run writes). A run id sorts by time (stamps.py).
"""

from __future__ import annotations

import dataclasses
import json
import shutil
from dataclasses import dataclass
from pathlib import Path

from cnn_mnist.config.load import differences, load_config, value_at
from cnn_mnist.core.datasets import DIGITS
from cnn_mnist.core.errors import CnnError, ConfigError, OutputError
from cnn_mnist.core.paths import MODEL_PATH
from cnn_mnist.training.hparams import layer_stack
from cnn_mnist.training.record import RunFile, epochs_logged, killed, killed_reason, read_record

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
        out.update(
            model_path=str(self.model_path) if self.model_path else None,
            run_dir=str(self.run_dir),
            differences=list(self.differences),
        )
        return out


def run_folders(log_dir: str | Path) -> list[Path]:
    """The run folders in `log_dir`, newest first (run ids sort by time); [] if none."""
    log_dir = Path(log_dir)
    if not log_dir.is_dir():
        return []
    return sorted(
        (p for p in log_dir.iterdir() if p.is_dir() and not p.name.startswith(".")),
        key=lambda p: p.name,
        reverse=True,
    )


def list_runs(log_dir: str | Path) -> list[RunSummary]:
    """Every run in `log_dir`, newest first; [] if there is none (or no such folder)."""
    bases: dict = {}
    return [summarize(run_dir, bases) for run_dir in run_folders(log_dir)]


def no_runs(log_dir: str | Path) -> ConfigError:
    return ConfigError(f"no runs in {Path(log_dir)}/ yet: run `cnn train` first, or pass --logdir")


def find_run(log_dir: str | Path, prefix: str) -> Path:
    """The run folder whose id is `prefix` or starts with it, if exactly one does."""
    folders = run_folders(log_dir)
    if not folders:
        raise no_runs(log_dir)
    matches = [p for p in folders if p.name == prefix] or [
        p for p in folders if p.name.startswith(prefix)
    ]
    if not matches:
        raise ConfigError(f"no run {prefix!r} in {Path(log_dir)}/; `cnn runs` lists the run ids")
    if len(matches) > 1:
        shown = ", ".join(p.name for p in matches[:3]) + (", ..." if len(matches) > 3 else "")
        raise ConfigError(
            f"run id {prefix!r} is ambiguous: {len(matches)} runs start with it "
            f"({shown}); give more of it"
        )
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
    return RunSummary(
        id=run_dir.name,
        status=NO_RECORD if data is None and not (run_dir / "run.json").exists() else CORRUPT,
        started=None,
        test_accuracy=None,
        config="?",
        model_path=model,
        run_dir=run_dir,
        epochs_done=epochs_logged(run_dir) or None,
        published=_published(model, {}, {} if bases is None else bases),
        problem=problem,
    )


def _summary(run_dir: Path, record: RunFile, bases: dict) -> RunSummary:
    metrics, config, source = record.metrics, record.config or {}, record.config_source
    differ, compared_to = config_differences(config, source, bases) if config else ((), None)
    done, sweep, model = record.epochs_done, record.sweep, _run_model(run_dir)
    status, problem = record.status, record.error
    if status == "running" and killed(record):
        status, problem = "interrupted", killed_reason(record)
    return RunSummary(
        id=run_dir.name,
        status=status,
        started=record.started_at,
        test_accuracy=metrics.test_accuracy if metrics else None,
        config=source or "default",
        model_path=model,
        run_dir=run_dir,
        test_loss=metrics.test_loss if metrics else None,
        duration_s=record.duration_s(),
        epochs_done=done if done is not None else epochs_logged(run_dir),
        epochs=config.get("training", {}).get("epochs"),
        differences=differ,
        compared_to=compared_to,
        sweep=sweep.name if sweep else None,
        trial=sweep.trial if sweep else None,
        dataset=record.dataset_name,
        published=_published(model, config, bases),
        problem=problem,
    )


def _run_model(run_dir: Path) -> Path | None:
    return next((p for p in (run_dir / "model.h5", run_dir / "model.keras") if p.is_file()), None)


def _published(model: Path | None, config: dict, cache: dict) -> str | None:
    """The stable model path (output.model_path, or the default one) if it holds this run's
    model: the same file (a hard link) or, where links were not possible, a copy that names
    this run inside (its card; read once per path)."""
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
            from cnn_mnist.stages.handle import card_of

            cache[("stable", stable)] = card_of(stable).run_id
        if cache[("stable", stable)] == model.parent.name:
            return stable
    return None


# --- what differs: from the config a run came from, or between runs -------------------------

# Where the data lives is not a setting, nor the sweep: section a sweep's trials came from (their
# settings are the differences); a seed drawn at random (the config has none) always differs
# from null.
_NOT_SETTINGS = ("data.path", "sweep")
_ORDER = ("model", "compile", "training", "data")  # differences list the model's first


def config_differences(
    config: dict, source: str | None, bases: dict | None = None
) -> tuple[tuple[str, ...], str]:
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
    return tuple(f"{key}={show_value(changed[key][1])}" for key in _in_order(changed)), compared_to


def _in_order(keys) -> list[str]:
    """Key paths, the model's first, then compile, training, data and the rest."""
    return sorted(
        keys,
        key=lambda k: _ORDER.index(k.split(".")[0]) if k.split(".")[0] in _ORDER else len(_ORDER),
    )


def changed_settings(a, b) -> dict[str, tuple]:
    """{key path: (value in a, value in b)} where two config dicts differ, leaving out what is
    not a setting (config.differences: a list of layers that changes in kind or length is one
    value, shown as the layer stack)."""
    return {
        key: values
        for key, values in differences(a, b, ignore=_NOT_SETTINGS).items()
        if not (key == "training.seed" and values[0] is None)
    }


def show_value(value) -> str:
    """A setting as `--set` would take it; a list of layers as the layer stack."""
    if (
        isinstance(value, list)
        and value
        and all(isinstance(x, dict) and "type" in x for x in value)
    ):
        return layer_stack(value)
    if isinstance(value, float):
        return f"{value:g}"
    if isinstance(value, (dict, list)):
        return json.dumps(value, separators=(",", ":"))
    return (
        "null" if value is None else str(value).lower() if isinstance(value, bool) else str(value)
    )


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
    keys = _in_order(
        dict.fromkeys(key for other in known[1:] for key in changed_settings(known[0], other))
    )
    # A list that changed as a whole (the layer stack) needs no rows for its items too.
    keys = [k for k in keys if not any(k.startswith(f"{whole}[") for whole in keys)]
    settings = {
        key: tuple(value_at(config, key) if config is not None else UNKNOWN for config in configs)
        for key in keys
    }
    if len({s.config for s in summaries}) > 1:
        settings = {"config": tuple(s.config for s in summaries), **settings}
    return Comparison(summaries, settings, tuple(per_class_f1(d) for d in run_dirs))


def _config_of(run_dir: Path) -> dict | None:
    record, _ = read_record(run_dir)
    return record.config if record is not None else None


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
    return list(DIGITS)


def best_run(log_dir: str | Path, metric: str = "test_accuracy") -> RunSummary:
    """The completed run with the best `metric` (test_accuracy: highest; test_loss: lowest)."""
    if metric not in METRICS:
        raise ConfigError(f"--metric {metric}: expected one of {', '.join(METRICS)}")
    listed = list_runs(log_dir)
    if not listed:
        raise no_runs(log_dir)
    scored = [r for r in listed if r.status == "completed" and getattr(r, metric) is not None]
    if not scored:
        raise ConfigError(
            f"no completed run in {Path(log_dir)}/ has a {metric} yet "
            f"({len(listed)} run(s), none completed)"
        )
    return METRICS[metric](scored, key=lambda r: getattr(r, metric))


def folder_size(folder: Path) -> int:
    return sum(p.stat().st_size for p in Path(folder).rglob("*") if p.is_file())


def check_removable(summary: RunSummary, force: bool = False) -> None:
    """A run whose model the stable model path holds, or one that may still be training, is
    only removed with `force`; one training now on this machine, never (check_not_training)."""
    check_not_training(summary.run_dir)
    if force:
        return
    if summary.published:
        raise ConfigError(
            f"run {summary.id}'s model is the one at {summary.published}; pass "
            f"--force to remove the run anyway ({summary.published} stays)"
        )
    if summary.status == "running":
        raise ConfigError(
            f"run {summary.id} is marked running (training now, or killed before "
            "it could record how it ended); pass --force to remove it"
        )


def check_not_training(run_dir: Path) -> None:
    """A run whose process is training it now on this machine is never removed: it would go
    on writing into a folder that is gone (--force is for one killed before it could say)."""
    from cnn_mnist.stages.guards import process_alive

    record, _ = read_record(run_dir)
    if (
        record is not None
        and record.status == "running"
        and process_alive(record.host, record.pid, record.started_at)
    ):
        raise ConfigError(
            f"run {run_dir.name} is training now (process {record.pid}); stop it first "
            f"(Ctrl-C in its terminal, or `kill {record.pid}`), then remove it"
        )


def remove_run(run_dir: Path, force: bool = False) -> RunSummary:
    """Delete a run folder (see `check_removable`); returns what it was."""
    summary = summarize(run_dir)
    check_removable(summary, force)
    try:
        shutil.rmtree(run_dir)
    except OSError as exc:
        raise OutputError(f"could not remove {run_dir}/: {exc.strerror or exc}") from None
    return summary
