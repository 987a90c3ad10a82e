"""Run ids and run.json's times (cnn_mnist/core/stamps.py)."""

from __future__ import annotations

import datetime
import time

from cnn_mnist.core import stamps


def test_run_ids_sort_by_time_and_differ():
    first = stamps.new_run_id()
    time.sleep(1.01)
    second, third = stamps.new_run_id(), stamps.new_run_id()
    assert first < second and second != third
    assert len(first.split("-")) == 3 and len(first.split("-")[2]) == 4


def test_times_carry_their_offset_and_read_back():
    text = stamps.now()
    parsed = stamps.parse_time(text)
    assert parsed is not None and parsed.utcoffset() is not None
    assert abs((datetime.datetime.now().astimezone() - parsed).total_seconds()) < 5
    assert stamps.parse_time("yesterday") is None and stamps.parse_time(None) is None
