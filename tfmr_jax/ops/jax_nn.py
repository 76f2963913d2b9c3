"""jax.nn.dot_product_attention ("xla", "cudnn") under our mask semantics.

Dimension key: B batch, T query length, S key/value length, N query heads, K kv heads,
H head dim.

jax.nn returns the mean of all values on a query row whose keys are all masked, and
aligns its own `is_causal` top-left (s <= t); this adapter returns zeros there and
applies our bottom-right causal rule (s <= t + (S - T)).
"""

import jax
import jax.numpy as jnp

from tfmr_jax.ops.guards import as_rank4, check_is_causal
from tfmr_jax.ops.masks import causal_mask, combine_masks


def jax_nn_attention(
  q_BTNH,
  k_BSKH,
  v_BSKH,
  *,
  mask=None,
  bias=None,
  scale=None,
  is_causal: bool = False,
  implementation: str = "xla",
):
  """jax.nn.dot_product_attention with our fully-masked-row rule. Returns [B, T, N, H].

  jax.nn returns the mean of all values on a row whose keys are all masked; we
  select zeros there (a select, not a product, so a backend's NaN cannot leak), which
  also stops the gradient flowing through those rows.

  is_causal: our rule, query t sees key s <= t + (S - T). jax.nn's own `is_causal`
  aligns the diagonal top-left (s <= t), which is the same only for T == S; so it
  gets is_causal=True when T == S, and the mask `causal_mask(T, S)` when T < S.
  """
  B, T, N, _ = q_BTNH.shape
  S = k_BSKH.shape[1]
  check_is_causal(is_causal, T=T, S=S)
  rows_mask = mask  # what decides which rows see no key at all
  if is_causal:
    # The causal rule alone empties no row (S >= T); ANDed with a mask it may.
    rows_mask = None if mask is None else combine_masks(causal_mask(T, S), mask)
    if T != S:
      mask = combine_masks(causal_mask(T, S), mask)
  out_BTNH = jax.nn.dot_product_attention(
    q_BTNH,
    k_BSKH,
    v_BSKH,
    bias=as_rank4(bias),
    mask=as_rank4(mask),
    scale=scale,
    is_causal=is_causal and T == S,
    implementation=implementation,
  )
  if rows_mask is None:
    return out_BTNH
  seen_BNT = jnp.broadcast_to(jnp.any(as_rank4(rows_mask), axis=-1), (B, N, T))
  seen_BTN1 = seen_BNT.transpose(0, 2, 1)[..., None]
  return jnp.where(seen_BTN1, out_BTNH, 0.0).astype(out_BTNH.dtype)
