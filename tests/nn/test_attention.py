"""SingleHeadAttention and MultiHeadAttention against NumPy oracles built from their own weights."""

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

import tfmr_jax as tj
from tfmr_jax.nn import KVCache, MultiHeadAttention, SingleHeadAttention, capture_attention


def np_linear(x, linear):
  y = x.astype(np.float64) @ np.asarray(linear.kernel[...], np.float64)
  if linear.bias is not None:
    y = y + np.asarray(linear.bias[...], np.float64)
  return y


def np_softmax_attention(q_BTNH, k_BSNH, v_BSNH, mask_BNTS):
  """Plain NumPy attention, float64; fully masked rows give zeros."""
  H = q_BTNH.shape[-1]
  logits_BNTS = np.einsum("BTNH,BSNH->BNTS", q_BTNH, k_BSNH) / np.sqrt(H)
  logits_BNTS = np.where(mask_BNTS, logits_BNTS, -np.inf)
  peak = np.max(logits_BNTS, axis=-1, keepdims=True)
  peak = np.where(np.isfinite(peak), peak, 0.0)
  weights = np.where(mask_BNTS, np.exp(logits_BNTS - peak), 0.0)
  total = weights.sum(-1, keepdims=True)
  probs_BNTS = np.where(total > 0, weights / np.where(total > 0, total, 1.0), 0.0)
  return np.einsum("BNTS,BSNH->BTNH", probs_BNTS, v_BSNH), probs_BNTS


def np_mha(mha, x, context, mask):
  """Oracle for MultiHeadAttention from its weights; mask broadcastable to [B, N, T, S]."""
  B, T, _ = x.shape
  S = context.shape[1]
  N, K, H = mha.num_heads, mha.num_kv_heads, mha.head_dim
  q = np_linear(x, mha.query).reshape(B, T, N, H)
  k = np_linear(context, mha.key).reshape(B, S, K, H)
  v = np_linear(context, mha.value).reshape(B, S, K, H)
  k, v = np.repeat(k, N // K, axis=2), np.repeat(v, N // K, axis=2)  # query head n reads n // G
  mask = np.broadcast_to(True if mask is None else np.asarray(mask), (B, N, T, S))
  out, probs = np_softmax_attention(q, k, v, mask)
  return np_linear(out.reshape(B, T, N * H), mha.out), probs


@pytest.mark.parametrize("num_kv_heads", [6, 3, 1], ids=["mha", "gqa", "mqa"])
def test_mha_cross_attention_matches_numpy_oracle(maybe_jit, num_kv_heads):
  B, T, S, N, H, D = 2, 5, 7, 6, 11, 13
  mha = MultiHeadAttention(D, N, num_kv_heads=num_kv_heads, head_dim=H, rngs=nnx.Rngs(0))
  kx, kc, kb = jax.random.split(jax.random.key(1), 3)
  x = jax.random.normal(kx, (B, T, D))
  context = jax.random.normal(kc, (B, S, D))
  for linear in (mha.query, mha.key, mha.value, mha.out):  # non-zero biases
    linear.bias[...] = jax.random.normal(kb, linear.bias.shape)
  mask = tj.padding_mask(jnp.array([7, 3]), S)
  out, maps = maybe_jit(lambda x, c: capture_attention(mha, x, c, mask=mask))(x, context)
  (attn,) = maps.values()
  np.testing.assert_array_equal(out, maybe_jit(lambda x, c: mha(x, c, mask=mask))(x, context))
  want_out, want_attn = np_mha(mha, np.asarray(x), np.asarray(context), mask)
  assert out.shape == (B, T, D) and attn.shape == (B, N, T, S)
  np.testing.assert_allclose(out, want_out, atol=2e-5, rtol=1e-5)
  np.testing.assert_allclose(attn, want_attn, atol=1e-6)
  assert mha.key.kernel.shape == (D, num_kv_heads * H)


def test_mha_self_attention_causal_matches_oracle(maybe_jit):
  B, T, N, D = 3, 7, 2, 10
  mha = MultiHeadAttention(D, N, rngs=nnx.Rngs(2))
  x = jax.random.normal(jax.random.key(3), (B, T, D))
  out = maybe_jit(lambda x: mha(x, mask=tj.causal_mask(T)))(x)
  want, _ = np_mha(mha, np.asarray(x), np.asarray(x), np.tril(np.ones((T, T), bool)))
  np.testing.assert_allclose(out, want, atol=2e-5, rtol=1e-5)


def test_one_head_with_identity_output_equals_single_head(maybe_jit):
  B, T, S, D = 2, 5, 7, 11
  mha = MultiHeadAttention(D, 1, use_bias=False, rngs=nnx.Rngs(0))
  sha = SingleHeadAttention(D, D, rngs=nnx.Rngs(1))
  for name in ("query", "key", "value"):
    getattr(sha, name).kernel[...] = getattr(mha, name).kernel[...]
  mha.out.kernel[...] = jnp.eye(D)
  x = jax.random.normal(jax.random.key(0), (B, T, D))
  context = jax.random.normal(jax.random.key(1), (B, S, D))
  mask = tj.padding_mask(jnp.array([4, 7]), S)
  got = maybe_jit(lambda x, c: mha(x, c, mask=mask))(x, context)
  want = maybe_jit(lambda x, c: sha(x, c, mask=mask))(x, context)
  np.testing.assert_allclose(got, want, atol=1e-6)


@pytest.mark.parametrize("d_v", [None, 3], ids=["dv=dk", "dv!=dk"])
def test_single_head_matches_numpy(maybe_jit, d_v):
  B, T, S, D, d_k = 2, 5, 7, 13, 11
  sha = SingleHeadAttention(D, d_k, d_v=d_v, use_bias=True, rngs=nnx.Rngs(4))
  x = jax.random.normal(jax.random.key(0), (B, T, D))
  context = jax.random.normal(jax.random.key(1), (B, S, D))
  out, maps = maybe_jit(lambda x, c: capture_attention(sha, x, c))(x, context)
  attn = maps[""]
  q = np_linear(np.asarray(x), sha.query)[:, :, None]
  k = np_linear(np.asarray(context), sha.key)[:, :, None]
  v = np_linear(np.asarray(context), sha.value)[:, :, None]
  logits = np.einsum("BTNH,BSNH->BNTS", q, k) / np.sqrt(d_k)
  probs = np.exp(logits - logits.max(-1, keepdims=True))
  probs /= probs.sum(-1, keepdims=True)
  want = np.einsum("BNTS,BSNH->BTNH", probs, v)[:, :, 0]
  assert out.shape == (B, T, d_k if d_v is None else d_v)
  np.testing.assert_allclose(out, want, atol=2e-5, rtol=1e-5)
  np.testing.assert_allclose(attn, probs, atol=1e-6)


def test_injected_attention_fn_is_used():
  calls = []

  def spy(q, k, v, *, mask, bias, is_causal):  # the whole protocol, keyword-only, no defaults
    calls.append((q.shape, k.shape, is_causal))
    return tj.attention(q, k, v, mask=mask, bias=bias, is_causal=is_causal)

  mha = MultiHeadAttention(12, 4, num_kv_heads=2, attention_fn=spy, rngs=nnx.Rngs(0))
  mha(jnp.ones((2, 5, 12)), jnp.ones((2, 7, 12)))
  mha(jnp.ones((2, 5, 12)), is_causal=True)
  sha = SingleHeadAttention(12, 3, attention_fn=spy, rngs=nnx.Rngs(0))
  sha(jnp.ones((2, 5, 12)), is_causal=True)
  assert calls == [
    ((2, 5, 4, 3), (2, 7, 2, 3), False),
    ((2, 5, 4, 3), (2, 5, 2, 3), True),
    ((2, 5, 1, 3), (2, 5, 1, 3), True),
  ]


def left_padding(B, T, empty):
  """[B, 1, 1, T]: the last sequence's first `empty` positions are padding, so under the
  causal rule its first `empty` queries see nothing."""
  valid_BT = np.ones((B, T), bool)
  valid_BT[-1, :empty] = False
  return valid_BT[:, None, None, :]


ATTENTION_FNS = {
  "default": tj.attention,
  "reference": functools.partial(tj.attention, implementation="reference"),
  "tiled": functools.partial(tj.attention, implementation="tiled"),
  "xla": functools.partial(tj.attention, implementation="xla"),
}


@pytest.mark.parametrize("fn_name", list(ATTENTION_FNS))
def test_mha_is_causal_matches_oracle_and_maps_follow_the_rule(maybe_jit, fn_name):
  B, T, N, K, D = 2, 7, 4, 2, 12
  mha = MultiHeadAttention(
    D, N, num_kv_heads=K, attention_fn=ATTENTION_FNS[fn_name], rngs=nnx.Rngs(6)
  )
  x = jax.random.normal(jax.random.key(7), (B, T, D))
  padding = left_padding(B, T, 2)
  fn = maybe_jit(lambda x: capture_attention(mha, x, mask=jnp.asarray(padding), is_causal=True))
  out, maps = fn(x)
  attn = maps[""]
  allowed = np.tril(np.ones((T, T), bool)) & padding
  want_out, want_attn = np_mha(mha, np.asarray(x), np.asarray(x), allowed)
  np.testing.assert_allclose(out, want_out, atol=2e-5, rtol=1e-5)
  np.testing.assert_allclose(attn, want_attn, atol=1e-6)
  assert np.all(np.asarray(attn)[:, :, ~np.tril(np.ones((T, T), bool))] == 0.0)
  assert np.all(np.asarray(attn)[-1, :, :2] == 0.0)  # the emptied rows


@pytest.mark.parametrize("d_v", [None, 3], ids=["dv=dk", "dv!=dk"])
def test_single_head_is_causal_matches_numpy(maybe_jit, d_v):
  B, T, D, d_k = 2, 5, 13, 11
  sha = SingleHeadAttention(D, d_k, d_v=d_v, rngs=nnx.Rngs(8))
  x = jax.random.normal(jax.random.key(9), (B, T, D))
  out, maps = maybe_jit(lambda x: capture_attention(sha, x, is_causal=True))(x)
  attn = maps[""]
  q, k, v = (
    np_linear(np.asarray(x), getattr(sha, name))[:, :, None] for name in ("query", "key", "value")
  )
  want, probs = np_softmax_attention(q, k, v, np.tril(np.ones((T, T), bool)))
  np.testing.assert_allclose(out, want[:, :, 0], atol=2e-5, rtol=1e-5)
  np.testing.assert_allclose(attn, probs, atol=1e-6)


def test_cached_self_attention_equals_full_causal():
  B, T, D, N, K = 2, 7, 12, 4, 2
  mha = MultiHeadAttention(D, N, num_kv_heads=K, rngs=nnx.Rngs(0))
  x = jax.random.normal(jax.random.key(5), (B, T, D))
  full = mha(x, mask=tj.causal_mask(T))
  np.testing.assert_allclose(mha(x, is_causal=True), full, atol=1e-6)
  step = jax.jit(lambda x, cache: mha.extend(x, cache))
  cache = mha.init_cache(B, T + 2)
  pieces = []
  for start, stop in ((0, 3), (3, 4), (4, 5), (5, 7)):
    out, cache = step(x[:, start:stop], cache)
    pieces.append(out)
  assert int(cache.length) == T
  np.testing.assert_allclose(jnp.concatenate(pieces, axis=1), full, atol=1e-5)


def test_kv_cache_append_and_mask():
  cache = KVCache.zeros(2, 5, 1, 3)
  k = jnp.ones((2, 2, 1, 3))
  cache = cache.append(k, 2 * k).append(3 * k[:, :1], 4 * k[:, :1])
  assert int(cache.length) == 3
  np.testing.assert_array_equal(cache.k_BSKH[0, :, 0, 0], [1, 1, 3, 0, 0])
  np.testing.assert_array_equal(cache.v_BSKH[1, :, 0, 0], [2, 2, 4, 0, 0])
  np.testing.assert_array_equal(cache.causal_mask(1)[0, 0], [[True, True, True, False, False]])
  with pytest.raises(ValueError, match="must both be"):
    cache.append(jnp.ones((2, 1, 2, 3)), jnp.ones((2, 1, 2, 3)))
  np.testing.assert_array_equal(cache.key_mask()[:, 0, 0], [[1, 1, 1, 0, 0]] * 2)
  padded = KVCache.zeros(2, 5, 1, 3).append(k, k, jnp.array([[False, True], [True, True]]))
  np.testing.assert_array_equal(padded.key_mask()[:, 0, 0], [[0, 1, 0, 0, 0], [1, 1, 0, 0, 0]])
  with pytest.raises(ValueError, match=r"valid_BT must be bool of shape \(2, 2\)"):
    cache.append(k, k, jnp.ones((2, 2), jnp.int32))


def test_cached_attention_never_sees_pad_keys():
  """Row 0 left-padded by two tokens: its outputs at real positions equal the unpadded
  row's, whatever the pad tokens hold."""
  D, N = 12, 4
  mha = MultiHeadAttention(D, N, rngs=nnx.Rngs(0))
  extend = jax.jit(lambda x, cache, valid: mha.extend(x, cache, valid_BT=valid))
  x_1TD = jax.random.normal(jax.random.key(1), (1, 3, D))
  alone, alone_cache = extend(x_1TD, mha.init_cache(1, 6), jnp.ones((1, 3), bool))
  junk_1TD = 100 * jax.random.normal(jax.random.key(2), (1, 2, D))
  valid = jnp.array([[False, False, True, True, True]])
  padded, cache = extend(jnp.concatenate([junk_1TD, x_1TD], axis=1), mha.init_cache(1, 6), valid)
  np.testing.assert_allclose(padded[:, 2:], alone, atol=1e-5)
  step_1TD, real = jax.random.normal(jax.random.key(3), (1, 1, D)), jnp.ones((1, 1), bool)
  np.testing.assert_allclose(
    extend(step_1TD, cache, real)[0], extend(step_1TD, alone_cache, real)[0], atol=1e-5
  )


@pytest.mark.parametrize(
  "kwargs, message",
  [
    (dict(d_model=10, num_heads=4), "num_heads=4 must divide d_model=10"),
    (dict(d_model=12, num_heads=4, num_kv_heads=3), "num_kv_heads=3 must divide num_heads=4"),
    (dict(d_model=12, num_heads=0), "num_heads must be a positive int, got 0"),
    (dict(d_model=12, num_heads=4, head_dim=-1), "head_dim must be a positive int, got -1"),
    (dict(d_model=12, num_heads=4, dropout=1.5), r"dropout must be a rate in \[0, 1\), got 1.5"),
  ],
)
def test_mha_bad_arguments(kwargs, message):
  with pytest.raises(ValueError, match=message):
    MultiHeadAttention(**kwargs, rngs=nnx.Rngs(0))


def test_mha_rejects_a_non_bool_is_causal():
  mha = MultiHeadAttention(12, 4, rngs=nnx.Rngs(0))
  with pytest.raises(TypeError, match="is_causal must be a Python bool"):
    mha(jnp.ones((1, 3, 12)), is_causal=1)


def test_mha_rejects_wrong_width_with_and_without_cache():
  mha = MultiHeadAttention(12, 4, rngs=nnx.Rngs(0))
  with pytest.raises(ValueError, match="width 11, expected d_model=12"):
    mha(jnp.ones((1, 3, 11)))
  with pytest.raises(ValueError, match="width 11, expected d_model=12"):
    mha.extend(jnp.ones((1, 3, 11)), mha.init_cache(1, 4))
