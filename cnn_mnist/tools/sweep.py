"""`cnn sweep`: a search over the `sweep:` section of a config, by Optuna.

Each trial is an ordinary training run (pipeline.train) of the config with the parameters' key
paths set to the trial's values: its own run folder, run.json (tagged `"sweep": {"name",
"trial"}`), and TensorBoard logs. After each epoch the trial reports its metric, and Optuna's
median rule may stop it (pruned). A trial that fails (a loss that turns NaN, a config the shape
check rejects, any error) is recorded as failed with its reason, and the sweep goes on.

The study lives in Optuna's storage: by default a SQLite file `logs/sweeps/<study>.db` (beside
tensorboard.log_dir); a PostgreSQL URL lets processes on several machines share one study.
`trials` is the study's total, counted over every process: a process starts a trial only while
fewer are running or done, and a trial that turns out to be one too many (two processes asked
at the same moment) stops at once as `surplus`. Interrupted trials do not count, so running the
same command again continues the study.
"""

from __future__ import annotations

import copy
import logging
import math
import os
import platform
import re
import secrets
import time
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NoReturn

import yaml

from cnn_mnist.config.load import (
    apply_override,
    check_shapes,
    parse_set,
    read_yaml,
    resolve_config_path,
    validate,
)
from cnn_mnist.config.schema import Config, SweepConfig
from cnn_mnist.core import files
from cnn_mnist.core.errors import CnnError, ConfigError, OutputError, shown
from cnn_mnist.core.runtime import import_tensorflow, signals_deferred
from cnn_mnist.core.stamps import new_run_id
from cnn_mnist.stages.guards import TrainingFailed
from cnn_mnist.training import pipeline

log = logging.getLogger(__name__)

SWEEP_DIR = "sweeps"  # beside tensorboard.log_dir: logs/sweeps/
INTERRUPTED = "interrupted"
SURPLUS = "surplus"  # a trial past the study's total, stopped before it trained
# A worker that stops beating for GRACE_S seconds (killed, its machine down) has its trial
# marked failed by the next worker to start a trial, and that trial does not count.
HEARTBEAT_S, GRACE_S = 10, 60
CONNECT_TIMEOUT_S = 10  # seconds to reach a PostgreSQL server


class StorageError(CnnError):
    """The study's storage cannot be opened, or holds no such study."""


class SweepInterrupted(CnnError):
    """Ctrl-C or SIGTERM: the trial in progress is marked failed ("interrupted")."""

    exit_code = 130


class TrainingDiverged(CnnError):
    """The loss turned NaN or infinite."""


class _TrialFailed(Exception):
    """A trial's failure, already recorded with its reason: the sweep goes on."""


@dataclass(frozen=True)
class Sweep:
    """A sweep to run: the config with its sweep section, where its study lives, and the
    study's total number of trials."""

    config: Config
    raw: dict  # the YAML as read, with --set applied: each trial sets its values in a copy
    source: str  # the config file
    study: str
    storage: str
    trials: int

    @property
    def folder(self) -> Path:
        return Path(self.config.tensorboard.log_dir).parent / SWEEP_DIR

    @property
    def best_config_path(self) -> Path:
        return self.folder / f"{self.study}-best.yaml"

    @property
    def section(self) -> SweepConfig:
        """The config's sweep: section (load_sweep refuses a config without one)."""
        if self.config.sweep is None:
            raise ConfigError(f"{self.source} has no sweep: section to search")
        return self.config.sweep


@dataclass(frozen=True)
class TrialRow:
    number: int
    state: str  # running, complete, pruned or failed
    value: float | None
    params: dict[str, Any]
    run_id: str | None
    host: str
    reason: str


@dataclass(frozen=True)
class SweepReport:
    study: str
    storage: str  # without a password
    metric: str
    direction: str
    trials: int  # the study's total
    counted: int  # trials that count toward it
    rows: list[TrialRow]
    best: TrialRow | None
    best_config: Path | None  # the best trial's resolved config, for `cnn train --config`


# --- planning ---------------------------------------------------------------------------------


def plan(
    config_path: str | None,
    sets: tuple[str, ...] = (),
    *,
    trials: int | None = None,
    storage: str | None = None,
    study: str | None = None,
) -> Sweep:
    """The sweep in a config file, its parameters checked against the config; `trials`,
    `storage` and `study` override the section and the defaults."""
    path = resolve_config_path(config_path)
    raw = read_yaml(path)
    for item in sets:
        apply_override(raw, *parse_set(item))
    config = validate(raw, source=f"config {path.name}")
    if config.sweep is None:
        raise ConfigError(
            f"{path} has no sweep: section to search; add one, e.g.\n  sweep: "
            "{parameters: {compile.learning_rate: {low: 1e-4, high: 1e-2, log: true}}}"
        )
    for key, parameter in config.sweep.parameters.items():
        _check_parameter(raw, key, parameter, path.name)
    name = study or path.stem
    if not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9_.-]*", name):
        raise ConfigError(f"--study {name!r}: use letters, digits, '.', '_' and '-'")
    total = trials or config.sweep.trials
    if config.sweep.method == "grid":
        # A grid has values for every parameter (the schema checks).
        sizes = [len(p.values) for p in config.sweep.parameters.values() if p.values is not None]
        total = min(total, math.prod(sizes))
    sweep = Sweep(config, raw, str(path), name, storage or "", total)
    if not storage:
        files.ensure_writable_dir(sweep.folder, "sweep studies")
        sweep = Sweep(
            config, raw, str(path), name, f"sqlite:///{sweep.folder.resolve()}/{name}.db", total
        )
    return sweep


def _check_parameter(raw: dict, key: str, parameter, source: str) -> None:
    """Each value (or both ends of a range) set at `key` must give a valid config."""
    candidates = (
        parameter.values if parameter.values is not None else [parameter.low, parameter.high]
    )
    for value in candidates:
        try:
            _with_values(raw, {key: value})
        except ConfigError as exc:
            problem = str(exc).splitlines()[0].removeprefix("invalid config: ")
            problem = problem.removeprefix(f"--set {key}: ")
            raise ConfigError(
                f"invalid sweep in {source}: sweep.parameters.{key}: {shown(value)} "
                f"does not fit the config: {problem}"
            ) from None


def _with_values(raw: dict, values: dict[str, Any]) -> Config:
    """The config without its sweep, with `values` at their key paths; schema-checked. The
    paths reach the defaults too (model.layers[3].rate in the lecture's layers)."""
    trial = copy.deepcopy(raw)
    trial.pop("sweep", None)
    trial = validate(trial).to_dict()
    for key, value in values.items():
        apply_override(trial, key, value)
    return validate(trial)


def trial_config(sweep: Sweep, params: dict[str, Any]) -> Config:
    """A trial's config: the parameters set, the shapes checked, and a seed drawn if the config
    has none (so the trial's config repeats it)."""
    config = _with_values(sweep.raw, params)
    check_shapes(config)
    if config.training.seed is None:
        config = config.with_values({"training.seed": secrets.randbelow(2**31)})
    return config


# --- the study --------------------------------------------------------------------------------


def open_study(sweep: Sweep, create: bool = True):
    """The Optuna study in its storage (created if `create`), with the sweep's method and
    pruner."""
    import optuna

    warnings.filterwarnings("ignore", category=optuna.exceptions.ExperimentalWarning)
    section = sweep.section
    samplers = {"tpe": optuna.samplers.TPESampler, "random": optuna.samplers.RandomSampler}
    sampler = (
        optuna.samplers.GridSampler(
            {k: p.values for k, p in section.parameters.items() if p.values is not None}
        )
        if section.method == "grid"
        else samplers[section.method]()
    )
    pruner = (
        optuna.pruners.MedianPruner(n_startup_trials=section.pruning_startup_trials)
        if section.pruning
        else optuna.pruners.NopPruner()
    )
    if not create and _missing_sqlite_file(sweep.storage):  # --status leaves no empty file
        raise _no_study(sweep)
    storage = _storage(sweep.storage)
    if not create:
        try:
            return optuna.load_study(
                study_name=sweep.study, storage=storage, sampler=sampler, pruner=pruner
            )
        except KeyError:
            raise _no_study(sweep) from None
    for attempt in range(5):  # workers started together race to create it: the others load it
        try:
            return optuna.create_study(
                study_name=sweep.study,
                storage=storage,
                sampler=sampler,
                pruner=pruner,
                direction=section.direction,
                load_if_exists=True,
            )
        except Exception as exc:  # noqa: BLE001 - an integrity error from the race
            if attempt == 4:
                detail = str(exc).strip().splitlines()[0] if str(exc).strip() else repr(exc)
                raise StorageError(
                    f"cannot open study {sweep.study!r} in {_redact(sweep.storage)}: {detail}"
                ) from None
            time.sleep(0.2 + secrets.randbelow(800) / 1000)


def _cannot_write(detail: str) -> str | None:
    """SQLite's words for a full disk or a file it may not write, as the user's reason and
    what to do (None: another error)."""
    lowered = detail.lower()
    if "disk is full" in lowered or "no space" in lowered:
        return "no space left on the device; make room, then run it again"
    if "readonly" in lowered or "read-only" in lowered or "unable to open database" in lowered:
        return (
            "the file or its folder is not writable (a read-only file system, or its "
            "permissions); choose another place (--storage), or fix its permissions"
        )
    return None


def _missing_sqlite_file(url: str) -> bool:
    path = url.removeprefix("sqlite:///")
    return url.startswith("sqlite:///") and path not in ("", ":memory:") and not Path(path).exists()


def _no_study(sweep: Sweep) -> StorageError:
    """No such study yet: the command that starts it, with this --study and --storage."""
    command = f"cnn sweep --config {sweep.source}"
    if sweep.study != Path(sweep.source).stem:
        command += f" --study {sweep.study}"
    if sweep.storage != f"sqlite:///{sweep.folder.resolve()}/{sweep.study}.db":
        command += f" --storage {_redact(sweep.storage)}"
    return StorageError(
        f"no study {sweep.study!r} in {_redact(sweep.storage)} yet; start it with: {command}"
    )


def _storage(url: str):
    """Optuna's database storage with heartbeats, so that a killed worker's trial is failed."""
    import optuna
    from sqlalchemy.exc import DBAPIError

    given = url
    kwargs = {"connect_args": {"timeout": 60}} if url.startswith("sqlite") else {}
    if url.startswith("postgresql://"):  # psycopg 3, the driver we install (SQLAlchemy 2.0
        url = "postgresql+psycopg://" + url.removeprefix("postgresql://")  # would want psycopg2)
        # A host that takes the connection but never answers would hang here for good.
        kwargs = {"connect_args": {"connect_timeout": CONNECT_TIMEOUT_S}}
    last: Exception | None = None
    for _ in range(5):  # two workers creating the tables at once: one of them retries
        try:
            return optuna.storages.RDBStorage(
                url, engine_kwargs=kwargs, heartbeat_interval=HEARTBEAT_S, grace_period=GRACE_S
            )
        except DBAPIError as exc:  # the database's own error: a race, or down for now
            last = exc
            if "timeout" in str(exc).lower():  # no answer: waiting again would not help
                break
            time.sleep(0.2 + secrets.randbelow(800) / 1000)
        except Exception as exc:  # noqa: BLE001 - a bad URL, a missing driver: reported below
            last = exc
            break
    detail = str(last).strip().splitlines()[0] if str(last).strip() else type(last).__name__
    if url.startswith("sqlite:///") and _cannot_write(detail):
        raise OutputError(
            f"could not write the sweep's study to {url.removeprefix('sqlite:///')}: "
            f"{_cannot_write(detail)}"
        )
    raise StorageError(
        f"cannot open the sweep storage {_redact(given)}: {detail}\n"
        f"expected sqlite:///FILE.db or postgresql://USER:PASSWORD@HOST[:PORT]/DB"
        " (a server that is up and reachable from here): check --storage"
    ) from None


def _redact(url: str) -> str:
    try:
        from sqlalchemy.engine import make_url

        return make_url(url).render_as_string(hide_password=True)
    except Exception:  # noqa: BLE001 - not a URL: nothing to hide
        return url


def _counts(trial) -> bool:
    """Whether a trial counts toward the study's total: interrupted, surplus and abandoned
    (its worker stopped beating: no reason recorded) trials do not."""
    state = trial.state.name
    if state == "FAIL":
        return trial.user_attrs.get("reason", INTERRUPTED) not in (INTERRUPTED, SURPLUS)
    return state in ("RUNNING", "COMPLETE", "PRUNED", "WAITING")


def counted(study, before: int | None = None) -> int:
    """Trials that count toward the total (those numbered below `before`, if given)."""
    return sum(
        1
        for t in study.get_trials(deepcopy=False)
        if _counts(t) and (before is None or t.number < before)
    )


# --- running ----------------------------------------------------------------------------------


def run(sweep: Sweep, progress: int = 1, verbose: bool = False) -> SweepReport:
    """Run trials until the study has `sweep.trials` of them (counting other processes'), then
    report. Ctrl-C marks the trial in progress `interrupted` and raises SweepInterrupted."""
    import optuna

    optuna.logging.set_verbosity(optuna.logging.INFO if verbose else optuna.logging.ERROR)
    study = open_study(sweep)
    import_tensorflow(verbose)  # quietly (unless verbose), before the reporter imports Keras
    objective = _Objective(sweep, progress, verbose)
    while True:
        optuna.storages.fail_stale_trials(study)
        if counted(study) >= sweep.trials:
            break
        try:
            study.optimize(objective, n_trials=1, catch=(_TrialFailed,))
        except (KeyboardInterrupt, CnnError) as exc:
            if isinstance(exc, CnnError) and exc.exit_code != 130:  # 130: interrupted
                raise
            which = (
                "before a trial started"
                if objective.number is None
                else f"trial {objective.number} is marked failed (interrupted)"
            )
            raise SweepInterrupted(
                f"interrupted: {which}; "
                f"{counted(study)} of {sweep.trials} trial(s) count so far. Run the same "
                "command again to continue the study."
            ) from None
    return report(sweep, study)


class _Objective:
    """One trial: the values drawn, an ordinary training run, its value or failure."""

    def __init__(self, sweep: Sweep, progress: int, verbose: bool) -> None:
        self.sweep, self.progress, self.verbose, self.number = sweep, progress, verbose, None

    def __call__(self, trial) -> float:
        from optuna import TrialPruned

        self.number = trial.number
        _set(trial, "host", platform.node())
        _set(trial, "pid", os.getpid())
        try:
            return self._train(trial)
        except (KeyboardInterrupt, SweepInterrupted) as exc:
            _set(trial, "reason", INTERRUPTED)
            raise exc
        except (_TrialFailed, TrialPruned):
            raise
        except OutputError as exc:  # a full disk, a folder it may not write: so would the next
            _set(trial, "reason", str(exc).strip().splitlines()[0])
            raise OutputError(
                f"{str(exc).strip().splitlines()[0].rstrip('.')}; the sweep stops: "
                "make room (or fix the permissions), then run the same command again to "
                "continue the study"
            ) from None
        except CnnError as exc:
            if exc.exit_code == 130:  # pipeline.TrainingInterrupted
                _set(trial, "reason", INTERRUPTED)
                raise
            self._fail(trial, str(exc))
        except Exception as exc:  # noqa: BLE001 - a trial's error must not end the sweep
            self._fail(trial, f"{type(exc).__name__}: {exc}")

    def _fail(self, trial, message: str) -> NoReturn:
        reason = message.strip().splitlines()[0] if message.strip() else "failed"
        _set(trial, "reason", reason)
        log.warning("trial %d failed: %s", trial.number, reason)
        raise _TrialFailed(reason)

    def _train(self, trial) -> float:
        import optuna

        sweep = self.sweep
        if counted(trial.study, before=trial.number) >= sweep.trials:
            _set(trial, "reason", SURPLUS)
            raise _TrialFailed(SURPLUS)  # another worker took the last one meanwhile
        params = suggest(trial, sweep.section)
        log.info("Trial %d of study %s: %s", trial.number, sweep.study, _format_params(params))
        config = trial_config(sweep, params)
        _set(trial, "config", config.to_dict())
        run_id = new_run_id()
        _set(trial, "run_id", run_id)
        reporter = pruning_reporter(trial, sweep.section.metric)
        try:
            result = pipeline.train(
                _training_copy(sweep, config),
                config_source=sweep.source,
                progress=self.progress,
                verbose=self.verbose,
                callbacks=(reporter,),
                run_id=run_id,
                tags={"sweep": {"name": sweep.study, "trial": trial.number}},
            )
        except TrainingFailed:
            if reporter.pruned_at is None:
                raise
            result = None  # stopped by the pruner, and at chance: the pruner's verdict stands
        if reporter.pruned_at is not None:
            _set(
                trial,
                "reason",
                f"pruned after epoch {reporter.pruned_at + 1}: below the median of earlier trials",
            )
            raise optuna.TrialPruned()
        assert result is not None
        return trial_value(sweep.section.metric, result, reporter.last)


def _training_copy(sweep: Sweep, config: Config) -> Config:
    """What a trial trains: its model is kept in its run folder, and the stable model path is
    the sweep's own, so a sweep never replaces the model `cnn train` made."""
    suffix = Path(config.output.model_path).suffix
    return config.with_values(
        {"output.model_path": str(sweep.folder / sweep.study / f"model{suffix}")}
    )


def _set(trial, key: str, value) -> None:
    """`trial`'s user attribute `key`, written whole: Ctrl-C in the middle of the database write
    would leave its transaction open and the database locked for the next write."""
    with signals_deferred():
        trial.set_user_attr(key, value)


def suggest(trial, section: SweepConfig) -> dict[str, Any]:
    """The trial's value for each parameter, by key path."""
    params = {}
    for key, p in section.parameters.items():
        if p.values is not None:  # kind "values"
            params[key] = trial.suggest_categorical(key, p.values)
            continue
        low, high = p.low, p.high
        assert low is not None and high is not None  # a range: the schema checks both ends
        if p.kind == "int":
            params[key] = trial.suggest_int(key, int(low), int(high), log=p.log)
        else:
            params[key] = trial.suggest_float(key, float(low), float(high), log=p.log)
    return params


def trial_value(metric: str, result, last_epoch: dict[str, float]) -> float:
    """The final model's test accuracy or loss for val_*, the last epoch's value otherwise."""
    if metric == "val_accuracy":
        value = result.evaluation.accuracy
    elif metric == "val_loss":
        value = result.evaluation.loss
    else:
        value = last_epoch.get(metric, math.nan)
    if not math.isfinite(value):
        raise TrainingDiverged(f"{metric} is {value} at the end of training")
    return float(value)


def pruning_reporter(trial, metric: str):
    """A Keras callback: after each epoch, `metric` to the trial; if the pruner says so, training
    stops (the run completes early, like early stopping); a NaN loss fails the trial."""
    import keras

    class PruningReporter(keras.callbacks.Callback):
        def __init__(self) -> None:
            super().__init__()
            self.pruned_at: int | None = None
            self.last: dict[str, float] = {}

        def on_epoch_end(self, epoch, logs=None):
            self.last = {k: float(v) for k, v in (logs or {}).items()}
            loss = self.last.get("loss", 0.0)
            if not math.isfinite(loss):
                raise TrainingDiverged(
                    f"the loss became {loss} in epoch {epoch + 1}: training "
                    "diverged (a learning rate too high?)"
                )
            value = self.last.get(metric)
            if value is None or not math.isfinite(value):
                return
            # A signal in the middle of a database write would leave its transaction open and
            # the database locked for the write that marks the trial interrupted: held till done.
            with signals_deferred():
                trial.report(value, epoch)
                prune = trial.should_prune()
            if prune:
                self.pruned_at = epoch
                self.model.stop_training = True

    return PruningReporter()


# --- reporting --------------------------------------------------------------------------------


def status(sweep: Sweep) -> SweepReport:
    """The study as it stands, without running anything."""
    return report(sweep, open_study(sweep, create=False))


def report(sweep: Sweep, study) -> SweepReport:
    """The trials, the best one, and its config written where `cnn train --config` takes it."""
    rows = [_row(t) for t in study.get_trials(deepcopy=False)]
    complete = [t for t in study.get_trials(deepcopy=False) if t.state.name == "COMPLETE"]
    best, path = None, None
    if complete:
        trial = study.best_trial
        best = next(r for r in rows if r.number == trial.number)
        path = _write_best(sweep, trial)
    section = sweep.section
    return SweepReport(
        sweep.study,
        _redact(sweep.storage),
        section.metric,
        study.direction.name.lower(),
        sweep.trials,
        counted(study),
        rows,
        best,
        path,
    )


def _row(trial) -> TrialRow:
    state = {
        "COMPLETE": "complete",
        "PRUNED": "pruned",
        "FAIL": "failed",
        "RUNNING": "running",
        "WAITING": "waiting",
    }[trial.state.name]
    reason = trial.user_attrs.get("reason", "")
    if state == "failed" and not reason:
        reason = "abandoned: its worker stopped"
    value = (
        trial.value
        if trial.value is not None
        else (
            trial.intermediate_values[max(trial.intermediate_values)]
            if trial.intermediate_values
            else None
        )
    )
    return TrialRow(
        trial.number,
        state,
        value,
        dict(trial.params),
        trial.user_attrs.get("run_id"),
        trial.user_attrs.get("host", ""),
        reason,
    )


def _write_best(sweep: Sweep, trial) -> Path | None:
    """The best trial's resolved config (seed included) as YAML."""
    config = trial.user_attrs.get("config")
    if not config:
        return None
    header = (
        f"# The best trial ({trial.number}) of sweep {sweep.study}: "
        f"{sweep.section.metric} {trial.value:.4f} (run "
        f"{trial.user_attrs.get('run_id')}).\n# Train it again: cnn train --config "
        f"{sweep.best_config_path}\n"
    )
    return files.write_text(
        sweep.best_config_path, header + yaml.safe_dump(config, sort_keys=False)
    )


def _format_params(params: dict[str, Any]) -> str:
    return ", ".join(f"{k}={_fmt(v)}" for k, v in params.items())


def _fmt(value) -> str:
    return f"{value:.4g}" if isinstance(value, float) else str(value)


def format_report(report: SweepReport) -> str:
    """The table of trials, then the best trial and where its config went."""
    keys = list(dict.fromkeys(k for r in report.rows for k in r.params))
    here = platform.node()
    head = ["trial", "state", "value", "run", *keys, "note"]
    table = [head] + [
        [
            str(r.number),
            r.state,
            _fmt(r.value) if r.value is not None else "-",
            (r.run_id or "-") + (f"@{r.host}" if r.host and r.host != here else ""),
            *[_fmt(r.params[k]) if k in r.params else "-" for k in keys],
            r.reason,
        ]
        for r in report.rows
    ]
    widths = [max(len(row[i]) for row in table) for i in range(len(head))]
    lines = [
        f"Study {report.study} in {report.storage}: {report.counted} of {report.trials} "
        f"trial(s), {report.metric} ({report.direction})",
        "",
    ]
    lines += ["  ".join(cell.ljust(w) for cell, w in zip(row, widths)).rstrip() for row in table]
    if report.best is None:
        lines += ["", "No trial has completed yet."]
    else:
        lines += [
            "",
            f"Best trial    {report.best.number}: {report.metric} "
            f"{_fmt(report.best.value)}, run {report.best.run_id}, "
            f"{_format_params(report.best.params)}",
        ]
        if report.best_config:
            lines.append(
                f"Best config   {report.best_config}  (cnn train --config {report.best_config})"
            )
    return "\n".join(lines)
