"""The model a config describes: encoder, encoder-decoder or GPT, sized for its task."""

import jax
from flax import nnx

from tfmr_jax.models import GPT2, EncoderDecoderTransformer, TransformerConfig, TransformerEncoder

FAMILIES = {
  "encoder": TransformerEncoder,
  "encoder_decoder": EncoderDecoderTransformer,
  "gpt": GPT2,
}


def model_config_of(config, task) -> TransformerConfig:
  """The TransformerConfig of `config.model`, sized for `task` (its vocab_size and max_len)."""
  m = config.model
  fields = dict(
    vocab_size=task.vocab_size,
    max_len=task.max_len,
    num_layers=m.num_layers,
    d_model=m.d_model,
    num_heads=m.num_heads,
    num_kv_heads=m.num_kv_heads,
    d_ff=m.d_ff,
    dropout=m.dropout,
    norm=m.norm,
    positions=m.positions,
    activation=m.activation,
    attention_implementation=m.attention_implementation,
  )
  if m.kind == "gpt":
    return TransformerConfig.gpt(**fields)
  if m.kind == "encoder":
    return TransformerConfig(**fields, num_outputs=task.vocab_size)
  return TransformerConfig(
    **fields, share_embeddings=m.share_embeddings, tie_output=m.share_embeddings
  )


def build_model(config, task, *, seed: int) -> nnx.Module:
  """A freshly initialised model for `task` (its vocab_size and max_len), from `config.model`.

  Parameters come from the 'params' stream of `seed`, dropout masks from its
  'dropout' stream.
  """
  key = jax.random.key(seed)
  rngs = nnx.Rngs(params=jax.random.fold_in(key, 0), dropout=jax.random.fold_in(key, 1))
  return FAMILIES[config.model.kind](model_config_of(config, task), rngs=rngs)
