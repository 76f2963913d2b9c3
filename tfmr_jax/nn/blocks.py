"""Transformer blocks: attention and feed-forward sublayers, each wrapped in a `Residual`.

Dimension key: B batch, T query length, S key/value length, K kv heads, H head dim,
D model dim, F feed-forward dim.

A block's `__call__` returns the new residual stream x_BTD, whatever its options;
KV-cache decoding goes through `extend`, which returns (x_BTD, cache).
"""

from collections.abc import Callable

import jax.numpy as jnp
from flax import nnx

from tfmr_jax.nn.attention import MultiHeadAttention
from tfmr_jax.nn.feed_forward import FeedForward
from tfmr_jax.nn.kv_cache import KVCache
from tfmr_jax.nn.residual import Residual
from tfmr_jax.ops import attention


class _Sublayers:
  """What both blocks build the same way: attention, feed-forward and residual factories."""

  def __init__(self, d_model, num_heads, d_ff, *, rngs, **options):
    self.d_model, self.num_heads, self.d_ff, self.rngs = d_model, num_heads, d_ff, rngs
    self.options = options

  def attention(self, *, cross: bool = False):
    """Multi-head attention; cross-attention has no RoPE and no window."""
    o = self.options
    return MultiHeadAttention(
      self.d_model,
      self.num_heads,
      num_kv_heads=o["num_kv_heads"],
      use_bias=o["use_bias"],
      attention_fn=o["attention_fn"],
      kernel_init=o["kernel_init"],
      out_kernel_init=o["out_kernel_init"],
      rope_base=None if cross else o["rope_base"],
      qk_norm=o["norm_kind"] if o["qk_norm"] else None,
      norm_eps=o["ln_eps"],
      window=None if cross else o["window"],
      attention_dropout=o["attention_dropout"],
      **self.precision(),
      rngs=self.rngs,
    )

  def precision(self) -> dict:
    return {"dtype": self.options["dtype"], "param_dtype": self.options["param_dtype"]}

  def residual(self):
    o = self.options
    return Residual(
      self.d_model,
      norm=o["norm"],
      norm_kind=o["norm_kind"],
      dropout=o["dropout"],
      epsilon=o["ln_eps"],
      **self.precision(),
      rngs=self.rngs,
    )

  def feed_forward(self):
    o = self.options
    return FeedForward(
      self.d_model,
      self.d_ff,
      activation=o["activation"],
      use_bias=o["use_bias"],
      kernel_init=o["kernel_init"],
      out_kernel_init=o["out_kernel_init"],
      **self.precision(),
      rngs=self.rngs,
    )


class _Block(nnx.Module):
  """What both blocks share: one constructor (sizes, then the sublayers' options) and the
  feed-forward sublayer. A subclass builds its own sublayers in `_build(make)`."""

  def __init__(
    self,
    d_model: int,
    num_heads: int,
    d_ff: int,
    *,
    num_kv_heads: int | None = None,
    dropout: float = 0.0,
    norm: str = "post",
    norm_kind: str = "layernorm",
    activation: str = "relu",
    ln_eps: float = 1e-6,
    use_bias: bool = True,
    rope_base: float | None = None,
    qk_norm: bool = False,
    window: int | None = None,
    attention_dropout: float = 0.0,
    attention_fn: Callable = attention,
    kernel_init=None,
    out_kernel_init=None,
    dtype=None,
    param_dtype=jnp.float32,
    rngs: nnx.Rngs,
  ):
    self._build(
      _Sublayers(
        d_model,
        num_heads,
        d_ff,
        rngs=rngs,
        num_kv_heads=num_kv_heads,
        dropout=dropout,
        norm=norm,
        norm_kind=norm_kind,
        activation=activation,
        ln_eps=ln_eps,
        use_bias=use_bias,
        rope_base=rope_base,
        qk_norm=qk_norm,
        window=window,
        attention_dropout=attention_dropout,
        attention_fn=attention_fn,
        kernel_init=kernel_init,
        out_kernel_init=out_kernel_init,
        dtype=dtype,
        param_dtype=param_dtype,
      )
    )

  def _build(self, make: _Sublayers) -> None:
    raise NotImplementedError

  def _feed_forward(self, x_BTD):
    """The feed-forward sublayer with its residual: x_BTD -> x_BTD."""
    h_BTD = self.feed_forward(self.feed_forward_residual.sublayer_input(x_BTD))
    return self.feed_forward_residual.add(x_BTD, h_BTD)


class EncoderBlock(_Block):
  """Self-attention then feed-forward: the encoder layer, and with is_causal=True the GPT layer.

  Args are those of the sublayers; `norm` is "post" (the paper) or "pre" (GPT-2),
  `norm_kind` "layernorm" or "rmsnorm", `dropout` the residual dropout after each
  sublayer, `ln_eps` the norms' epsilon, `use_bias` biases in every projection,
  `rope_base` rotary embeddings in self-attention (None: none), `qk_norm` a norm of
  `norm_kind` on every query and key head, `window` sliding-window self-attention (None:
  none; with is_causal the W positions up to t, else the band |t - s| < W),
  `attention_dropout` dropout on the attention probabilities (training mode only).
  `kernel_init` / `out_kernel_init` go to both sublayers (GPT-2 scales the output ones).
  `dtype` (compute) and `param_dtype` reach every projection and LayerNorm.
  """

  def _build(self, make: _Sublayers) -> None:
    self.attention = make.attention()
    self.attention_residual = make.residual()
    self.feed_forward = make.feed_forward()
    self.feed_forward_residual = make.residual()

  def __call__(self, x_BTD, *, mask=None, is_causal: bool = False, positions=None):
    """x_BTD -> x_BTD. mask: bool, broadcastable to [B, N, T, T]; is_causal: t sees <= t only;
    positions: int [T] or [B, T] for RoPE (default arange(T))."""
    h_BTD = self.attention(
      self.attention_residual.sublayer_input(x_BTD),
      mask=mask,
      is_causal=is_causal,
      positions=positions,
    )
    return self._feed_forward(self.attention_residual.add(x_BTD, h_BTD))

  def extend(self, x_BTD, cache: KVCache, *, mask=None, valid_BT=None, positions=None) -> tuple:
    """Decode T new positions after the cached ones (causal over the cache): (x_BTD, cache).

    valid_BT: bool, False for pad tokens, which no later query sees (default all real).
    positions: int [T] or [B, T] for RoPE (default the cache's length + arange(T))."""
    h_BTD, cache = self.attention.extend(
      self.attention_residual.sublayer_input(x_BTD),
      cache,
      mask=mask,
      valid_BT=valid_BT,
      positions=positions,
    )
    return self._feed_forward(self.attention_residual.add(x_BTD, h_BTD)), cache


class DecoderBlock(_Block):
  """Masked self-attention, cross-attention over the encoder memory, feed-forward.

  Args as in `EncoderBlock` (`window` for the self-attention only); kernel_init /
  out_kernel_init, dtype and param_dtype reach all three sublayers.
  """

  def _build(self, make: _Sublayers) -> None:
    self.self_attention = make.attention()
    self.self_attention_residual = make.residual()
    self.cross_attention = make.attention(cross=True)
    self.cross_attention_residual = make.residual()
    self.feed_forward = make.feed_forward()
    self.feed_forward_residual = make.residual()

  def _cross_and_feed_forward(self, x_BTD, memory_kv, cross_mask):
    k_BSKH, v_BSKH = memory_kv
    h_BTD = self.cross_attention.attend(
      self.cross_attention_residual.sublayer_input(x_BTD), k_BSKH, v_BSKH, mask=cross_mask
    )
    return self._feed_forward(self.cross_attention_residual.add(x_BTD, h_BTD))

  def __call__(self, x_BTD, memory_kv, *, self_mask=None, is_causal: bool = False, cross_mask=None):
    """One decoder layer, teacher-forced: x_BTD -> x_BTD.

    Args:
      x_BTD: decoder stream.
      memory_kv: (k_BSKH, v_BSKH) of the encoder memory, from
        `self.cross_attention.project_kv(memory_BSD)` (computed once when decoding).
      self_mask: bool, broadcastable to [B, N, T, T].
      is_causal: self-attention sees positions <= t only (ANDed with self_mask);
        the decoder's rule, without a mask array. Cross-attention is never causal.
      cross_mask: bool, broadcastable to [B, N, T, S], e.g. source padding.
    """
    h_BTD = self.self_attention(
      self.self_attention_residual.sublayer_input(x_BTD), mask=self_mask, is_causal=is_causal
    )
    x_BTD = self.self_attention_residual.add(x_BTD, h_BTD)
    return self._cross_and_feed_forward(x_BTD, memory_kv, cross_mask)

  def extend(self, x_BTD, cache: KVCache, memory_kv, *, cross_mask=None) -> tuple:
    """Decode T new target positions after the cached ones: (x_BTD, cache).

    Self-attention is causal over `cache`; memory_kv and cross_mask as in `__call__`.
    """
    h_BTD, cache = self.self_attention.extend(
      self.self_attention_residual.sublayer_input(x_BTD), cache
    )
    x_BTD = self.self_attention_residual.add(x_BTD, h_BTD)
    return self._cross_and_feed_forward(x_BTD, memory_kv, cross_mask), cache
