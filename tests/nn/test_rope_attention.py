"""RoPE and QK-norm inside MultiHeadAttention, measured on the module's own output.

Dimension key: B batch, T positions, D model dim, N query heads, K kv heads, H head dim.
"""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from tfmr_jax.nn import KVCache, MultiHeadAttention

B, T, D, N, K = 2, 7, 24, 4, 2  # H = 6: even, N != K (grouped-query)


def make(*, rope_base=10000.0, qk_norm=None, seed=0):
  return MultiHeadAttention(
    D, N, num_kv_heads=K, rope_base=rope_base, qk_norm=qk_norm, rngs=nnx.Rngs(seed)
  )


def x_BTD(seed=1):
  return jax.random.normal(jax.random.key(seed), (B, T, D))


@pytest.mark.parametrize("qk_norm", [None, "rmsnorm"])
def test_shifting_every_position_by_one_offset_leaves_the_output_unchanged(qk_norm):
  mha, x = make(qk_norm=qk_norm), x_BTD()
  run = jax.jit(lambda x, p: mha(x, positions=p, is_causal=True))
  base_T = jnp.arange(T)
  out = run(x, base_T)
  for offset in (1, 40):  # q and k rotated by the same extra angle: q.k unchanged
    np.testing.assert_allclose(run(x, base_T + offset), out, atol=2e-5)
  # Per-row offsets ([B, T] positions) too.
  np.testing.assert_allclose(run(x, base_T[None] + jnp.array([[3], [29]])), out, atol=2e-5)
  # The positions matter: spread them out and the output moves.
  assert np.abs(np.asarray(run(x, 3 * base_T)) - np.asarray(out)).max() > 1e-3


def test_rope_at_position_zero_is_the_identity():
  rotary, plain = make(), make(rope_base=None)  # same seed: same weights
  x = x_BTD()
  zeros_T = jnp.zeros((T,), jnp.int32)
  np.testing.assert_allclose(rotary(x, positions=zeros_T), plain(x), atol=1e-6)
  # and it is not the identity elsewhere
  assert np.abs(np.asarray(rotary(x)) - np.asarray(plain(x))).max() > 1e-3


def test_default_positions_are_arange():
  mha, x = make(), x_BTD()
  np.testing.assert_array_equal(
    mha(x, is_causal=True), mha(x, is_causal=True, positions=jnp.arange(T))
  )


def test_cached_decoding_equals_full_recomputation():  # with QK-norm: tests/models/test_llama.py
  mha, x = make(), x_BTD()
  full = mha(x, is_causal=True)
  extend = jax.jit(lambda x, cache: mha.extend(x, cache))
  cache = KVCache.zeros(B, T + 2, K, D // N)
  out, cache = extend(x[:, :3], cache)
  outs = [out]
  for t in range(3, T):
    out, cache = extend(x[:, t : t + 1], cache)
    outs.append(out)
  np.testing.assert_allclose(jnp.concatenate(outs, axis=1), full, atol=2e-5)


def test_cross_attention_is_not_rotated():
  rotary, plain = make(), make(rope_base=None)
  x, context = x_BTD(), jax.random.normal(jax.random.key(2), (B, 5, D))
  np.testing.assert_array_equal(rotary(x, context), plain(x, context))


def test_qk_norm_normalises_each_head_of_q_and_k():
  mha, x = make(qk_norm="rmsnorm", rope_base=None), x_BTD()
  q_BTNH = mha._queries(x, None)
  k_BTKH, _ = mha.project_kv(x)
  for a in (q_BTNH, k_BTKH):  # scales start at 1: every head has unit root-mean-square
    np.testing.assert_allclose(np.sqrt((np.asarray(a) ** 2).mean(-1)), 1.0, atol=1e-4)
  assert mha.query_norm.scale.shape == mha.key_norm.scale.shape == (D // N,)


def test_odd_head_dim_is_refused():
  with pytest.raises(ValueError, match="rotary embeddings need an even head_dim, got 5"):
    MultiHeadAttention(15, 3, rope_base=10000.0, rngs=nnx.Rngs(0))
