"""EncoderDecoderTransformer: decoder causality, source padding, KV cache, embeddings, errors."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from tfmr_jax.models import (
  EncoderDecoderTransformer,
  TransformerConfig,
  TransformerEncoder,
  count_params,
)
from tfmr_jax.nn import capture_attention

VS, VT, P = 11, 13, 16


def config(**kwargs):
  args = dict(
    vocab_size=VS, tgt_vocab_size=VT, num_layers=2, d_model=12, num_heads=3, d_ff=20, max_len=P
  )
  return TransformerConfig(**{**args, **kwargs})


def make(**kwargs):
  model = EncoderDecoderTransformer(config(**kwargs), rngs=nnx.Rngs(0))
  model.eval()
  return model


@pytest.fixture(scope="module")
def s2s():
  return make(positions="learned", norm="pre")


@pytest.fixture(scope="module")
def forward(s2s):
  """The teacher-forced forward pass, jitted once for the module."""
  return jax.jit(lambda s, t, v: s2s(s, t, v))


@pytest.fixture(scope="module")
def extend(s2s):
  return jax.jit(lambda t, cache: s2s.extend(t, cache))


@pytest.fixture(scope="module")
def batch():
  src = jax.random.randint(jax.random.key(0), (2, 7), 0, VS)
  tgt = jax.random.randint(jax.random.key(1), (2, 9), 0, VT)
  src_valid = jnp.arange(7)[None, :] < jnp.array([[7], [4]])
  return src, tgt, src_valid


def test_future_targets_do_not_change_past_logits(forward, batch):
  src, tgt, valid = batch
  perturbed = tgt.at[:, 4:].set((tgt[:, 4:] + 3) % VT)
  run = forward
  out, out_perturbed = run(src, tgt, valid), run(src, perturbed, valid)
  np.testing.assert_allclose(out[:, :4], out_perturbed[:, :4], atol=1e-6)
  assert not np.allclose(out[:, 4:], out_perturbed[:, 4:])


def test_decoder_causality_by_gradients(s2s, batch):
  """d logits[t] / d (target position embedding at t') is zero exactly when t' > t."""
  src, tgt, valid = batch
  T = tgt.shape[1]
  graphdef, state = nnx.split(s2s)

  def logits_per_position(table_PD):
    model = nnx.merge(graphdef, jax.tree.map(jnp.asarray, state))  # fresh Variables in this trace
    model.tgt_positions.table.embedding[...] = table_PD
    return model(src, tgt, valid).sum(axis=(0, 2))

  table = s2s.tgt_positions.table.embedding[...]
  jacobian_TPD = jax.jit(jax.jacrev(logits_per_position))(table)
  touched_TP = np.abs(np.asarray(jacobian_TPD)).sum(-1) > 0
  np.testing.assert_array_equal(touched_TP[:, :T], np.tril(np.ones((T, T), bool)))
  assert not touched_TP[:, T:].any()


def test_padded_source_tokens_are_ignored(forward, batch):
  src, tgt, valid = batch
  perturbed = jnp.where(valid, src, (src + 4) % VS)

  def run(s, v):
    return forward(s, tgt, v)

  np.testing.assert_allclose(run(src, valid), run(perturbed, valid), atol=1e-6)
  everything = jnp.ones_like(valid)
  assert not np.allclose(run(src, everything)[1], run(perturbed, everything)[1], atol=1e-4)


@pytest.mark.parametrize("prefill", [1, 3, 6])
def test_cached_decoding_equals_teacher_forcing(s2s, forward, extend, batch, prefill):
  src, tgt, valid = batch
  T = tgt.shape[1]
  full = forward(src, tgt, valid)
  cache = s2s.init_cache(s2s.encode(src, valid), valid, max_len=T)
  logits, cache = extend(tgt[:, :prefill], cache)
  np.testing.assert_allclose(logits, full[:, :prefill], atol=1e-5)
  for t in range(prefill, T):
    logits, cache = extend(tgt[:, t : t + 1], cache)
    np.testing.assert_allclose(logits[:, 0], full[:, t], atol=1e-5)


def test_attention_maps(s2s, batch):
  src, tgt, valid = batch
  logits, maps = capture_attention(s2s, src, tgt, valid)
  np.testing.assert_array_equal(logits, s2s(src, tgt, valid))
  assert logits.shape == (2, 9, VT)
  assert list(maps) == [
    "encoder.layers.0.attention",
    "encoder.layers.1.attention",
    "decoder_layers.0.self_attention",
    "decoder_layers.0.cross_attention",
    "decoder_layers.1.self_attention",
    "decoder_layers.1.cross_attention",
  ]
  assert [maps[f"encoder.layers.{i}.attention"].shape for i in range(2)] == [(2, 3, 7, 7)] * 2
  self_attn = maps["decoder_layers.1.self_attention"]
  cross_attn = maps["decoder_layers.1.cross_attention"]
  assert self_attn.shape == (2, 3, 9, 9) and cross_attn.shape == (2, 3, 9, 7)
  np.testing.assert_array_equal(np.triu(np.asarray(self_attn)[0, 0], k=1), 0.0)
  np.testing.assert_array_equal(np.asarray(cross_attn)[1, :, :, 4:], 0.0)


def test_shared_and_tied_embeddings():
  D = 12
  separate = count_params(make(vocab_size=VT))
  shared = make(vocab_size=VT, share_embeddings=True, tie_output=True)
  assert shared.tgt_embedding is None and shared.output is None
  assert separate - count_params(shared) == VT * D + (D * VT + VT)  # tgt table and output layer


def test_paper_defaults():
  base = TransformerConfig.paper_base(
    vocab_size=37000, max_len=256, share_embeddings=True, tie_output=True
  )
  model = nnx.eval_shape(lambda: EncoderDecoderTransformer(base, rngs=nnx.Rngs(0)))
  # Vaswani et al. Table 3, base model: 65M parameters. By hand: one shared table, 6
  # encoder layers of 3,152,384 and 6 decoder layers of 4,204,032; no position parameters.
  D, F, V, L = 512, 2048, 37000, 6
  attention, ffn, norm = 4 * (D * D + D), (D * F + F) + (F * D + D), 2 * D
  encoder_layer, decoder_layer = attention + ffn + 2 * norm, 2 * attention + ffn + 3 * norm
  assert count_params(model) == V * D + L * (encoder_layer + decoder_layer)  # 63,082,496
  assert 60e6 < count_params(model) < 66e6
  assert len(model.encoder.layers) == 6 and len(model.decoder_layers) == 6


def test_bad_arguments():
  with pytest.raises(ValueError, match="share_embeddings=True: needs tgt_vocab_size == vocab_size"):
    make(share_embeddings=True)
  with pytest.raises(ValueError, match="num_decoder_layers=0: must be a positive int"):
    make(num_decoder_layers=0)
  model = make()
  with pytest.raises(ValueError, match=r"src_BS has length 17"):
    model(jnp.zeros((1, 17), jnp.int32), jnp.zeros((1, 2), jnp.int32))
  with pytest.raises(ValueError, match="cache max_len=17 exceeds the model's max_len=16"):
    model.init_cache(jnp.zeros((1, 3, 12)), max_len=17)


def test_encode_is_a_standalone_encoder_with_the_same_weights(s2s, batch):
  src, _, valid = batch
  encoder = TransformerEncoder(config(positions="learned", norm="pre"), rngs=nnx.Rngs(1))
  nnx.update(encoder, nnx.state(s2s.encoder))
  np.testing.assert_allclose(s2s.encode(src, valid), encoder(src, valid), atol=1e-6)
  fresh = TransformerEncoder(config(positions="learned", norm="pre"), rngs=nnx.Rngs(1))
  assert not np.allclose(s2s.encode(src, valid), fresh(src, valid))
