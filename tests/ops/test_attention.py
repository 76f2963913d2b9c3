"""tj.attention against jax.nn.dot_product_attention and a NumPy oracle; mask semantics."""

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from absl.testing import parameterized

import tfmr_jax as tj
from tests.conftest import random_qkv
from tests.ops.oracle import np_attention

# Prime-sized so any swapped axis breaks a shape or a value.
B, T, S, H = 2, 5, 7, 11


def qkv(N, K, T=T, S=S, dtype=jnp.float32, seed=0):
  return random_qkv(B=B, T=T, S=S, N=N, K=K, H=H, dtype=dtype, seed=seed)


def random_mask_without_empty_rows(N, T=T, S=S, seed=1):
  rng = np.random.default_rng(seed)
  mask = rng.random((B, N, T, S)) < 0.6
  mask[..., 0] |= ~mask.any(-1)  # jax.nn leaks on fully masked rows: avoid them here
  return jnp.asarray(mask)


HEADS = [(6, 6), (6, 3), (6, 1)]  # MHA, GQA, MQA


def masks_for(N):
  return {
    "none": None,
    "causal": tj.causal_mask(T, S),
    "padding": tj.padding_mask(np.array([S, 4]), S),
    "causal+padding": tj.combine_masks(tj.causal_mask(T, S), tj.padding_mask(np.array([S, 3]), S)),
    "random": random_mask_without_empty_rows(N),
  }


MASK_NAMES = ["none", "causal", "padding", "causal+padding", "random"]


class TestMatchesJaxNn(chex.TestCase):
  """The central parity test, each case with and without jit (chex variants)."""

  @chex.variants(with_jit=True, without_jit=True)
  @parameterized.product(heads=HEADS, mask_name=MASK_NAMES)
  def test_matches_jax_nn_dot_product_attention(self, heads, mask_name):
    N, K = heads
    q, k, v = qkv(N, K)
    mask = masks_for(N)[mask_name]
    ours = self.variant(lambda q, k, v: tj.attention(q, k, v, mask=mask))(q, k, v)
    ref = jax.nn.dot_product_attention(q, k, v, mask=mask, implementation="xla")
    assert ours.shape == (B, T, N, H)
    np.testing.assert_allclose(ours, ref, atol=2e-6, rtol=2e-6)


@pytest.mark.parametrize("N,K", HEADS, ids=["mha", "gqa", "mqa"])
def test_matches_numpy_oracle_with_bias_scale_and_empty_rows(N, K, maybe_jit):
  q, k, v = qkv(N, K, seed=3)
  rng = np.random.default_rng(4)
  mask = rng.random((B, 1, T, S)) < 0.5
  mask[0, 0, 2] = False  # one fully masked row
  bias = rng.normal(size=(1, N, T, S)).astype(np.float32)
  fn = maybe_jit(
    lambda q, k, v: tj.attention(q, k, v, mask=jnp.asarray(mask), bias=bias, scale=0.3)
  )
  ours = fn(q, k, v)
  ref = np_attention(q, k, v, mask, bias, scale=0.3)
  np.testing.assert_allclose(ours, ref, atol=2e-6, rtol=1e-5)


def test_weights_rows_sum_to_one_or_zero():
  q, k, _ = qkv(6, 3)
  mask = tj.padding_mask(np.array([S, 0]), S)  # second sequence: every key masked
  w = tj.attention_weights(q, k, mask=mask)
  assert w.shape == (B, 6, T, S) and w.dtype == jnp.float32
  np.testing.assert_allclose(w[0].sum(-1), 1.0, atol=1e-6)
  assert np.all(np.asarray(w[1]) == 0.0)
  assert np.all(np.asarray(w) >= 0.0)


def test_weights_times_values_is_attention():
  q, k, v = qkv(6, 6)
  mask = tj.causal_mask(T, S)
  w_BNTS = tj.attention_weights(q, k, mask=mask)
  out_BTNH = jnp.einsum("BNTS,BSNH->BTNH", w_BNTS, v)
  np.testing.assert_allclose(out_BTNH, tj.attention(q, k, v, mask=mask), atol=1e-6)


def test_masked_values_do_not_move_the_output(maybe_jit):
  q, k, v = qkv(6, 3)
  valid = np.array([S, 4])
  mask = tj.padding_mask(valid, S)
  fn = maybe_jit(lambda k, v: tj.attention(q, k, v, mask=mask))
  base = fn(k, v)
  noise = np.random.default_rng(9).normal(size=k.shape) * 100
  noise[0] = 0.0
  noise[1, :4] = 0.0  # only the padded keys/values of sequence 1 change
  moved = fn(k + noise, v + noise)
  np.testing.assert_array_equal(base, moved)


@pytest.mark.parametrize("dtype", [jnp.float32, jnp.bfloat16, jnp.float16])
def test_fully_masked_rows_are_zero_with_zero_finite_gradient(dtype, maybe_jit):
  q, k, v = qkv(6, 3, dtype=dtype)
  mask = np.ones((B, 1, T, S), bool)
  mask[1, 0, 1:3] = False  # rows 1 and 2 of sequence 1 see nothing
  mask = jnp.asarray(mask)
  out = maybe_jit(lambda q, k, v: tj.attention(q, k, v, mask=mask))(q, k, v)
  assert out.dtype == dtype
  assert np.all(np.asarray(out[1, 1:3], np.float32) == 0.0)
  assert np.all(np.asarray(out[1, 0], np.float32) != 0.0)

  def loss_of_empty_rows(q, k, v):
    return tj.attention(q, k, v, mask=mask)[1, 1:3].astype(jnp.float32).sum()

  grads = maybe_jit(jax.grad(loss_of_empty_rows, argnums=(0, 1, 2)))(q, k, v)
  for g in grads:
    g = np.asarray(g, np.float32)
    assert np.all(np.isfinite(g))
    assert np.all(g == 0.0)


def test_jax_nn_leaks_on_fully_masked_rows_and_we_do_not():
  """The documented difference: jax.nn returns the mean of values for an empty row."""
  q, k, v = qkv(6, 6)
  mask = jnp.zeros((B, 1, T, S), bool)
  theirs = jax.nn.dot_product_attention(q, k, v, mask=mask, implementation="xla")
  np.testing.assert_allclose(
    theirs[:, :, 0], v[:, :, 0].mean(1, keepdims=True).repeat(T, 1), atol=1e-5
  )
  assert np.all(np.asarray(tj.attention(q, k, v, mask=mask)) == 0.0)


@pytest.mark.parametrize("dtype,atol", [(jnp.bfloat16, 3e-2), (jnp.float16, 4e-3)])
def test_low_precision_inputs_track_float32(dtype, atol):
  """Softmax in float32: the only error left is rounding the inputs and the output."""
  q, k, v = qkv(6, 3, dtype=dtype)
  mask = tj.causal_mask(T, S)
  low = tj.attention(q, k, v, mask=mask)
  assert low.dtype == dtype
  ref = np_attention(*(np.asarray(a, np.float32) for a in (q, k, v)), np.asarray(mask))
  np.testing.assert_allclose(np.asarray(low, np.float32), ref, atol=atol)


def test_hand_set_values_known_output():
  """One query, two keys with logits 0 and log(3): weights 1/4 and 3/4."""
  q = jnp.ones((1, 1, 1, 1))
  k = jnp.asarray([0.0, np.log(3.0)]).reshape(1, 2, 1, 1)
  v = jnp.asarray([4.0, 8.0]).reshape(1, 2, 1, 1)
  out = tj.attention(q, k, v, scale=1.0)
  np.testing.assert_allclose(out.reshape(()), 0.25 * 4 + 0.75 * 8, rtol=1e-6)


def test_default_scale_is_one_over_sqrt_head_dim():
  q, k, v = qkv(6, 6)
  np.testing.assert_allclose(tj.attention(q, k, v), tj.attention(q, k, v, scale=H**-0.5), atol=0)
  np.testing.assert_allclose(tj.attention(q, k, v), np_attention(q, k, v), atol=2e-6)
