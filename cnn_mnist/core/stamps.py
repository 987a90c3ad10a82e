"""Time stamps: run ids that sort by time, and the times run.json gives.

A plain module of the core (no TensorFlow, no click): the training run names its folder with
`new_run_id`, and so do `cnn evaluate` and `cnn inspect` for their output folders.
"""

from __future__ import annotations

import datetime
import secrets


def new_run_id() -> str:
    """Sortable by time; the random suffix keeps two runs started together apart."""
    return datetime.datetime.now().strftime("%Y%m%d-%H%M%S") + "-" + secrets.token_hex(2)


def now() -> str:
    """The local time with its offset, to the second, as run.json gives times."""
    return datetime.datetime.now().astimezone().isoformat(timespec="seconds")


def parse_time(text: object) -> datetime.datetime | None:
    """A time as `now` writes it, or None where `text` is not one."""
    try:
        return datetime.datetime.fromisoformat(text) if isinstance(text, str) else None
    except ValueError:
        return None
