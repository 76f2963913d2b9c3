"""Learning-rate schedules against their formulas; weight decay spares biases and norms."""

import jax.numpy as jnp
import ml_collections
import numpy as np
import pytest

from tfmr_jax import config as C
from tfmr_jax.train.optim import build_optimizer, learning_rate_schedule


def _optim(**fields):
  o = C.defaults("reverse").optim
  o.update(fields)
  return o


def test_noam_is_the_papers_formula():
  schedule = learning_rate_schedule(
    _optim(schedule="noam", learning_rate=2.0, warmup_steps=400), num_steps=10_000, d_model=512
  )
  for step in (1, 100, 400, 401, 5000):
    want = 2.0 * 512**-0.5 * min(step**-0.5, step * 400**-1.5)
    assert float(schedule(step - 1)) == pytest.approx(want, rel=1e-6)


def test_warmup_cosine_rises_linearly_then_decays_to_the_floor():
  schedule = learning_rate_schedule(
    _optim(schedule="warmup_cosine", learning_rate=1e-3, warmup_steps=100, min_lr_ratio=0.1),
    num_steps=1100,
    d_model=64,
  )
  assert float(schedule(0)) == 0.0
  assert float(schedule(50)) == pytest.approx(5e-4)
  assert float(schedule(100)) == pytest.approx(1e-3)
  middle = 1e-4 + 0.5 * (1e-3 - 1e-4) * (1 + np.cos(np.pi * 500 / 1000))
  assert float(schedule(600)) == pytest.approx(middle, rel=1e-5)
  assert float(schedule(1100)) == pytest.approx(1e-4)


def test_constant_schedule_with_warmup():
  schedule = learning_rate_schedule(
    _optim(schedule="constant", learning_rate=0.5, warmup_steps=10), num_steps=100, d_model=8
  )
  assert [float(schedule(s)) for s in (0, 5, 10, 99)] == pytest.approx([0.0, 0.25, 0.5, 0.5])


def test_adamw_decays_matrices_but_not_biases_and_clips_the_global_norm():
  config = ml_collections.ConfigDict(C.defaults("reverse"))
  config.optim.update(
    name="adamw", schedule="constant", learning_rate=0.1, weight_decay=0.5, grad_clip_norm=1.0
  )
  tx, _ = build_optimizer(config)
  params = {"kernel": jnp.ones((3, 5)), "bias": jnp.ones((5,))}
  zero = {"kernel": jnp.zeros((3, 5)), "bias": jnp.zeros((5,))}
  updates, _ = tx.update(zero, tx.init(params), params)
  np.testing.assert_allclose(updates["kernel"], -0.1 * 0.5 * np.ones((3, 5)), rtol=1e-6)
  np.testing.assert_array_equal(updates["bias"], np.zeros(5))


def test_gradients_are_clipped_to_the_global_norm_before_adam():
  config = ml_collections.ConfigDict(C.defaults("reverse"))
  # b1 = b2 = 0 and eps = 1: the update is -lr * g / (|g| + 1), so the size of g shows.
  config.optim.update(
    name="adam", schedule="constant", learning_rate=0.1, b1=0.0, b2=0.0, eps=1.0, grad_clip_norm=1.0
  )
  tx, _ = build_optimizer(config)
  params = {"kernel": jnp.zeros((3, 5))}
  updates, _ = tx.update({"kernel": jnp.full((3, 5), 100.0)}, tx.init(params), params)
  g = 1.0 / np.sqrt(15.0)  # 100 everywhere, rescaled to global norm 1
  np.testing.assert_allclose(updates["kernel"], np.full((3, 5), -0.1 * g / (g + 1.0)), rtol=1e-5)
