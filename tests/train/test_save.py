"""What the loop saves is good: never a non-finite state, never a half-written checkpoint."""

import errno
import os
import subprocess

import jax.numpy as jnp
import numpy as np
import optax
import orbax.checkpoint as ocp
import pytest

from tests.train.quick import quick_config
from tests.train.test_checkpoint import _state
from tfmr_jax.train import CheckpointWriteError, NonFiniteLossError, train
from tfmr_jax.train import loop as loop_lib
from tfmr_jax.train import optim as optim_lib
from tfmr_jax.train.checkpoint import Checkpointer

REVERSE = os.path.join(os.path.dirname(__file__), "..", "..", "configs", "reverse.py")


def _blow_up_at_update(n: int):
  """build_optimizer, whose update number `n` (1-based) is scaled by inf."""

  def build_optimizer(config):
    tx, schedule = optim_lib.build_optimizer(config)
    scale = optax.scale_by_schedule(lambda count: jnp.where(count == n - 1, jnp.inf, 1.0))
    return optax.chain(tx, scale), schedule

  return build_optimizer


def test_a_non_finite_state_is_not_saved_though_its_loss_was_finite(tmp_path, monkeypatch):
  # Update 10's loss is computed before the update, so it is finite; the parameters
  # it leaves are not, and checkpoint 10 is due right after it.
  monkeypatch.setattr(loop_lib, "build_optimizer", _blow_up_at_update(10))
  config = quick_config(
    "reverse", optim={"warmup_steps": 3}, train={"num_steps": 20, "checkpoint_every": 5}
  )
  with pytest.raises(
    NonFiniteLossError, match=r"step 10 made non-finite parameters .*not saved.*\(step 5\)"
  ):
    train(config, str(tmp_path))
  checkpoints = Checkpointer(str(tmp_path / "checkpoints"), keep=2)
  assert checkpoints.steps() == [5]
  checkpoints.close()


def _saved_two(directory: str) -> Checkpointer:
  checkpoints = Checkpointer(directory, keep=3)
  for step in (5, 10):
    checkpoints.save(_state(step, seed=step))
  return checkpoints


def _assert_only_intact_5_and_10(directory: str) -> None:
  assert sorted(os.listdir(directory)) == ["10", "5"]  # no temporary directory left
  checkpoints = Checkpointer(directory, keep=3)
  for step in (5, 10):
    restored = checkpoints.restore(_state(0, seed=0), step=step)
    np.testing.assert_array_equal(restored.params["w"], _state(step, seed=step).params["w"])
  checkpoints.close()


def test_a_failed_write_is_one_error_naming_the_path_and_leaves_nothing_behind(
  tmp_path, monkeypatch
):
  directory = str(tmp_path / "checkpoints")
  checkpoints = _saved_two(directory)

  def disk_full(*args, **kwargs):
    raise OSError(errno.ENOSPC, "No space left on device")

  # As root, chmod does not stop writes: the array writer fails as a full disk would,
  # after orbax made its temporary directory.
  monkeypatch.setattr(ocp.StandardCheckpointHandler, "async_save", disk_full)
  with pytest.raises(CheckpointWriteError, match=rf"step 15 in {directory}: .*No space left"):
    checkpoints.save(_state(15, seed=15))
  checkpoints.close()
  _assert_only_intact_5_and_10(directory)


@pytest.fixture
def small_tmpfs(tmp_path):
  """A 2 MiB tmpfs mounted at tmp_path/disk (needs root; skipped otherwise)."""
  disk = tmp_path / "disk"
  disk.mkdir()
  mounted = subprocess.run(
    ["mount", "-t", "tmpfs", "-o", "size=2m", "tmpfs", str(disk)], capture_output=True
  )
  if mounted.returncode != 0:
    pytest.skip(f"cannot mount a tmpfs here: {mounted.stderr.decode().strip()}")
  yield disk
  subprocess.run(["umount", str(disk)], check=True)


def test_a_full_disk_is_one_error_and_the_earlier_checkpoints_are_untouched(small_tmpfs):
  directory = str(small_tmpfs / "checkpoints")
  checkpoints = _saved_two(directory)
  filler = small_tmpfs / "filler"
  with open(filler, "wb", buffering=0) as f:
    try:
      while True:
        f.write(b"\0" * 4096)
    except OSError as e:
      assert e.errno == errno.ENOSPC
  with pytest.raises(CheckpointWriteError, match=rf"step 15 in {directory}: "):
    checkpoints.save(_state(15, seed=15))
  checkpoints.close()
  filler.unlink()
  _assert_only_intact_5_and_10(directory)


def _train_two_steps_from_the_cli(workdir: str) -> int:
  """`tfmr-jax train` of the reverse recipe for 2 steps in `workdir`; its exit code."""
  from tfmr_jax import cli

  return cli.main(
    ["train", "--config", REVERSE, "--workdir", workdir]
    + ["--config.train.num_steps=2", "--config.optim.warmup_steps=0"]
    + ["--config.train.progress_bar=false", "--config.train.tensorboard=false"]
  )


def test_the_cli_reports_a_failed_write_in_one_line_and_exits_1(tmp_path, monkeypatch, capsys):
  def disk_full(*args, **kwargs):
    raise OSError(errno.ENOSPC, "No space left on device")

  monkeypatch.setattr(ocp.StandardCheckpointHandler, "async_save", disk_full)
  workdir = str(tmp_path / "run")
  rc = _train_two_steps_from_the_cli(workdir)
  err = capsys.readouterr().err
  assert rc == 1
  assert "tfmr-jax train: " in err and "No space left on device" in err
  assert "Traceback" not in err
  assert not [name for name in os.listdir(os.path.join(workdir, "checkpoints")) if "tmp" in name]


def test_a_second_ctrl_c_during_a_save_is_one_line_and_leaves_no_partial_checkpoint(
  tmp_path, monkeypatch, capsys
):
  def interrupted(*args, **kwargs):
    raise KeyboardInterrupt  # what the second Ctrl-C raises inside the save

  monkeypatch.setattr(ocp.StandardCheckpointHandler, "async_save", interrupted)
  workdir = str(tmp_path / "run")
  rc = _train_two_steps_from_the_cli(workdir)
  err = capsys.readouterr().err
  assert rc == 130 and "Traceback" not in err
  assert "interrupted; a checkpoint being written was discarded" in err
  assert os.listdir(os.path.join(workdir, "checkpoints")) == []


def test_a_full_disk_while_writing_the_logs_is_one_line_and_exit_1(tmp_path, monkeypatch, capsys):
  from tfmr_jax.train import metrics_log

  def disk_full(self, *args, **kwargs):
    raise OSError(errno.ENOSPC, "No space left on device", str(tmp_path / "run" / "metrics.jsonl"))

  monkeypatch.setattr(metrics_log.MetricsLog, "write", disk_full)
  rc = _train_two_steps_from_the_cli(str(tmp_path / "run"))
  err = capsys.readouterr().err
  assert rc == 1 and "Traceback" not in err
  assert f"No space left on device: '{tmp_path}/run/metrics.jsonl'" in err
