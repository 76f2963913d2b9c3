"""Transformer encoder ("Attention Is All You Need", section 3.1) with a per-position head.

Dimension key: B batch, T positions, D model dim, N heads, V vocabulary, O outputs.

    x = Dropout(TokenEmbedding(tokens) * sqrt(D) + PE[0..T))
    L x [x = AddNorm(x, SelfAttention(x, key-padding mask)); x = AddNorm(x, FFN(x))]
    (pre-LN: a final LayerNorm)
    logits = Linear(x)          (no head when config.num_outputs is None)
"""

from collections.abc import Callable

from flax import nnx

from tfmr_jax.models.config import TransformerConfig
from tfmr_jax.models.parts import (
  check_tokens,
  constrain_logits,
  key_padding_mask,
  logits_head,
  run_layers,
)
from tfmr_jax.models.stack import EmbeddedStack


class TransformerEncoder(EmbeddedStack):
  """Encoder stack with a per-position output head (e.g. the reverse task).

  Reads from `config`: vocab_size, max_len, num_layers, d_model, num_heads, num_kv_heads,
  d_ff, dropout, attention_dropout, window, window_pattern, norm, norm_kind, positions,
  rope_base, activation, qk_norm, ln_eps, scale_embeddings, use_bias, init_std,
  attention_implementation, num_outputs, dtype, param_dtype. The head's logits are float32
  whatever the compute dtype.
  `attention_fn` overrides the op every layer runs.
  """

  def __init__(
    self, config: TransformerConfig, *, rngs: nnx.Rngs, attention_fn: Callable | None = None
  ):
    super().__init__(config, rngs=rngs, attention_fn=attention_fn)
    c = self.config
    self.head = None if c.num_outputs is None else logits_head(c.num_outputs, c, rngs=rngs)

  def __call__(self, tokens_BT, valid_BT=None):
    """tokens_BT: int ids; valid_BT: bool, True = real token (padded keys are never attended).

    Returns logits_BTO (float32), or the final hidden states [B, T, D] (in the compute
    dtype) without a head.
    """
    check_tokens(
      "tokens_BT", tokens_BT, max_len=self.config.max_len, vocab_size=self.config.vocab_size
    )
    mask = key_padding_mask("valid_BT", valid_BT, tokens_BT)
    x_BTD = self.normed(run_layers(self.layers, self.embed(tokens_BT), mask=mask))
    return x_BTD if self.head is None else constrain_logits(self.head(x_BTD))
