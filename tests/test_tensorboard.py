"""`cnn tensorboard`'s library: the folder checked, TensorBoard run as its own process."""

import subprocess
import sys

import pytest

from cnn_mnist.core.errors import CnnError, ConfigError
from cnn_mnist.tools import tensorboard


def test_a_missing_logdir_says_how_to_make_one(tmp_path):
    with pytest.raises(ConfigError, match=r"run `cnn train` first, or pass --logdir"):
        tensorboard.check_logdir(tmp_path / "none")
    tensorboard.check_logdir(tmp_path)


def test_command_line_and_address():
    argv = tensorboard.command_line("logs", 6007, "0.0.0.0")
    assert argv[:3] == [sys.executable, "-m", "tensorboard.main"]
    assert argv[3:] == ["--logdir", "logs", "--port", "6007", "--host", "0.0.0.0"]
    assert tensorboard.address("localhost", 6006) == "http://localhost:6006/"


@pytest.mark.parametrize("code, fails", [(0, False), (130, False), (-2, False), (1, True)])
def test_run_tensorboard_reads_its_exit_code(monkeypatch, tmp_path, code, fails):
    calls = []

    def call(argv, env, stderr):
        calls.append((argv, env, stderr))
        return code

    monkeypatch.setattr(subprocess, "call", call)
    if fails:
        with pytest.raises(CnnError, match="port 6006 in use"):
            tensorboard.run_tensorboard(tmp_path, 6006, "localhost")
    else:
        assert tensorboard.run_tensorboard(tmp_path, 6006, "localhost") == code
    argv, env, stderr = calls[0]
    assert stderr is subprocess.DEVNULL and "TF_CPP_MIN_LOG_LEVEL" in env


def test_ctrl_c_stops_it_quietly(monkeypatch, tmp_path):
    def call(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(subprocess, "call", call)
    assert tensorboard.run_tensorboard(tmp_path, 6006, "localhost", verbose=True) == 0
