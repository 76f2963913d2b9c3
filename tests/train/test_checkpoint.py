"""Checkpoints round-trip the whole state, PRNG keys included, and keep only the last k."""

import os

import jax
import jax.numpy as jnp
import numpy as np
import optax

from tfmr_jax.train.checkpoint import Checkpointer
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
