"""One attention head with its own projections: softmax(q k^T / sqrt(d_k)) v.

Dimension key: B batch, T query length, S key/value length, D model dim, H head dim.

The teaching module beside `MultiHeadAttention` (tfmr_jax/nn/attention.py, whose module
docstring states the `attention_fn` protocol and how attention maps are sown): d_v may
differ from d_k, there is no output projection, and the math goes through the same
`attention_fn` when the two widths agree. Its kernels [D, d_k] and [D, d_v] have the
logical axes (embed, head_dim).
"""

from collections.abc import Callable

import jax.numpy as jnp
from flax import nnx

from tfmr_jax.nn.capture import sow_attention_weights
from tfmr_jax.nn.partitioning import EMBED, HEAD_DIM, param_axes
from tfmr_jax.ops import attention, attention_weights
from tfmr_jax.ops.guards import check_positive, check_rank


class SingleHeadAttention(nnx.Module):
  """One head: softmax(q k^T / sqrt(d_k)) v, no output projection.

  Self-attention when `context_BSD` is None, cross-attention otherwise (S may
  differ from T). Returns [B, T, d_v].
  """

  def __init__(
    self,
    d_model: int,
    d_k: int,
    *,
    d_v: int | None = None,
    use_bias: bool = False,
    attention_fn: Callable = attention,
    sow_attention: bool = False,
    dtype=None,
    param_dtype=jnp.float32,
    rngs: nnx.Rngs,
  ):
    d_v = d_k if d_v is None else d_v
    for name, value in (("d_model", d_model), ("d_k", d_k), ("d_v", d_v)):
      check_positive(name, value)
    self.d_k, self.d_v = d_k, d_v
    self.attention_fn, self.sow_attention = attention_fn, sow_attention
    precision = dict(
      dtype=dtype,
      param_dtype=param_dtype,
      kernel_metadata=param_axes(EMBED, HEAD_DIM),
      bias_metadata=param_axes(HEAD_DIM),
    )
    self.query = nnx.Linear(d_model, d_k, use_bias=use_bias, rngs=rngs, **precision)
    self.key = nnx.Linear(d_model, d_k, use_bias=use_bias, rngs=rngs, **precision)
    self.value = nnx.Linear(d_model, d_v, use_bias=use_bias, rngs=rngs, **precision)

  def __call__(
    self,
    x_BTD,
    context_BSD=None,
    *,
    mask=None,
    is_causal: bool = False,
  ):
    """x_BTD: queries' input; context_BSD: keys' and values' input (default x_BTD).

    mask: bool, True = may attend, broadcastable to [B, 1, T, S].
    is_causal: query t sees key s <= t + (S - T) only, ANDed with `mask`.
    """
    check_rank("x_BTD", x_BTD, 3, "[B, T, D]")
    context_BSD = x_BTD if context_BSD is None else context_BSD
    check_rank("context_BSD", context_BSD, 3, "[B, S, D]")
    q_BT1H = self.query(x_BTD)[:, :, None, :]
    k_BS1H = self.key(context_BSD)[:, :, None, :]
    v_BS1H = self.value(context_BSD)[:, :, None, :]
    probs_B1TS = None
    if self.d_v == self.d_k:
      out_BT1H = self.attention_fn(
        q_BT1H, k_BS1H, v_BS1H, mask=mask, bias=None, is_causal=is_causal
      )
    else:
      # attention ops take one head dim for k and v; with d_v != d_k weight the values here.
      probs_B1TS = attention_weights(q_BT1H, k_BS1H, mask=mask, is_causal=is_causal)
      out_BT1H = jnp.einsum("BNTS,BSNH->BTNH", probs_B1TS.astype(v_BS1H.dtype), v_BS1H)
    if self.sow_attention:
      if probs_B1TS is None:
        probs_B1TS = attention_weights(q_BT1H, k_BS1H, mask=mask, is_causal=is_causal)
      sow_attention_weights(self, probs_B1TS)
    return out_BT1H[:, :, 0, :]
