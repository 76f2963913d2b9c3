"""Blocks pass is_causal to self-attention only, and it equals the causal mask; `extend`
equals the full causal pass; every `__call__` returns one array."""

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

import tfmr_jax as tj
from tfmr_jax.nn import DecoderBlock, EncoderBlock, capture_attention

B, T, S, D, N = 2, 7, 5, 12, 3


def recording(calls):
  """An attention_fn that records (T, S, is_causal, mask shape) of every call."""

  def attention_fn(q, k, v, *, mask, bias, is_causal):
    calls.append((q.shape[1], k.shape[1], is_causal, None if mask is None else mask.shape))
    return tj.attention(q, k, v, mask=mask, bias=bias, is_causal=is_causal)

  return attention_fn


def padding():
  """[B, 1, 1, T]: the last sequence's first two positions are padding."""
  valid_BT = np.ones((B, T), bool)
  valid_BT[-1, :2] = False
  return jnp.asarray(valid_BT[:, None, None, :])


def test_encoder_block_is_causal_equals_the_causal_mask():
  calls = []
  block = EncoderBlock(D, N, 20, norm="pre", attention_fn=recording(calls), rngs=nnx.Rngs(0))
  x = jax.random.normal(jax.random.key(1), (B, T, D))
  flag, attn_flag = capture_attention(block, x, mask=padding(), is_causal=True)
  mask = tj.combine_masks(tj.causal_mask(T), padding())
  array, attn_array = capture_attention(block, x, mask=mask)
  np.testing.assert_allclose(flag, array, atol=1e-6)
  np.testing.assert_array_equal(attn_flag["attention"], attn_array["attention"])
  assert calls == [(T, T, True, (B, 1, 1, T)), (T, T, False, (B, 1, T, T))]
  assert isinstance(block(x, is_causal=True), jax.Array)


def test_decoder_block_is_causal_reaches_self_attention_only():
  calls = []
  block = DecoderBlock(D, N, 20, attention_fn=recording(calls), rngs=nnx.Rngs(0))
  x = jax.random.normal(jax.random.key(2), (B, T, D))
  memory_kv = block.cross_attention.project_kv(jax.random.normal(jax.random.key(3), (B, S, D)))
  flag, maps_flag = capture_attention(block, x, memory_kv, self_mask=padding(), is_causal=True)
  mask = tj.combine_masks(tj.causal_mask(T), padding())
  array, maps_array = capture_attention(block, x, memory_kv, self_mask=mask)
  np.testing.assert_allclose(flag, array, atol=1e-6)
  assert list(maps_flag) == ["self_attention", "cross_attention"] == list(maps_array)
  for name in maps_flag:
    np.testing.assert_array_equal(maps_flag[name], maps_array[name])
  assert calls[:2] == [(T, T, True, (B, 1, 1, T)), (T, S, False, None)]
  assert calls[2:] == [(T, T, False, (B, 1, T, T)), (T, S, False, None)]


def test_blocks_extend_equals_the_causal_call(maybe_jit):
  x = jax.random.normal(jax.random.key(4), (B, T, D))
  encoder = EncoderBlock(D, N, 20, norm="pre", rngs=nnx.Rngs(1))
  decoder = DecoderBlock(D, N, 20, rngs=nnx.Rngs(2))
  memory_kv = decoder.cross_attention.project_kv(jax.random.normal(jax.random.key(5), (B, S, D)))
  cross_mask = jnp.asarray(np.arange(S) < 3)[None, None, None, :]
  full = {
    "encoder": encoder(x, is_causal=True),
    "decoder": decoder(x, memory_kv, is_causal=True, cross_mask=cross_mask),
  }
  steps = {
    "encoder": maybe_jit(lambda x, c: encoder.extend(x, c)),
    "decoder": maybe_jit(lambda x, c: decoder.extend(x, c, memory_kv, cross_mask=cross_mask)),
  }
  for name, block in (("encoder", encoder), ("decoder", decoder)):
    cache = (block.attention if name == "encoder" else block.self_attention).init_cache(B, T)
    pieces = []
    for start, stop in ((0, 4), (4, 5), (5, T)):
      out, cache = steps[name](x[:, start:stop], cache)
      pieces.append(out)
    np.testing.assert_allclose(jnp.concatenate(pieces, axis=1), full[name], atol=1e-5)
