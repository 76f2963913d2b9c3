"""The model a config describes: encoder, encoder-decoder or GPT, sized for its task."""

import functools
from collections.abc import Callable

import jax
from flax import nnx

import tfmr_jax as tj
from tfmr_jax.models import GPT2, EncoderDecoderTransformer, GPT2Config, TransformerEncoder


def attention_fn_of(model_config) -> Callable:
  """`tj.attention`, with `implementation=` bound when the config names one."""
  if model_config.attention_implementation is None:
    return tj.attention
  return functools.partial(tj.attention, implementation=model_config.attention_implementation)


def build_model(config, task, *, seed: int) -> nnx.Module:
  """A freshly initialised model for `task` (its vocab_size and max_len), from `config.model`.

  Parameters come from the 'params' stream of `seed`, dropout masks from its
  'dropout' stream.
  """
  m = config.model
  key = jax.random.key(seed)
  rngs = nnx.Rngs(params=jax.random.fold_in(key, 0), dropout=jax.random.fold_in(key, 1))
  d_ff = 4 * m.d_model if m.d_ff is None else m.d_ff
  common = dict(
    d_model=m.d_model,
    num_heads=m.num_heads,
    d_ff=d_ff,
    num_kv_heads=m.num_kv_heads,
    dropout=m.dropout,
    max_len=task.max_len,
    attention_fn=attention_fn_of(m),
    rngs=rngs,
  )
  if m.kind == "encoder":
    return TransformerEncoder(
      vocab_size=task.vocab_size,
      num_outputs=task.vocab_size,
      num_layers=m.num_layers,
      norm=m.norm,
      positions=m.positions,
      activation=m.activation,
      **common,
    )
  if m.kind == "encoder_decoder":
    return EncoderDecoderTransformer(
      src_vocab_size=task.vocab_size,
      tgt_vocab_size=task.vocab_size,
      num_encoder_layers=m.num_layers,
      num_decoder_layers=m.num_layers,
      share_embeddings=m.share_embeddings,
      norm=m.norm,
      positions=m.positions,
      activation=m.activation,
      **common,
    )
  gpt_config = GPT2Config(
    vocab_size=task.vocab_size,
    max_len=task.max_len,
    num_layers=m.num_layers,
    num_heads=m.num_heads,
    d_model=m.d_model,
    d_ff=d_ff,
    dropout=m.dropout,
    num_kv_heads=m.num_kv_heads,
  )
  return GPT2(gpt_config, attention_fn=attention_fn_of(m), rngs=rngs)
