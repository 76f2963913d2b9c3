"""The seed articles' claims about attention, checked as measurable properties."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import tfmr_jax as tj


@pytest.mark.parametrize("d_k", [16, 64, 256])
def test_dot_product_variance_grows_as_d_k_and_scaling_restores_one(d_k):
  rng = np.random.default_rng(d_k)
  q = rng.normal(size=(20000, d_k))
  k = rng.normal(size=(20000, d_k))
  dots = (q * k).sum(-1)
  assert np.var(dots) == pytest.approx(d_k, rel=0.05)
  assert np.var(dots / np.sqrt(d_k)) == pytest.approx(1.0, rel=0.05)


def test_unscaled_softmax_saturates_and_its_gradient_vanishes():
  """Mean max weight, and the softmax's gradient w.r.t. its logits, against d_k.

  The gradient w.r.t. the logits is taken through `bias`, which is added to them;
  its norm per query row is summarised by the median over 256 rows.
  """
  key = jax.random.key(0)

  def stats(d_k, scale):
    kq, kk, kc = jax.random.split(jax.random.fold_in(key, d_k), 3)
    q = jax.random.normal(kq, (256, 1, 1, d_k))
    k = jax.random.normal(kk, (256, 32, 1, d_k))
    c = jax.random.normal(kc, (256, 1, 1, 32))
    bias = jnp.zeros((256, 1, 1, 32))
    w = tj.attention_weights(q, k, scale=scale)
    g = jax.grad(lambda b: (tj.attention_weights(q, k, bias=b, scale=scale) * c).sum())(bias)
    return float(w.max(-1).mean()), float(jnp.median(jnp.linalg.norm(g, axis=-1)))

  max_4, grad_4 = stats(4, 1.0)
  max_1024, grad_1024 = stats(1024, 1.0)
  assert max_1024 > 0.9 > max_4  # unscaled: nearly one-hot at large d_k
  assert grad_1024 < 0.01 * grad_4  # ... and the gradient dies
  (smax_4, sgrad_4), (smax_1024, sgrad_1024) = stats(4, None), stats(1024, None)
  assert smax_4 < 0.3 and smax_1024 < 0.3  # scaled: the same spread at every d_k
  assert sgrad_1024 == pytest.approx(sgrad_4, rel=0.2)
