"""What `cnn runs` prints: the list of runs, one run in full, runs side by side (as text)."""

from __future__ import annotations

import datetime
import json
from pathlib import Path

from cnn_mnist.core.datasets import DIGITS
from cnn_mnist.tools.runs import (
    Comparison,
    RunSummary,
    class_names,
    folder_size,
    per_class_f1,
    show_value,
    summarize,
)
from cnn_mnist.training.hparams import hparams_of
from cnn_mnist.training.record import RunFile, read_record

DIFFERS_WIDTH = 60  # the list's `differs` column; `cnn runs show` and --json give them all


def seconds(value: float | None) -> str:
    """4.2s, 1m32s, 2h05m."""
    if value is None:
        return "-"
    if value < 60:
        return f"{value:.1f}s"
    minutes, secs = divmod(int(round(value)), 60)
    return f"{minutes}m{secs:02d}s" if minutes < 60 else f"{minutes // 60}h{minutes % 60:02d}m"


def when(started: str | None) -> str:
    """An ISO time from run.json as `2026-12-01 18:41` (its own clock's time)."""
    try:
        return (
            datetime.datetime.fromisoformat(started).strftime("%Y-%m-%d %H:%M") if started else "-"
        )
    except ValueError:
        return str(started)


def _epochs(run: RunSummary) -> str:
    if run.epochs_done is None and run.epochs is None:
        return "-"
    return f"{run.epochs_done if run.epochs_done is not None else '?'}/{run.epochs or '?'}"


def _number(value: float | None, digits: int = 4) -> str:
    return "-" if value is None else f"{value:.{digits}f}"


def _differs(run: RunSummary, width: int | None = DIFFERS_WIDTH) -> str:
    text = ", ".join(run.differences) or "-"
    if run.compared_to and run.compared_to != run.config:
        text = f"(vs {run.compared_to}) {text}"
    return text if width is None or len(text) <= width else text[: width - 3] + "..."


def table(rows: list[list[str]]) -> str:
    """Left-aligned columns, two spaces apart; the first row is the header."""
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    return "\n".join(
        "  ".join(cell.ljust(w) for cell, w in zip(row, widths)).rstrip() for row in rows
    )


def format_list(listed: list[RunSummary]) -> str:
    """`cnn runs`: newest first, one line each."""
    rows = [
        [
            "ID",
            "STATUS",
            "STARTED",
            "TIME",
            "EPOCHS",
            "TEST ACC",
            "DATASET",
            "CONFIG",
            "DIFFERS",
            "MODEL",
        ]
    ]
    for run in listed:
        model = f"{run.model_path}{' *' if run.published else ''}" if run.model_path else "-"
        rows.append(
            [
                run.id,
                run.status,
                when(run.started),
                seconds(run.duration_s),
                _epochs(run),
                _number(run.test_accuracy),
                run.dataset,
                _config_name(run),
                _differs(run) if run.problem is None or run.status == "failed" else run.problem,
                model,
            ]
        )
    notes = [f"* {run.published} is run {run.id}'s model" for run in listed if run.published]
    return "\n".join([table(rows), *notes])


def _config_name(run: RunSummary) -> str:
    """The config's name, and the sweep and trial a sweep's run came from."""
    name = Path(run.config).name
    return f"{name} ({run.sweep} #{run.trial})" if run.sweep else name


def format_json(listed: list[RunSummary]) -> str:
    return json.dumps([run.to_dict() for run in listed], indent=2)


def format_best(run: RunSummary, metric: str) -> str:
    return (
        f"{run.id}  {metric} {_number(getattr(run, metric))}  config {run.config}"
        f"  differs {_differs(run, None)}\nmodel {run.model_path or '-'}"
    )


def _settings(record: RunFile) -> str:
    """The run's hparams (as the HParams dashboard has them) on one line."""
    values = record.hparams
    if values is None:  # a run from before hparams were recorded
        try:
            values = hparams_of(
                record.config or {},
                record.metrics.params if record.metrics else None,
                record.accelerator.dtype_policy if record.accelerator else None,
                record.config_source,
                record.sweep.model_dump() if record.sweep else None,
            )
        except (KeyError, TypeError, ValueError, AttributeError):  # a damaged record
            return "? (run.json's config is incomplete)"
    return ", ".join(
        f"{key.split('.', 1)[-1] if key != 'data.dataset' else 'dataset'}={show_value(value)}"
        for key, value in values.items()
        if key != "config"
    )


def _epoch_table(record: RunFile | None) -> str:
    history = (record.metrics.history if record and record.metrics else None) or {}
    if not history:
        return ""
    names = list(history)
    count = max(len(values) for values in history.values())
    rows = [["epoch", *names]]
    for i in range(count):
        rows.append(
            [str(i + 1), *(_number(history[n][i]) if i < len(history[n]) else "-" for n in names)]
        )
    return table(rows)


def _exports(exports: list[dict]) -> list[str]:
    """`cnn runs show`'s lines for a run's exports."""
    lines = []
    for e in exports:
        c = e.get("checks") or {}
        what = "float32" if e.get("quantize") == "none" else e.get("quantize")
        lines.append(
            f"  {e.get('format')} {what}: {e.get('path')} "
            f"({(e.get('bytes') or 0) / 1e6:.2f} MB), accuracy "
            f"{c.get('export_accuracy', float('nan')):.4f} (Keras "
            f"{c.get('keras_accuracy', float('nan')):.4f}), agree "
            f"{c.get('agreement', float('nan')):.2%}, max diff "
            f"{c.get('max_prob_diff', float('nan')):.2g}, "
            f"{c.get('ms_per_image', float('nan')):.3f} ms/image"
        )
    return lines


def format_show(run_dir: Path) -> str:
    """`cnn runs show`: how it went, its settings, metrics per epoch, timings and files."""
    run, (data, _) = summarize(run_dir), read_record(run_dir)
    lines = [
        f"Run       {run.id} ({run.status})",
        f"Started   {(run.started or '-').replace('T', ' ')}, took "
        f"{seconds(run.duration_s)}, epochs {_epochs(run)}",
    ]
    if run.problem:
        lines.append(f"Problem   {run.problem}")
    if data and data.config:
        lines += [
            f"Config    {run.config}; differs: {_differs(run, None)}",
            f"Settings  {_settings(data)}",
        ]
    if run.sweep:
        lines.append(f"Sweep     {run.sweep}, trial {run.trial}")
    if run.test_accuracy is not None:
        lines.append(
            f"Test      accuracy {_number(run.test_accuracy)}, loss {_number(run.test_loss)}"
        )
    f1 = per_class_f1(run_dir)
    if f1:
        names = class_names(run_dir)
        lines.append("F1        " + "  ".join(f"{names[d]}: {v:.3f}" for d, v in enumerate(f1)))
    if data is not None and data.exports:
        lines += [
            "Exports   checked on the test set against Keras",
            *_exports([e.to_json() for e in data.exports]),
        ]
    epochs = _epoch_table(data)
    if epochs:
        lines += ["", epochs]
    timings = {
        k: v
        for k, v in ((data.timings_s if data else None) or {}).items()
        if isinstance(v, (int, float))
    }
    if timings:
        lines += ["", "Timings   " + ", ".join(f"{k} {seconds(v)}" for k, v in timings.items())]
    lines += ["", f"Files     {run_dir}/ ({folder_size(run_dir) / 1e6:.1f} MB)"]
    lines += [f"  {p.name}{'/' if p.is_dir() else ''}" for p in sorted(Path(run_dir).iterdir())]
    if run.published:
        lines.append(f"Its model is the one at {run.published}.")
    return "\n".join(lines)


def format_comparison(comparison: Comparison) -> str:
    """`cnn runs compare`: the settings that differ, then the results, one column per run."""
    runs = comparison.runs
    rows = [["", *(run.id for run in runs)]]
    rows += [[key, *(show_value(v) for v in values)] for key, values in comparison.settings.items()]
    if not comparison.settings:
        rows.append(["(settings)", *("same" for _ in runs)])
    rows += [
        ["status", *(run.status for run in runs)],
        ["test accuracy", *(_number(run.test_accuracy) for run in runs)],
        ["test loss", *(_number(run.test_loss) for run in runs)],
    ]
    # Runs of different datasets: label i is a different class in each ("T-shirt/top / 0").
    names = [class_names(run.run_dir) for run in runs] or [list(DIGITS)]
    for digit in range(10):
        label = " / ".join(dict.fromkeys(n[digit] for n in names))
        rows.append(
            [
                f"F1 {label}",
                *(_number(f1[digit], 3) if f1 and digit < len(f1) else "-" for f1 in comparison.f1),
            ]
        )
    rows += [
        ["epochs", *(_epochs(run) for run in runs)],
        ["time", *(seconds(run.duration_s) for run in runs)],
    ]
    return table(rows)
