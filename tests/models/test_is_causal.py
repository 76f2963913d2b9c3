"""The models ask for causal self-attention with is_causal=True, not with a [T, T] mask.

Each model is checked three ways: a recording attention_fn sees what each layer asks
for; the logits equal those of the same weights run through an attention_fn that only
knows masks (how the models attended before the flag); and with the tiled kernel the
KV-cache decoding (masks only) still equals the full forward (the flag).
"""

import functools

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

import tfmr_jax as tj
from tfmr_jax.models import GPT2, EncoderDecoderTransformer, TransformerConfig
from tfmr_jax.nn import capture_attention

GPT_CONFIG = TransformerConfig.gpt(vocab_size=23, max_len=16, num_layers=2, num_heads=3, d_model=12)
VS, VT, P = 11, 13, 16


def recording(calls):
  """An attention_fn that records (T, S, is_causal, mask shape) of every call."""

  def attention_fn(q, k, v, *, mask, bias, is_causal):
    calls.append((q.shape[1], k.shape[1], is_causal, None if mask is None else mask.shape))
    return tj.attention(q, k, v, mask=mask, bias=bias, is_causal=is_causal)

  return attention_fn


def masks_only(q, k, v, *, mask, bias, is_causal):
  """The causal rule as a mask array, as the models passed it before is_causal existed."""
  if is_causal:
    mask = tj.combine_masks(tj.causal_mask(q.shape[1], k.shape[1]), mask)
  return tj.attention(q, k, v, mask=mask, bias=bias, implementation="reference")


reference = functools.partial(tj.attention, implementation="reference")
tiled = functools.partial(tj.attention, implementation="tiled")


def seq2seq(attention_fn):
  config = TransformerConfig(
    vocab_size=VS,
    tgt_vocab_size=VT,
    num_layers=1,
    num_decoder_layers=2,
    d_model=12,
    num_heads=3,
    d_ff=20,
    max_len=P,
    norm="pre",
  )
  model = EncoderDecoderTransformer(config, attention_fn=attention_fn, rngs=nnx.Rngs(0))
  model.eval()
  return model


def seq2seq_batch():
  src = jax.random.randint(jax.random.key(0), (2, 7), 0, VS)
  tgt = jax.random.randint(jax.random.key(1), (2, 9), 0, VT)
  src_valid = jnp.arange(7)[None, :] < jnp.array([[7], [4]])
  tgt_valid = jnp.arange(9)[None, :] < jnp.array([[9], [6]])
  return src, tgt, src_valid, tgt_valid


def test_gpt2_asks_for_is_causal_and_builds_no_mask():
  calls = []
  gpt = GPT2(GPT_CONFIG, attention_fn=recording(calls), rngs=nnx.Rngs(0))
  tokens = jnp.arange(22).reshape(2, 11) % 23
  jax.eval_shape(lambda t: gpt(t), tokens)  # tracing is enough to record the calls
  assert calls == [(11, 11, True, None)] * 2
  calls.clear()
  jax.eval_shape(lambda t, cache: gpt.extend(t, cache), tokens[:, :4], gpt.init_cache(2, 12))
  # decoding: the cache's causal mask ANDed with its per-row key mask (pad slots unseen)
  assert calls == [(4, 12, False, (2, 1, 4, 12))] * 2


def test_gpt2_logits_and_maps_are_those_of_the_causal_mask():
  gpt = GPT2(GPT_CONFIG, attention_fn=reference, rngs=nnx.Rngs(0))
  old = nnx.merge(*nnx.split(GPT2(GPT_CONFIG, attention_fn=masks_only, rngs=nnx.Rngs(0))))
  tokens = jax.random.randint(jax.random.key(2), (2, 13), 0, 23)
  logits, maps = jax.jit(lambda t: capture_attention(gpt, t))(tokens)
  old_logits, old_maps = jax.jit(lambda t: capture_attention(old, t))(tokens)
  np.testing.assert_array_equal(logits, old_logits)
  assert sorted(maps) == sorted(old_maps) == ["layers.0.attention", "layers.1.attention"]
  for got, want in zip(maps.values(), old_maps.values(), strict=True):
    np.testing.assert_array_equal(got, want)
    assert np.all(np.asarray(got)[..., ~np.tril(np.ones((13, 13), bool))] == 0.0)


def test_gpt2_tiled_forward_equals_reference_and_cached_decoding():
  gpt = GPT2(GPT_CONFIG, attention_fn=tiled, rngs=nnx.Rngs(0))
  same_weights = nnx.merge(*nnx.split(GPT2(GPT_CONFIG, attention_fn=reference, rngs=nnx.Rngs(0))))
  tokens = jax.random.randint(jax.random.key(3), (2, 11), 0, 23)
  full = jax.jit(lambda t: gpt(t))(tokens)
  np.testing.assert_allclose(full, jax.jit(lambda t: same_weights(t))(tokens), atol=1e-5)
  extend = jax.jit(lambda t, cache: gpt.extend(t, cache))
  logits, cache = extend(tokens[:, :4], gpt.init_cache(2, 12))
  np.testing.assert_allclose(logits, full[:, :4], atol=1e-5)
  for t in range(4, 11):
    logits, cache = extend(tokens[:, t : t + 1], cache)
    np.testing.assert_allclose(logits[:, 0], full[:, t], atol=1e-5)


def test_decoder_asks_for_is_causal_with_the_target_padding_only():
  calls = []
  model = seq2seq(recording(calls))
  src, tgt, src_valid, tgt_valid = seq2seq_batch()
  jax.eval_shape(lambda *a: model(*a), src, tgt, src_valid, tgt_valid)  # tracing records the calls
  encoder = [(7, 7, False, (2, 1, 1, 7))]
  decoder_layer = [(9, 9, True, (2, 1, 1, 9)), (9, 7, False, (2, 1, 1, 7))]
  assert calls == encoder + decoder_layer * 2
  calls.clear()
  jax.eval_shape(lambda *a: model(*a), src, tgt, src_valid)
  assert calls == encoder + [(9, 9, True, None), (9, 7, False, (2, 1, 1, 7))] * 2
  calls.clear()
  cache = jax.eval_shape(
    lambda: model.init_cache(model.encode(src, src_valid), src_valid, max_len=12)
  )
  calls.clear()
  jax.eval_shape(lambda t, c: model.extend(t, c), tgt[:, :3], cache)
  assert calls == [(3, 12, False, (2, 1, 3, 12)), (3, 7, False, (2, 1, 1, 7))] * 2


def test_decoder_logits_and_maps_are_those_of_causal_and_padding_masks():
  model, old = seq2seq(reference), seq2seq(masks_only)
  src, tgt, src_valid, tgt_valid = seq2seq_batch()
  logits, maps = jax.jit(lambda *a: capture_attention(model, *a))(src, tgt, src_valid, tgt_valid)
  old_logits, old_maps = jax.jit(lambda *a: capture_attention(old, *a))(
    src, tgt, src_valid, tgt_valid
  )
  np.testing.assert_array_equal(logits, old_logits)
  for i in range(2):
    self_attn, cross_attn = (maps[f"decoder_layers.{i}.{k}_attention"] for k in ("self", "cross"))
    old_self, old_cross = (old_maps[f"decoder_layers.{i}.{k}_attention"] for k in ("self", "cross"))
    np.testing.assert_array_equal(self_attn, old_self)
    np.testing.assert_array_equal(cross_attn, old_cross)
    allowed = np.tril(np.ones((9, 9), bool)) & np.asarray(tgt_valid)[:, None, None, :]
    assert np.all(np.asarray(self_attn)[~np.broadcast_to(allowed, self_attn.shape)] == 0.0)


def test_decoder_tiled_teacher_forcing_equals_cached_decoding():
  model = seq2seq(tiled)
  src, tgt, src_valid, _ = seq2seq_batch()
  full = jax.jit(lambda s, t, v: model(s, t, v))(src, tgt, src_valid)
  extend = jax.jit(lambda t, cache: model.extend(t, cache))
  cache = model.init_cache(model.encode(src, src_valid), src_valid, max_len=9)
  logits, cache = extend(tgt[:, :3], cache)
  np.testing.assert_allclose(logits, full[:, :3], atol=1e-5)
  for t in range(3, 9):
    logits, cache = extend(tgt[:, t : t + 1], cache)
    np.testing.assert_allclose(logits[:, 0], full[:, t], atol=1e-5)
