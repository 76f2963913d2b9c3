"""Blocks pass is_causal to self-attention only, and it equals the causal mask."""

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

import tfmr_jax as tj
from tfmr_jax.nn import DecoderBlock, EncoderBlock

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
  flag, attn_flag, _ = block(x, mask=padding(), is_causal=True, return_attention=True)
  mask = tj.combine_masks(tj.causal_mask(T), padding())
  array, attn_array, _ = block(x, mask=mask, return_attention=True)
  np.testing.assert_allclose(flag, array, atol=1e-6)
  np.testing.assert_array_equal(attn_flag, attn_array)
  assert calls == [(T, T, True, (B, 1, 1, T)), (T, T, False, (B, 1, T, T))]


def test_decoder_block_is_causal_reaches_self_attention_only():
  calls = []
  block = DecoderBlock(D, N, 20, attention_fn=recording(calls), rngs=nnx.Rngs(0))
  x = jax.random.normal(jax.random.key(2), (B, T, D))
  memory_kv = block.cross_attention.project_kv(jax.random.normal(jax.random.key(3), (B, S, D)))
  flag, maps_flag, _ = block(
    x, memory_kv, self_mask=padding(), is_causal=True, return_attention=True
  )
  mask = tj.combine_masks(tj.causal_mask(T), padding())
  array, maps_array, _ = block(x, memory_kv, self_mask=mask, return_attention=True)
  np.testing.assert_allclose(flag, array, atol=1e-6)
  for got, want in zip(maps_flag, maps_array, strict=True):
    np.testing.assert_array_equal(got, want)
  assert calls[:2] == [(T, T, True, (B, 1, 1, T)), (T, S, False, None)]
  assert calls[2:] == [(T, T, False, (B, 1, T, T)), (T, S, False, None)]
