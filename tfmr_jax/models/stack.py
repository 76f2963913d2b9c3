"""What the encoder and GPT share: embeddings, a stack of EncoderBlocks, a final norm.

Dimension key: B batch, T positions, D model dim.

    x = Dropout(TokenEmbedding(tokens) + PositionEmbedding(positions))
    L x EncoderBlock                     (how they attend is the subclass's call)
    (pre-norm: a final LayerNorm or RMSNorm)

`TransformerEncoder` adds a per-position head and key-padding masks; `GPT2` attends
causally and reads logits off the tied token embedding (or its own head).
"""

from collections.abc import Callable

import jax.numpy as jnp
from flax import nnx

from tfmr_jax.models.config import TransformerConfig
from tfmr_jax.models.parts import (
  attention_fn_of,
  check_config,
  embedding_init,
  final_norm,
  make_layers,
  precision,
)
from tfmr_jax.nn import EncoderBlock, PositionEmbedding, TokenEmbedding, make_dropout


class EmbeddedStack(nnx.Module):
  """Token and position embeddings, embedding dropout, L EncoderBlocks, final norm.

  Reads from `config`: vocab_size, max_len, num_layers, d_model, num_heads, num_kv_heads,
  d_ff, dropout, attention_dropout, window, window_pattern, norm, norm_kind, positions,
  rope_base, activation, qk_norm, ln_eps, scale_embeddings, use_bias, init_std,
  attention_implementation, dtype, param_dtype.
  `attention_fn` overrides the op every layer runs. The stream x_BTD is in `dtype`.
  """

  def __init__(
    self, config: TransformerConfig, *, rngs: nnx.Rngs, attention_fn: Callable | None = None
  ):
    c = self.config = check_config(config)
    init, dtypes = embedding_init(c), precision(c)
    self.token_embedding = TokenEmbedding(
      c.vocab_size, c.d_model, scale=c.scale_embeddings, embedding_init=init, **dtypes, rngs=rngs
    )
    self.position_embedding = PositionEmbedding(
      c.max_len, c.d_model, kind=c.positions, embedding_init=init, **dtypes, rngs=rngs
    )
    self.embedding_dropout = make_dropout(c.dropout, rngs)
    self.layers = make_layers(
      EncoderBlock, c.num_layers, c, attention_fn=attention_fn_of(c, attention_fn), rngs=rngs
    )
    self.final_norm = final_norm(c, rngs=rngs)

  def embed(self, tokens_BT, positions_BT=None):
    """x_BTD of tokens at int positions_BT (default [0, T) in every row): embeddings plus
    positions, dropout."""
    if positions_BT is None:
      positions_BT = jnp.arange(tokens_BT.shape[1])[None]
    x_BTD = self.token_embedding(tokens_BT) + self.position_embedding(positions_BT)
    return self.embedding_dropout(x_BTD)

  def normed(self, x_BTD):
    """The stack's output: x_BTD after the final norm (pre-norm), else as it is."""
    return x_BTD if self.final_norm is None else self.final_norm(x_BTD)
