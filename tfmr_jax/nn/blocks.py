"""Transformer blocks: attention and feed-forward sublayers, each wrapped in a `Residual`.

Dimension key: B batch, T query length, S key/value length, N heads, D model dim.

Blocks return a tuple `(x_BTD, attention, cache)`, with None for what was not asked
for; the models turn that into their public return values.
"""

from collections.abc import Callable

from flax import nnx

from tfmr_jax.nn.attention import MultiHeadAttention
from tfmr_jax.nn.feed_forward import FeedForward
from tfmr_jax.nn.kv_cache import KVCache
from tfmr_jax.nn.residual import Residual
from tfmr_jax.ops import attention


def _unpack(result, return_attention: bool, cached: bool):
  """MultiHeadAttention's variable return -> (out, attn | None, cache | None)."""
  if not (return_attention or cached):
    return result, None, None
  out = result[0]
  attn = result[1] if return_attention else None
  cache = result[-1] if cached else None
  return out, attn, cache


class EncoderBlock(nnx.Module):
  """Self-attention then feed-forward: the encoder layer, and with is_causal=True the GPT layer.

  Args are those of the sublayers; `norm` is "post" (the paper) or "pre" (GPT-2),
  `dropout` the residual dropout after each sublayer, `ln_eps` the LayerNorm epsilon.
  `kernel_init` / `out_kernel_init` go to both sublayers (GPT-2 scales the output ones).
  """

  def __init__(
    self,
    d_model: int,
    num_heads: int,
    d_ff: int,
    *,
    num_kv_heads: int | None = None,
    dropout: float = 0.0,
    norm: str = "post",
    activation: str = "relu",
    ln_eps: float = 1e-6,
    use_bias: bool = True,
    attention_fn: Callable = attention,
    kernel_init=None,
    out_kernel_init=None,
    rngs: nnx.Rngs,
  ):
    self.attention = MultiHeadAttention(
      d_model,
      num_heads,
      num_kv_heads=num_kv_heads,
      use_bias=use_bias,
      attention_fn=attention_fn,
      kernel_init=kernel_init,
      out_kernel_init=out_kernel_init,
      rngs=rngs,
    )
    self.attention_residual = Residual(
      d_model, norm=norm, dropout=dropout, epsilon=ln_eps, rngs=rngs
    )
    self.feed_forward = FeedForward(
      d_model,
      d_ff,
      activation=activation,
      kernel_init=kernel_init,
      out_kernel_init=out_kernel_init,
      rngs=rngs,
    )
    self.feed_forward_residual = Residual(
      d_model, norm=norm, dropout=dropout, epsilon=ln_eps, rngs=rngs
    )

  def __call__(
    self,
    x_BTD,
    *,
    mask=None,
    is_causal: bool = False,
    cache: KVCache | None = None,
    return_attention: bool = False,
  ):
    """mask: bool [B, N, T, S]-broadcastable; is_causal: position t sees positions <= t only.

    With a cache, attention is causal over it (whatever is_causal says).
    """

    def sublayer(h_BTD):
      return self.attention(
        h_BTD, mask=mask, is_causal=is_causal, cache=cache, return_attention=return_attention
      )

    result = self.attention_residual(x_BTD, sublayer)
    x_BTD, attn, cache = _unpack(result, return_attention, cache is not None)
    x_BTD = self.feed_forward_residual(x_BTD, self.feed_forward)
    return x_BTD, attn, cache


class DecoderBlock(nnx.Module):
  """Masked self-attention, cross-attention over the encoder memory, feed-forward."""

  def __init__(
    self,
    d_model: int,
    num_heads: int,
    d_ff: int,
    *,
    num_kv_heads: int | None = None,
    dropout: float = 0.0,
    norm: str = "post",
    activation: str = "relu",
    ln_eps: float = 1e-6,
    attention_fn: Callable = attention,
    rngs: nnx.Rngs,
  ):
    def residual():
      return Residual(d_model, norm=norm, dropout=dropout, epsilon=ln_eps, rngs=rngs)

    def mha():
      return MultiHeadAttention(
        d_model, num_heads, num_kv_heads=num_kv_heads, attention_fn=attention_fn, rngs=rngs
      )

    self.self_attention = mha()
    self.self_attention_residual = residual()
    self.cross_attention = mha()
    self.cross_attention_residual = residual()
    self.feed_forward = FeedForward(d_model, d_ff, activation=activation, rngs=rngs)
    self.feed_forward_residual = residual()

  def __call__(
    self,
    x_BTD,
    memory_kv,
    *,
    self_mask=None,
    is_causal: bool = False,
    cross_mask=None,
    cache: KVCache | None = None,
    return_attention: bool = False,
  ):
    """One decoder layer.

    Args:
      x_BTD: decoder stream.
      memory_kv: (k_BSKH, v_BSKH) of the encoder memory, from
        `self.cross_attention.project_kv(memory_BSD)` (computed once when decoding).
      self_mask: bool, broadcastable to [B, N, T, T] (or [B, N, T, cache length]).
      is_causal: self-attention sees positions <= t only (ANDed with self_mask);
        the decoder's rule, without a mask array. Cross-attention is never causal.
      cross_mask: bool, broadcastable to [B, N, T, S], e.g. source padding.
      cache: self-attention KV cache; attention is then causal over it (whatever
        is_causal says).

    Returns:
      (x_BTD, (self_attn_BNTT, cross_attn_BNTS) or None, cache or None).
    """

    def self_sublayer(h_BTD):
      return self.self_attention(
        h_BTD, mask=self_mask, is_causal=is_causal, cache=cache, return_attention=return_attention
      )

    result = self.self_attention_residual(x_BTD, self_sublayer)
    x_BTD, self_attn, cache = _unpack(result, return_attention, cache is not None)

    k_BSKH, v_BSKH = memory_kv

    def cross_sublayer(h_BTD):
      return self.cross_attention.attend(
        h_BTD, k_BSKH, v_BSKH, mask=cross_mask, return_attention=return_attention
      )

    result = self.cross_attention_residual(x_BTD, cross_sublayer)
    x_BTD, cross_attn, _ = _unpack(result, return_attention, False)
    x_BTD = self.feed_forward_residual(x_BTD, self.feed_forward)
    attn = (self_attn, cross_attn) if return_attention else None
    return x_BTD, attn, cache
