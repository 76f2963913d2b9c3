"""RMSNorm, SwiGLU and GeGLU against hand-written NumPy formulas.

Dimension key: B batch, T positions, D model dim, F feed-forward dim.
"""

import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from tfmr_jax.nn import FeedForward, Residual, make_norm
from tfmr_jax.nn.feed_forward import gated_d_ff

D, F = 5, 7


def test_rms_norm_matches_formula():
  rng = np.random.default_rng(0)
  x_BTD = rng.normal(size=(2, 3, D)).astype(np.float32) * 3 + 1  # not centred
  scale_D = rng.normal(1.0, 0.3, size=D).astype(np.float32)
  norm = make_norm("rmsnorm", D, epsilon=1e-5, rngs=nnx.Rngs(0))
  norm.scale[...] = jnp.asarray(scale_D)
  want = x_BTD / np.sqrt((x_BTD**2).mean(-1, keepdims=True) + 1e-5) * scale_D
  np.testing.assert_allclose(norm(jnp.asarray(x_BTD)), want, rtol=1e-5, atol=1e-6)
  assert not hasattr(norm, "bias") or norm.bias is None  # no centring, no bias
  layer = make_norm("layernorm", D, epsilon=1e-5, rngs=nnx.Rngs(0))
  assert np.abs(np.asarray(layer(jnp.asarray(x_BTD))) - want / scale_D).max() > 0.1


def test_rms_norm_statistics_in_float32_under_bfloat16():
  x_BTD = jnp.asarray(np.random.default_rng(1).normal(size=(1, 4, D)) * 100, jnp.bfloat16)
  norm = make_norm("rmsnorm", D, epsilon=1e-6, dtype=jnp.bfloat16, rngs=nnx.Rngs(0))
  x = np.asarray(x_BTD, np.float32)
  want = x / np.sqrt((x**2).mean(-1, keepdims=True) + 1e-6)
  got = norm(x_BTD)
  assert got.dtype == jnp.bfloat16
  np.testing.assert_allclose(np.asarray(got, np.float32), want, rtol=1e-2)


def test_residual_takes_the_norm_kind():
  residual = Residual(D, norm="pre", norm_kind="rmsnorm", rngs=nnx.Rngs(0))
  assert isinstance(residual.layer_norm, nnx.RMSNorm)
  with pytest.raises(ValueError, match="norm_kind must be one of .* got 'batch'"):
    Residual(D, norm_kind="batch", rngs=nnx.Rngs(0))


def _np_silu(x):
  return x / (1 + np.exp(-x))


def _np_gelu_tanh(x):
  return 0.5 * x * (1 + np.tanh(np.sqrt(2 / np.pi) * (x + 0.044715 * x**3)))


@pytest.mark.parametrize("activation, act", [("swiglu", _np_silu), ("geglu", _np_gelu_tanh)])
@pytest.mark.parametrize("use_bias", [True, False])
def test_gated_feed_forward_matches_formula(activation, act, use_bias):
  ff = FeedForward(D, F, activation=activation, use_bias=use_bias, rngs=nnx.Rngs(0))
  rng = np.random.default_rng(2)
  Wg, W1, W2 = rng.normal(size=(D, F)), rng.normal(size=(D, F)), rng.normal(size=(F, D))
  bg, b1, b2 = rng.normal(size=F), rng.normal(size=F), rng.normal(size=D)
  ff.gate.kernel[...] = jnp.asarray(Wg, jnp.float32)
  ff.hidden.kernel[...] = jnp.asarray(W1, jnp.float32)
  ff.out.kernel[...] = jnp.asarray(W2, jnp.float32)
  if use_bias:
    ff.gate.bias[...] = jnp.asarray(bg, jnp.float32)
    ff.hidden.bias[...] = jnp.asarray(b1, jnp.float32)
    ff.out.bias[...] = jnp.asarray(b2, jnp.float32)
  else:
    bg, b1, b2 = 0.0, 0.0, 0.0
    assert ff.gate.bias is None and ff.out.bias is None
  x = rng.normal(size=(2, 3, D))
  want = (act(x @ Wg + bg) * (x @ W1 + b1)) @ W2 + b2
  np.testing.assert_allclose(ff(jnp.asarray(x, jnp.float32)), want, rtol=1e-4, atol=1e-4)


def test_plain_feed_forward_has_no_gate():
  assert FeedForward(D, F, activation="gelu", rngs=nnx.Rngs(0)).gate is None


@pytest.mark.parametrize("d_model, want", [(768, 2048), (64, 176), (48, 128), (4096, 10928)])
def test_gated_width_rule(d_model, want):
  assert gated_d_ff(d_model) == want  # 2/3 of 4 D, up to a multiple of 8
  assert want % 8 == 0 and 0 <= want - 8 * d_model / 3 < 8
