"""Flax NNX modules: parameters live here, the math in `tfmr_jax.ops`."""

from tfmr_jax.nn.attention import MultiHeadAttention
from tfmr_jax.nn.blocks import DecoderBlock, EncoderBlock
from tfmr_jax.nn.capture import capture_attention
from tfmr_jax.nn.dropout import check_dropout, make_dropout
from tfmr_jax.nn.embeddings import PositionEmbedding, TokenEmbedding
from tfmr_jax.nn.feed_forward import FeedForward
from tfmr_jax.nn.kv_cache import KVCache
from tfmr_jax.nn.norms import layer_norm, make_norm, rms_norm
from tfmr_jax.nn.residual import Residual
from tfmr_jax.nn.single_head_attention import SingleHeadAttention

__all__ = [
  "DecoderBlock",
  "EncoderBlock",
  "FeedForward",
  "KVCache",
  "MultiHeadAttention",
  "PositionEmbedding",
  "Residual",
  "SingleHeadAttention",
  "TokenEmbedding",
  "capture_attention",
  "check_dropout",
  "layer_norm",
  "make_dropout",
  "make_norm",
  "rms_norm",
]
