"""The three model families: encoder, encoder-decoder and GPT-2."""

from tfmr_jax.models.encoder import TransformerEncoder
from tfmr_jax.models.encoder_decoder import EncoderDecoderTransformer, Seq2SeqCache
from tfmr_jax.models.gpt2 import GPT2, GPT2Config, count_params, from_hf

__all__ = [
  "GPT2",
  "EncoderDecoderTransformer",
  "GPT2Config",
  "Seq2SeqCache",
  "TransformerEncoder",
  "count_params",
  "from_hf",
]
