"""bfloat16 compute trains as well as float32 on CPU; checkpoints keep param_dtype."""

import jax
import jax.numpy as jnp
import numpy as np

from tests.train.quick import quick_config
from tfmr_jax import config as C
from tfmr_jax.tasks import make_task
from tfmr_jax.train import load_run, train
from tfmr_jax.train.build import build_model
from tfmr_jax.train.checkpoint import Checkpointer
from tfmr_jax.train.optim import build_optimizer
from tfmr_jax.train.step import init_state


def _dtypes(tree) -> set:
  return {x.dtype for x in jax.tree.leaves(tree) if jnp.issubdtype(x.dtype, jnp.floating)}


def test_reverse_trains_in_bfloat16_to_the_float32_accuracy(tmp_path):
  # float32 reaches token accuracy 1.0 in these 300 steps (tests/train/test_train.py);
  # measured in bfloat16: 1.0 token accuracy, 1.0 exact match, held-out loss 6.6e-4.
  workdir = str(tmp_path)
  final = train(quick_config("reverse", model={"dtype": "bfloat16"}), workdir)
  assert final["step"] == 300
  assert final["token_accuracy"] >= 0.99
  run = load_run(workdir)
  assert run.config.model.dtype == "bfloat16"
  assert _dtypes(run.state.params) == {jnp.dtype(jnp.float32)}  # master weights
  assert _dtypes(run.state.opt_state) == {jnp.dtype(jnp.float32)}


def test_bfloat16_parameters_and_optimizer_state_restore_as_bfloat16(tmp_path):
  config = C.validate(quick_config("reverse", model={"param_dtype": "bfloat16"}))
  task = make_task(**config.task)
  tx, _ = build_optimizer(config)

  def state_of(seed):
    return init_state(build_model(config, task, seed=seed), tx)[2]

  saved = state_of(1)
  assert _dtypes(saved.params) == _dtypes(saved.opt_state) == {jnp.dtype(jnp.bfloat16)}
  checkpoints = Checkpointer(str(tmp_path), keep=1)
  checkpoints.save(saved)
  restored = checkpoints.restore(state_of(2))
  checkpoints.close()
  for a, b in zip(jax.tree.leaves(restored), jax.tree.leaves(saved), strict=True):
    assert a.dtype == b.dtype
    if jnp.issubdtype(a.dtype, jnp.floating):
      np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
