"""What the loop saves is good: never a non-finite state, never a half-written checkpoint."""

import jax.numpy as jnp
import optax
import pytest

from tests.train.quick import quick_config
from tfmr_jax.train import NonFiniteLossError, train
from tfmr_jax.train import loop as loop_lib
from tfmr_jax.train import optim as optim_lib
from tfmr_jax.train.checkpoint import Checkpointer


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
