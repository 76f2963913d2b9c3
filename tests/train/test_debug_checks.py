"""train.debug_checks: value checks inside the compiled step catch what the host check misses."""

import numpy as np
import optax
import pytest

from tests.train.quick import poisoned_make_task, quick_config
from tfmr_jax import config as C
from tfmr_jax.tasks import make_task
from tfmr_jax.train import NonFiniteLossError, train
from tfmr_jax.train import loop as loop_lib
from tfmr_jax.train.build import build_model
from tfmr_jax.train.checkpoint import Checkpointer
from tfmr_jax.train.step import init_state, make_train_step


def _reverse_step(tx, *, debug_checks: bool):
  config = C.validate(quick_config("reverse"))
  task = make_task(**config.task)
  train_graphdef, _, state = init_state(build_model(config, task, seed=0), tx)
  step = make_train_step(train_graphdef, tx, data_format=task.format, debug_checks=debug_checks)
  return step, state, task.train_batch(0, 0, 16)


def test_non_finite_parameters_are_caught_in_the_step_that_made_them():
  # An infinite learning rate: step 1's loss is finite (computed before the update), so the
  # loop's host check would only notice at step 2; the parameters are already non-finite.
  tx = optax.sgd(float("inf"))
  step, state, batch = _reverse_step(tx, debug_checks=False)
  state, metrics = step(state, batch)
  assert np.isfinite(float(metrics["loss"]))
  assert not np.isfinite(np.asarray(state.params["head"]["kernel"][...])).all()

  step, state, batch = _reverse_step(tx, debug_checks=True)
  with pytest.raises(AssertionError, match=r"'head/kernel': Array\(nan.*parameters after step 1"):
    step(state, batch)


def test_finite_steps_are_unchanged_by_the_checks():
  tx = optax.adam(1e-3)
  plain, state, batch = _reverse_step(tx, debug_checks=False)
  checked, state2, _ = _reverse_step(tx, debug_checks=True)
  state, metrics = plain(state, batch)
  state2, metrics2 = checked(state2, batch)
  assert float(metrics["loss"]) == float(metrics2["loss"])
  np.testing.assert_array_equal(
    state.params["head"]["kernel"][...], state2.params["head"]["kernel"][...]
  )


def test_the_loop_names_the_step_and_keeps_the_last_good_checkpoint(tmp_path, monkeypatch):
  monkeypatch.setattr(loop_lib, "make_task", poisoned_make_task(nan_at_step=6))  # 7th update
  config = quick_config(
    "reverse",
    optim={"warmup_steps": 3},
    train={"num_steps": 20, "checkpoint_every": 5, "debug_checks": True},
  )
  with pytest.raises(NonFiniteLossError, match=r"step 7 made non-finite.*\(step 5\).*loss after"):
    train(config, str(tmp_path))
  checkpoints = Checkpointer(str(tmp_path / "checkpoints"), keep=2)
  assert checkpoints.latest_step() == 5
  checkpoints.close()


def test_attention_inputs_are_checked_inside_the_step():
  # One NaN in a key projection weight: the attention op reports its non-finite input.
  tx = optax.adam(1e-3)
  step, state, batch = _reverse_step(tx, debug_checks=True)
  key_kernel = state.params["layers"][0]["attention"]["key"]["kernel"]
  key_kernel[...] = key_kernel[...].at[0, 0].set(np.nan)
  with pytest.raises(AssertionError, match=r"attention: k_BSKH has a non-finite value"):
    step(state, batch)
