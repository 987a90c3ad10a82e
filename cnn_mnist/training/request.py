"""What `cnn train`'s options ask for: the config to train with, and the run to resume.

Resolved before TensorFlow is imported, so a wrong option, key or run id is answered at once;
the run itself is pipeline.py's. A library function (no click, no printing): the CLI, the tests
and anything else that starts runs as `cnn train` does call it.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

from cnn_mnist.config.load import load_config
from cnn_mnist.config.schema import Config
from cnn_mnist.training.cluster import chief_task, read_tf_config
from cnn_mnist.training.record import describe_resumed, find_run_to_resume, load_run_config

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class TrainRequest:
    """`cnn train`'s options resolved: the config to train with, and the run to resume."""

    config: Config
    resume: Path | None = None
    own_config: bool = True  # False: another worker, which trains with the chief's config


def request(
    config_path: str | None = None,
    sets: tuple[str, ...] = (),
    overrides: dict | None = None,
    *,
    resume: str | None = None,
) -> TrainRequest:
    """The config and run for `cnn train`'s options. `resume` is "" for the most recent
    unfinished run, or a run id; `overrides` are key paths from the options (None: not given).
    A run resumes with the config it started with (its data path and distribution may change:
    the files may have moved, and the batch is global on any hardware)."""
    overrides = {k: v for k, v in (overrides or {}).items() if v is not None}
    config = load_config(config_path, sets=sets, overrides=overrides)
    if config.sweep is not None:
        log.info(
            "note: this config has a sweep: section; cnn train trains it as it is, and "
            "`cnn sweep` runs the search"
        )
        config = config.model_copy(update={"sweep": None})
    if resume is None:
        return TrainRequest(config)
    if config.training.distribution == "multi_worker" and not chief_task(read_tf_config()):
        return TrainRequest(config, own_config=False)  # the chief finds the run and sends it
    run_dir = find_run_to_resume(config.tensorboard.log_dir, resume or None)
    log.info("Resuming %s", describe_resumed(run_dir))
    resumed = load_run_config(run_dir, overrides.get("data.path"))
    if "training.distribution" in overrides:
        resumed = resumed.with_values({"training.distribution": overrides["training.distribution"]})
    return TrainRequest(resumed, run_dir)
