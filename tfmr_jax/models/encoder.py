"""Transformer encoder ("Attention Is All You Need", section 3.1) with a per-position head.

Dimension key: B batch, T positions, D model dim, N heads, V vocabulary, O outputs.

    x = Dropout(TokenEmbedding(tokens) * sqrt(D) + PE[0..T))
    N x [x = AddNorm(x, SelfAttention(x, key-padding mask)); x = AddNorm(x, FFN(x))]
    (pre-LN: a final LayerNorm)
    logits = Linear(x)
"""

from collections.abc import Callable

import jax.numpy as jnp
from flax import nnx

from tfmr_jax.nn import EncoderBlock, PositionEmbedding, TokenEmbedding, make_dropout
from tfmr_jax.nn.residual import check_norm
from tfmr_jax.ops import attention, padding_mask
from tfmr_jax.ops.guards import check_positive, check_rank


def check_tokens(name: str, tokens, max_len: int) -> None:
  """Raise unless `tokens` is an int [B, T] array with 0 < T <= max_len."""
  check_rank(name, tokens, 2, "[B, T]")
  if not jnp.issubdtype(jnp.result_type(tokens), jnp.integer):
    raise TypeError(f"{name} must be integer token ids, got dtype {jnp.result_type(tokens)}")
  T = tokens.shape[1]
  if not 0 < T <= max_len:
    raise ValueError(f"{name} has length {T}; it must lie in [1, max_len={max_len}]")


def key_padding_mask(name: str, valid, tokens):
  """valid [B, T] bool (True = real token) -> [B, 1, 1, T] mask, or None."""
  if valid is None:
    return None
  if jnp.result_type(valid) != jnp.bool_:
    raise TypeError(f"{name} must be bool (True = real token), got dtype {jnp.result_type(valid)}")
  if valid.shape != tokens.shape:
    raise ValueError(f"{name} has shape {valid.shape}, expected the token shape {tokens.shape}")
  return padding_mask(valid)


class TransformerEncoder(nnx.Module):
  """Encoder stack with a per-position output head (e.g. the reverse task).

  Args:
    vocab_size: V input tokens. num_outputs: width of the head (None: return the
      final hidden states [B, T, D]).
    num_layers, d_model, num_heads, d_ff: L, D, N, F.
    max_len: longest input.
    num_kv_heads: K for grouped-query attention (default N).
    dropout: residual and embedding dropout (the paper's P_drop).
    norm: "post" (the paper) or "pre" (then a final LayerNorm).
    positions: "sinusoidal", "learned" or "none".
    activation: "relu" or "gelu" (tanh approximation).
    attention_fn: the attention op used by every layer.
    ln_eps: LayerNorm epsilon. scale_embeddings: multiply token embeddings by sqrt(D).
  """

  def __init__(
    self,
    *,
    vocab_size: int,
    num_outputs: int | None,
    num_layers: int,
    d_model: int,
    num_heads: int,
    d_ff: int,
    max_len: int,
    num_kv_heads: int | None = None,
    dropout: float = 0.1,
    norm: str = "post",
    positions: str = "sinusoidal",
    activation: str = "relu",
    attention_fn: Callable = attention,
    ln_eps: float = 1e-6,
    scale_embeddings: bool = True,
    rngs: nnx.Rngs,
  ):
    check_positive("num_layers", num_layers)
    check_positive("max_len", max_len)
    check_norm(norm)
    if num_outputs is not None:
      check_positive("num_outputs", num_outputs)
    self.max_len, self.norm = max_len, norm
    self.token_embedding = TokenEmbedding(vocab_size, d_model, scale=scale_embeddings, rngs=rngs)
    self.position_embedding = PositionEmbedding(max_len, d_model, kind=positions, rngs=rngs)
    self.embedding_dropout = make_dropout(dropout, rngs)
    self.layers = nnx.List(
      [
        EncoderBlock(
          d_model,
          num_heads,
          d_ff,
          num_kv_heads=num_kv_heads,
          dropout=dropout,
          norm=norm,
          activation=activation,
          ln_eps=ln_eps,
          attention_fn=attention_fn,
          rngs=rngs,
        )
        for _ in range(num_layers)
      ]
    )
    self.final_norm = (
      nnx.LayerNorm(d_model, epsilon=ln_eps, use_fast_variance=False, rngs=rngs)
      if norm == "pre"
      else None
    )
    self.head = None if num_outputs is None else nnx.Linear(d_model, num_outputs, rngs=rngs)

  def __call__(self, tokens_BT, valid_BT=None, *, return_attention: bool = False):
    """tokens_BT: int ids; valid_BT: bool, True = real token (padded keys are never attended).

    Returns logits_BTO ([B, T, D] hidden states without a head), and with
    return_attention also a list over layers of [B, N, T, T] weights.
    """
    check_tokens("tokens_BT", tokens_BT, self.max_len)
    mask = key_padding_mask("valid_BT", valid_BT, tokens_BT)
    T = tokens_BT.shape[1]
    x_BTD = self.token_embedding(tokens_BT) + self.position_embedding(jnp.arange(T))[None]
    x_BTD = self.embedding_dropout(x_BTD)
    maps = []
    for layer in self.layers:
      x_BTD, attn_BNTT, _ = layer(x_BTD, mask=mask, return_attention=return_attention)
      maps.append(attn_BNTT)
    if self.final_norm is not None:
      x_BTD = self.final_norm(x_BTD)
    out = x_BTD if self.head is None else self.head(x_BTD)
    return (out, maps) if return_attention else out
