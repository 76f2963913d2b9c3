"""The model a config describes: encoder, encoder-decoder or GPT, sized for its task."""

import jax
from flax import nnx

from tfmr_jax.config import model_config
from tfmr_jax.models import GPT2, EncoderDecoderTransformer, TransformerConfig, TransformerEncoder

FAMILIES = {
  "encoder": TransformerEncoder,
  "encoder_decoder": EncoderDecoderTransformer,
  "gpt": GPT2,
}


def model_config_of(config, task) -> TransformerConfig:
  """The TransformerConfig of `config.model`, sized for `task` (its vocab_size and max_len)."""
  return model_config(config.model, vocab_size=task.vocab_size, max_len=task.max_len)


def build_model(config, task, *, seed: int) -> nnx.Module:
  """A freshly initialised model for `task` (its vocab_size and max_len), from `config.model`.

  Parameters come from the 'params' stream of `seed`, dropout masks from its
  'dropout' stream.
  """
  key = jax.random.key(seed)
  rngs = nnx.Rngs(params=jax.random.fold_in(key, 0), dropout=jax.random.fold_in(key, 1))
  return FAMILIES[config.model.kind](model_config_of(config, task), rngs=rngs)
