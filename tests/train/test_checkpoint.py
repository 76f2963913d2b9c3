"""Checkpoints round-trip the whole state, PRNG keys included, keep only the last k, and
never hand back a damaged state."""

import glob
import os
import shutil

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from tfmr_jax.train.checkpoint import (
  Checkpointer,
  CheckpointUnavailableError,
  DamagedCheckpointWarning,
  _saveable,
)
from tfmr_jax.train.step import TrainState


def _state(step: int, seed: int) -> TrainState:
  params = {"w": jax.random.normal(jax.random.key(seed), (3, 7))}
  rest = {"dropout_key": jax.random.key(seed + 100), "count": jnp.uint32(seed)}
  opt_state = optax.adam(1e-3).init(params)
  return TrainState(jnp.int32(step), params, rest, opt_state)


def test_restore_gives_back_every_array_and_key(tmp_path):
  checkpoints = Checkpointer(str(tmp_path), keep=2)
  saved = _state(7, seed=1)
  checkpoints.save(saved)
  restored = checkpoints.restore(_state(0, seed=2))
  checkpoints.close()
  assert int(restored.step) == 7
  np.testing.assert_array_equal(restored.params["w"], saved.params["w"])
  np.testing.assert_array_equal(
    jax.random.key_data(restored.rest["dropout_key"]),
    jax.random.key_data(saved.rest["dropout_key"]),
  )
  assert jax.random.key_impl(restored.rest["dropout_key"]) == jax.random.key_impl(
    saved.rest["dropout_key"]
  )
  for a, b in zip(
    jax.tree.leaves(restored.opt_state), jax.tree.leaves(saved.opt_state), strict=True
  ):
    np.testing.assert_array_equal(a, b)


def test_only_the_last_k_are_kept_and_latest_is_the_newest(tmp_path):
  checkpoints = Checkpointer(str(tmp_path), keep=2)
  assert checkpoints.latest_step() is None
  for step in (5, 10, 15):
    checkpoints.save(_state(step, seed=step))
  checkpoints.save(_state(15, seed=99))  # the same step again is a no-op
  assert checkpoints.latest_step() == 15
  assert sorted(int(d) for d in os.listdir(tmp_path) if d.isdigit()) == [10, 15]
  restored = checkpoints.restore(_state(0, seed=0), step=10)
  np.testing.assert_array_equal(restored.params["w"], _state(10, seed=10).params["w"])
  checkpoints.close()


def _damage(step_dir: str, kind: str) -> None:
  """Damage one checkpoint as a crash, a full disk or a bad sector would."""
  data_file = max(glob.glob(os.path.join(step_dir, "default", "d", "*")), key=os.path.getsize)
  if kind == "truncate a data file":
    with open(data_file, "r+b") as f:
      f.truncate(os.path.getsize(data_file) // 2)
  elif kind == "flip 64 bytes of a data file":
    with open(data_file, "r+b") as f:
      data = bytearray(f.read())
      for i in range(64):
        data[(len(data) // 3 + i) % len(data)] ^= 0xFF
      f.seek(0)
      f.write(bytes(data))
  else:  # remove a file or directory
    path = os.path.join(step_dir, kind.removeprefix("remove "))
    shutil.rmtree(path) if os.path.isdir(path) else os.remove(path)


DAMAGE_KINDS = [
  "truncate a data file",
  "flip 64 bytes of a data file",
  "remove default/manifest.ocdbt",
  "remove default/_METADATA",
  "remove default",
  "remove default/d",
  "remove _CHECKPOINT_METADATA",
]


@pytest.mark.parametrize("kind", DAMAGE_KINDS)
def test_a_damaged_newest_checkpoint_falls_back_to_the_newest_intact_one(tmp_path, kind):
  checkpoints = Checkpointer(str(tmp_path), keep=3)
  for step in (5, 10, 15):
    checkpoints.save(_state(step, seed=step))
  checkpoints.close()
  _damage(str(tmp_path / "15"), kind)
  checkpoints = Checkpointer(str(tmp_path), keep=3)
  with pytest.warns(DamagedCheckpointWarning, match=r"step 15 .*/15\): .*; restored step 10"):
    restored = checkpoints.restore(_state(0, seed=0))
  assert int(restored.step) == 10
  np.testing.assert_array_equal(restored.params["w"], _state(10, seed=10).params["w"])
  with pytest.raises(CheckpointUnavailableError, match=r"step 15 .* is damaged .*\[5, 10, 15\]"):
    checkpoints.restore(_state(0, seed=0), step=15)
  checkpoints.close()


def test_flipped_bytes_are_caught_by_the_checksums_when_the_file_still_reads(tmp_path):
  checkpoints = Checkpointer(str(tmp_path), keep=2)
  checkpoints.save(_state(5, seed=5))
  # What a flip inside the array data that orbax cannot notice would give back:
  # the bytes read differ from those saved.
  saved = _state(5, seed=5)
  bad = saved._replace(params={"w": saved.params["w"].at[1, 2].set(np.nan)})
  checkpoints._manager.restore = lambda step, args: _saveable(bad)
  with pytest.raises(
    CheckpointUnavailableError, match=r"no intact .*step 5 .*1 arrays do not match .*\['w'\]"
  ):
    checkpoints.restore(_state(0, seed=0))
  checkpoints.close()


def test_no_intact_checkpoint_is_one_error_naming_each_and_why(tmp_path):
  checkpoints = Checkpointer(str(tmp_path), keep=2)
  for step in (5, 10):
    checkpoints.save(_state(step, seed=step))
  checkpoints.close()
  _damage(str(tmp_path / "5"), "remove default")
  _damage(str(tmp_path / "10"), "truncate a data file")
  checkpoints = Checkpointer(str(tmp_path), keep=2)
  with pytest.raises(CheckpointUnavailableError, match=r"no intact .*step 10 .*; step 5 .*"):
    checkpoints.restore(_state(0, seed=0))
  with pytest.raises(CheckpointUnavailableError, match=r"no checkpoint of step 7 .*\[5, 10\]"):
    checkpoints.restore(_state(0, seed=0), step=7)
  checkpoints.close()
