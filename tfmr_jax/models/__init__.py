"""The three model families: encoder, encoder-decoder and GPT-2, built from a TransformerConfig."""

from tfmr_jax.models.config import ModelConfigError, TransformerConfig
from tfmr_jax.models.encoder import TransformerEncoder
from tfmr_jax.models.encoder_decoder import EncoderDecoderTransformer, Seq2SeqCache
from tfmr_jax.models.gpt2 import GPT2
from tfmr_jax.models.hf import config_from_hf, from_hf, load_hf_dir, to_hf
from tfmr_jax.models.hf_checks import HFConfigError, HFWeightsError
from tfmr_jax.models.parts import count_params

__all__ = [
  "GPT2",
  "EncoderDecoderTransformer",
  "HFConfigError",
  "HFWeightsError",
  "ModelConfigError",
  "Seq2SeqCache",
  "TransformerConfig",
  "TransformerEncoder",
  "config_from_hf",
  "count_params",
  "from_hf",
  "load_hf_dir",
  "to_hf",
]
