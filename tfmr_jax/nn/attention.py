"""Attention modules: they own the projections and call an `attention_fn` for the math.

Dimension key:
  B batch   T query length   S key/value length   N query heads   K kv heads   H head dim
  D model dim

The math goes through one protocol, so a faster op drops in without touching a module:

    attention_fn(q_BTNH, k_BSKH, v_BSKH, *, mask, bias, is_causal) -> out_BTNH

with `tj.attention`'s semantics: `mask` bool (True = may attend) or None, `bias` float
or None, both broadcastable to [B, N, T, S]; `is_causal` a Python bool, True meaning
query t sees key s <= t + (S - T), ANDed with `mask`. Modules and models pass it
through: causal self-attention says `is_causal=True` instead of building a causal
mask, so an op that knows the structure (the tiled one) skips the masked half.
`MultiHeadAttention` adds `tj.attention`'s `window=` (sliding-window self-attention)
and `dropout_rate=`, `dropout_rng=` (attention dropout) only when it uses them, so an
`attention_fn` that has neither serves every module that uses neither.

Attention dropout follows NNX's train/eval switch: its rate and rng stream ('dropout')
sit in an `nnx.Dropout` of the module, whose `deterministic` flag `model.eval()` sets;
the module draws a key from that stream for each training call and hands it to the op.

Every `__call__` returns one array. Attention maps leave through NNX's own mechanism:
a module whose `sow_attention` is True sows its weights [B, N, T, S] (float32) as
`nnx.Intermediate` "attention_weights"; `tfmr_jax.nn.capture_attention` switches that on
in a copy of a model and collects them. They are computed by `tj.attention_weights` (the
reference op) from the same queries, keys, mask and is_causal, so they are the same
whatever `attention_fn` runs the forward pass, and cost nothing when nobody asks.
KV-cache decoding is its own method, `MultiHeadAttention.extend -> (out_BTD, cache)`.

Rotary position embedding (`rope_base`) and QK-norm (`qk_norm`) act on the projected
heads, in one place each (`_queries`, `project_kv`): QK-norm first, then RoPE at int
`positions` ([T] or [B, T]). Self-attention rotates by arange(T) unless given
positions; `extend` by the cache's length + arange(T), so a cached key keeps the
rotation of the position it was written at.

Logical axes (`tfmr_jax.nn.partitioning`): the query kernel [D, N*H] is (embed, heads),
key and value [D, K*H] (embed, kv_heads), the output [N*H, D] (heads, embed), biases
their output axis, QK-norm scales (norm,); the head shapes, projections and the head
split live in `tfmr_jax.nn.attention_heads`.
"""

from collections.abc import Callable

import jax.numpy as jnp
from flax import nnx

from tfmr_jax.nn.attention_heads import head_projection, head_shape, rope_positions, split_heads
from tfmr_jax.nn.capture import sow_attention_weights
from tfmr_jax.nn.dropout import check_dropout, make_dropout
from tfmr_jax.nn.kv_cache import KVCache
from tfmr_jax.nn.norms import make_norm
from tfmr_jax.nn.partitioning import EMBED, HEADS, KV_HEADS
from tfmr_jax.ops import apply_rope, attention, attention_weights, combine_masks
from tfmr_jax.ops.guards import check_floating, check_positive, check_rank

_default_init = nnx.initializers.lecun_normal()


class MultiHeadAttention(nnx.Module):
  """Multi-head attention with grouped-query (1 < K < N) and multi-query (K = 1) variants.

  Projects to N query heads and K key/value heads of size H, calls
  `attention_fn(q_BTNH, k_BSKH, v_BSKH, mask=, bias=, is_causal=)`, concatenates the
  heads and applies the output projection.

  Args:
    d_model: input and output width D.
    num_heads: query heads N.
    num_kv_heads: key/value heads K (default N); must divide N.
    head_dim: H (default D // N; then N must divide D).
    use_bias: biases on all four projections.
    dropout: dropout rate on the output (after the output projection). The
      Transformer's residual dropout lives in `Residual`; models leave this 0.
    attention_fn: the attention op, e.g. `tj.attention` or a faster drop-in.
    sow_attention: sow the attention weights (see the module docstring); normally
      switched on by `capture_attention` in a copy, not here.
    kernel_init: initializer of the q, k, v kernels; out_kernel_init of the output kernel.
    rope_base: None, or rotary position embedding of q and k with this base (needs an
      even H); for self-attention (and `attend` / `project_kv` when given positions).
    window: None, or W: sliding-window self-attention (`__call__` without a context,
      and `extend`): a causal query sees itself and the W - 1 keys before it, a
      non-causal one the band |t - s| < W. Cross-attention is never windowed.
    attention_dropout: dropout rate on the attention probabilities, in training mode
      only (`model.eval()` turns it off); the op must have dropout ("reference",
      "tiled" or None).
    qk_norm: None, or "layernorm" / "rmsnorm" over H of every query and key head
      (one scale shared by the heads), before RoPE; norm_eps its epsilon.
    dtype: compute dtype of the projections, so of q, k, v and the output (None:
      promoted from input and parameters); the attention op keeps its softmax in
      float32. param_dtype: of the kernels and biases.
  """

  def __init__(
    self,
    d_model: int,
    num_heads: int,
    *,
    num_kv_heads: int | None = None,
    head_dim: int | None = None,
    use_bias: bool = True,
    dropout: float = 0.0,
    attention_fn: Callable = attention,
    sow_attention: bool = False,
    kernel_init=None,
    out_kernel_init=None,
    rope_base: float | None = None,
    qk_norm: str | None = None,
    norm_eps: float = 1e-6,
    window: int | None = None,
    attention_dropout: float = 0.0,
    dtype=None,
    param_dtype=jnp.float32,
    rngs: nnx.Rngs,
  ):
    num_kv_heads, head_dim = head_shape(
      d_model, num_heads, num_kv_heads, head_dim, rope=rope_base is not None
    )
    if window is not None:
      check_positive("window", window)
    check_dropout("dropout", dropout)
    self.d_model, self.num_heads, self.num_kv_heads, self.head_dim = (
      d_model,
      num_heads,
      num_kv_heads,
      head_dim,
    )
    self.attention_fn, self.sow_attention = attention_fn, sow_attention
    self.dtype = dtype
    kernel_init = _default_init if kernel_init is None else kernel_init
    out_kernel_init = kernel_init if out_kernel_init is None else out_kernel_init
    N, K, H = num_heads, num_kv_heads, head_dim

    def linear(d_in, d_out, init, axes):
      return head_projection(
        d_in,
        d_out,
        axes=axes,
        use_bias=use_bias,
        init=init,
        dtype=dtype,
        param_dtype=param_dtype,
        rngs=rngs,
      )

    self.query = linear(d_model, N * H, kernel_init, (EMBED, HEADS))
    self.key = linear(d_model, K * H, kernel_init, (EMBED, KV_HEADS))
    self.value = linear(d_model, K * H, kernel_init, (EMBED, KV_HEADS))
    self.out = linear(N * H, d_model, out_kernel_init, (HEADS, EMBED))
    self.dropout = make_dropout(dropout, rngs)
    self.attention_dropout = make_dropout(attention_dropout, rngs, name="attention_dropout")
    self.rope_base, self.window = rope_base, window
    norm = dict(epsilon=norm_eps, dtype=dtype, param_dtype=param_dtype, rngs=rngs)
    self.query_norm = None if qk_norm is None else make_norm(qk_norm, H, **norm)
    self.key_norm = None if qk_norm is None else make_norm(qk_norm, H, **norm)

  def _check_input(self, name: str, x_BTD) -> None:
    check_rank(name, x_BTD, 3, "[B, T, D]")
    check_floating(name, x_BTD)
    if x_BTD.shape[-1] != self.d_model:
      raise ValueError(f"{name} has width {x_BTD.shape[-1]}, expected d_model={self.d_model}")

  def _rotated(self, x_BTNH, positions):
    """x_BTNH rotated by RoPE at positions ([T] or [B, T]); as it is without RoPE or
    without positions (cross-attention)."""
    if self.rope_base is None or positions is None:
      return x_BTNH
    return apply_rope(x_BTNH, positions, base=self.rope_base)

  def _queries(self, x_BTD, positions):
    """q_BTNH of x_BTD: projected, QK-normed, rotated."""
    q_BTNH = split_heads(self.query, x_BTD, self.num_heads, self.head_dim)
    if self.query_norm is not None:
      q_BTNH = self.query_norm(q_BTNH)
    return self._rotated(q_BTNH, positions)

  def project_kv(self, context_BSD, *, positions=None):
    """Keys and values of `context_BSD`: (k_BSKH, v_BSKH). Cross-attention computes them once.

    positions: int [S] or [B, S]; with RoPE the keys are rotated by them (None: not rotated).
    """
    self._check_input("context_BSD", context_BSD)
    k_BSKH = split_heads(self.key, context_BSD, self.num_kv_heads, self.head_dim)
    if self.key_norm is not None:
      k_BSKH = self.key_norm(k_BSKH)
    v_BSKH = split_heads(self.value, context_BSD, self.num_kv_heads, self.head_dim)
    return self._rotated(k_BSKH, positions), v_BSKH

  def _dropout_options(self) -> dict:
    """{} in eval mode or at rate 0; else the op's dropout_rate and a fresh dropout_rng."""
    dropout = self.attention_dropout
    if dropout.rate == 0.0 or dropout.deterministic:
      return {}
    return {"dropout_rate": dropout.rate, "dropout_rng": dropout.rngs()}

  def attend(
    self,
    x_BTD,
    k_BSKH,
    v_BSKH,
    *,
    mask=None,
    bias=None,
    is_causal: bool = False,
    window: int | None = None,
    positions=None,
  ):
    """Queries from `x_BTD` against given keys and values. Returns out_BTD.

    is_causal: query t sees key s <= t + (S - T) only, ANDed with `mask`.
    window: None, or W: only the W keys up to t + (S - T) (causal), or the band
      |t + (S - T) - s| < W; ANDed with `mask`.
    positions: int [T] or [B, T]; with RoPE the queries are rotated by them (None: not).
    The sown attention weights are those before attention dropout.
    """
    self._check_input("x_BTD", x_BTD)
    B, T, _ = x_BTD.shape
    q_BTNH = self._queries(x_BTD, positions)
    rules = dict(mask=mask, bias=bias, is_causal=is_causal)
    if window is not None:
      rules["window"] = window
    out_BTNH = self.attention_fn(q_BTNH, k_BSKH, v_BSKH, **rules, **self._dropout_options())
    if self.sow_attention:
      sow_attention_weights(self, attention_weights(q_BTNH, k_BSKH, **rules))
    return self.dropout(self.out(out_BTNH.reshape(B, T, self.num_heads * self.head_dim)))

  def __call__(
    self,
    x_BTD,
    context_BSD=None,
    *,
    mask=None,
    bias=None,
    is_causal: bool = False,
    positions=None,
  ):
    """Self-attention (context_BSD None) or cross-attention over context_BSD. Returns out_BTD.

    Args:
      x_BTD: input of the queries.
      context_BSD: input of the keys and values; S may differ from T.
      mask: bool, True = may attend, broadcastable to [B, N, T, S].
      bias: additive logits bias, broadcastable to [B, N, T, S].
      is_causal: query t sees key s <= t + (S - T) only, ANDed with `mask`; causal
        self-attention without building a mask. Self-attention keeps to the module's
        `window` too.
      positions: int [T] or [B, T], where RoPE rotates queries and keys in
        self-attention (default arange(T)); cross-attention is not rotated.
    """
    if context_BSD is not None:
      k_BSKH, v_BSKH = self.project_kv(context_BSD)
      return self.attend(x_BTD, k_BSKH, v_BSKH, mask=mask, bias=bias, is_causal=is_causal)
    self._check_input("x_BTD", x_BTD)
    positions = rope_positions(x_BTD.shape[1], positions)
    k_BTKH, v_BTKH = self.project_kv(x_BTD, positions=positions)
    return self.attend(
      x_BTD,
      k_BTKH,
      v_BTKH,
      mask=mask,
      bias=bias,
      is_causal=is_causal,
      window=self.window,
      positions=positions,
    )

  def extend(
    self, x_BTD, cache: KVCache, *, mask=None, bias=None, valid_BT=None, positions=None
  ) -> tuple:
    """Self-attention decoding: append the T new positions to `cache`, attend causally over it.

    Position t of x_BTD sees the cached positions and the new ones up to itself
    (the cache's own causal mask over its filled slots; with the module's `window` W,
    only the W slots up to its own), except pad tokens:
    `valid_BT` (bool, default all True) marks the real ones, and slots appended as
    padding are never seen. `mask` and `bias`, broadcastable to [B, N, T, cache
    length], are ANDed / added on. With RoPE the new queries and keys are rotated by
    `positions` (int [T] or [B, T]; default the cache's length + arange(T)).
    Returns (out_BTD, the new cache).
    """
    self._check_input("x_BTD", x_BTD)
    positions = rope_positions(x_BTD.shape[1], positions, offset=cache.length)
    k_BTKH, v_BTKH = self.project_kv(x_BTD, positions=positions)
    cache = cache.append(k_BTKH, v_BTKH, valid_BT)
    causal_mask = cache.causal_mask(x_BTD.shape[1], window=self.window)
    mask = combine_masks(causal_mask, cache.key_mask(), mask)
    out_BTD = self.attend(
      x_BTD, cache.k_BSKH, cache.v_BSKH, mask=mask, bias=bias, positions=positions
    )
    return out_BTD, cache

  def init_cache(self, batch_size: int, max_len: int, *, dtype=None) -> KVCache:
    """An empty self-attention cache for `max_len` positions, in `dtype` (None: the
    module's compute dtype, float32 if it has none)."""
    if dtype is None:
      dtype = jnp.float32 if self.dtype is None else self.dtype
    return KVCache.zeros(batch_size, max_len, self.num_kv_heads, self.head_dim, dtype=dtype)
