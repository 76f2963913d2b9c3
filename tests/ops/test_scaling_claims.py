"""The seed articles' claims about attention, measured on tj.attention_weights.

Each claim is measured on what the package computes, and that is checked against what
NumPy computes from the same inputs, so a wrong scale or softmax in the package fails.
"""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import tfmr_jax as tj

ROWS = 20000  # query rows: enough for a variance to within 5%


def np_softmax(logits):
  shifted = logits - logits.max(-1, keepdims=True)
  e = np.exp(shifted)
  return e / e.sum(-1, keepdims=True)


def logits_through_the_package(q_RH, k_RH, *, scale):
  """q.k * scale per row, read back from tj.attention_weights.

  Each query row sees two keys, zeros and k, so its weights are softmax([0, l]) with
  l its logit, and l = log(w1) - log(w0).
  """
  R, H = q_RH.shape
  q_R11H = jnp.asarray(q_RH, jnp.float32).reshape(R, 1, 1, H)
  k_R2H = jnp.asarray(np.stack([np.zeros_like(k_RH), k_RH], axis=1), jnp.float32)
  w_R112 = np.asarray(tj.attention_weights(q_R11H, k_R2H[:, :, None], scale=scale), np.float64)
  return np.log(w_R112[:, 0, 0, 1]) - np.log(w_R112[:, 0, 0, 0])


@pytest.mark.parametrize("d_k", [16, 64, 256])
def test_dot_product_variance_grows_as_d_k_and_scaling_restores_one(d_k):
  rng = np.random.default_rng(d_k)
  q = rng.normal(size=(ROWS, d_k)).astype(np.float32)
  k = rng.normal(size=(ROWS, d_k)).astype(np.float32)
  dots = (q.astype(np.float64) * k).sum(-1)  # the NumPy expectation
  unscaled = logits_through_the_package(q, k, scale=1.0)
  scaled = logits_through_the_package(q, k, scale=None)  # the default, 1/sqrt(d_k)
  np.testing.assert_allclose(unscaled, dots, rtol=1e-4, atol=1e-4)
  np.testing.assert_allclose(scaled, dots / np.sqrt(d_k), rtol=1e-4, atol=1e-4)
  assert np.var(unscaled) == pytest.approx(d_k, rel=0.05)
  assert np.var(scaled) == pytest.approx(1.0, rel=0.05)


def test_unscaled_softmax_saturates_and_its_gradient_vanishes():
  """Mean max weight, and the softmax's gradient w.r.t. its logits, against d_k.

  The gradient w.r.t. the logits is taken through `bias`, which is added to them;
  its norm per query row is summarised by the median over 256 rows. The weights are
  checked against a NumPy softmax of the same logits.
  """
  key = jax.random.key(0)

  def stats(d_k, scale):
    kq, kk, kc = jax.random.split(jax.random.fold_in(key, d_k), 3)
    q = jax.random.normal(kq, (256, 1, 1, d_k))
    k = jax.random.normal(kk, (256, 32, 1, d_k))
    c = jax.random.normal(kc, (256, 1, 1, 32))
    bias = jnp.zeros((256, 1, 1, 32))
    w = tj.attention_weights(q, k, scale=scale)
    logits = np.einsum("bh,bsh->bs", np.asarray(q[:, 0, 0], np.float64), np.asarray(k[:, :, 0]))
    expected = np_softmax(logits * (d_k**-0.5 if scale is None else scale))
    np.testing.assert_allclose(np.asarray(w)[:, 0, 0], expected, atol=2e-5)
    g = jax.grad(lambda b: (tj.attention_weights(q, k, bias=b, scale=scale) * c).sum())(bias)
    return float(w.max(-1).mean()), float(jnp.median(jnp.linalg.norm(g, axis=-1)))

  max_4, grad_4 = stats(4, 1.0)
  max_1024, grad_1024 = stats(1024, 1.0)
  assert max_1024 > 0.9 > max_4  # unscaled: nearly one-hot at large d_k
  assert grad_1024 < 0.01 * grad_4  # ... and the gradient dies
  (smax_4, sgrad_4), (smax_1024, sgrad_1024) = stats(4, None), stats(1024, None)
  assert smax_4 < 0.3 and smax_1024 < 0.3  # scaled: the same spread at every d_k
  assert sgrad_1024 == pytest.approx(sgrad_4, rel=0.2)
