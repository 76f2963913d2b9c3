"""Transformer encoder ("Attention Is All You Need", section 3.1) with a per-position head.

Dimension key: B batch, T positions, D model dim, N heads, V vocabulary, O outputs.

    x = Dropout(TokenEmbedding(tokens) * sqrt(D) + PE[0..T))
    L x [x = AddNorm(x, SelfAttention(x, key-padding mask)); x = AddNorm(x, FFN(x))]
    (pre-LN: a final LayerNorm)
    logits = Linear(x)          (no head when config.num_outputs is None)
"""

from collections.abc import Callable

import jax.numpy as jnp
from flax import nnx

from tfmr_jax.models.config import TransformerConfig
from tfmr_jax.models.parts import (
  attention_fn_of,
  check_config,
  check_tokens,
  embedding_init,
  key_padding_mask,
  make_layers,
  run_layers,
)
from tfmr_jax.nn import EncoderBlock, PositionEmbedding, TokenEmbedding, layer_norm, make_dropout


class TransformerEncoder(nnx.Module):
  """Encoder stack with a per-position output head (e.g. the reverse task).

  Reads from `config`: vocab_size, max_len, num_layers, d_model, num_heads,
  num_kv_heads, d_ff, dropout, norm, positions, activation, ln_eps,
  scale_embeddings, use_bias, init_std, attention_implementation, num_outputs.
  `attention_fn` overrides the op every layer runs.
  """

  def __init__(
    self, config: TransformerConfig, *, rngs: nnx.Rngs, attention_fn: Callable | None = None
  ):
    c = self.config = check_config(config)
    init = embedding_init(c)
    self.token_embedding = TokenEmbedding(
      c.vocab_size, c.d_model, scale=c.scale_embeddings, embedding_init=init, rngs=rngs
    )
    self.position_embedding = PositionEmbedding(
      c.max_len, c.d_model, kind=c.positions, embedding_init=init, rngs=rngs
    )
    self.embedding_dropout = make_dropout(c.dropout, rngs)
    self.layers = make_layers(
      EncoderBlock, c.num_layers, c, attention_fn=attention_fn_of(c, attention_fn), rngs=rngs
    )
    self.final_norm = (
      layer_norm(c.d_model, epsilon=c.ln_eps, rngs=rngs) if c.norm == "pre" else None
    )
    self.head = None if c.num_outputs is None else nnx.Linear(c.d_model, c.num_outputs, rngs=rngs)

  def __call__(self, tokens_BT, valid_BT=None):
    """tokens_BT: int ids; valid_BT: bool, True = real token (padded keys are never attended).

    Returns logits_BTO, or the final hidden states [B, T, D] without a head.
    """
    check_tokens("tokens_BT", tokens_BT, self.config.max_len)
    mask = key_padding_mask("valid_BT", valid_BT, tokens_BT)
    T = tokens_BT.shape[1]
    x_BTD = self.token_embedding(tokens_BT) + self.position_embedding(jnp.arange(T))[None]
    x_BTD = run_layers(self.layers, self.embedding_dropout(x_BTD), mask=mask)
    if self.final_norm is not None:
      x_BTD = self.final_norm(x_BTD)
    return x_BTD if self.head is None else self.head(x_BTD)
