"""jax.nn.dot_product_attention ("xla", "cudnn") under our mask semantics.

Dimension key: B batch, T query length, S key/value length, N query heads, K kv heads,
H head dim.

jax.nn returns the mean of all values on a query row whose keys are all masked, and
aligns its own `is_causal` and `local_window_size` top-left (s <= t); this adapter
returns zeros there and applies our bottom-right rules (s <= t + (S - T)).
"""

import jax
import jax.numpy as jnp

from tfmr_jax.ops.guards import as_rank4, check_is_causal, check_window
from tfmr_jax.ops.masks import combine_masks, rule_mask


def jax_nn_attention(
  q_BTNH,
  k_BSKH,
  v_BSKH,
  *,
  mask=None,
  bias=None,
  scale=None,
  is_causal: bool = False,
  window: int | None = None,
  implementation: str = "xla",
):
  """jax.nn.dot_product_attention with our fully-masked-row rule. Returns [B, T, N, H].

  jax.nn returns the mean of all values on a row whose keys are all masked; we
  select zeros there (a select, not a product, so a backend's NaN cannot leak), which
  also stops the gradient flowing through those rows.

  is_causal, window: our rules, query t at position p = t + (S - T) sees keys
  s <= p (causal), p - window < s <= p (causal window) or |p - s| < window (window
  alone). jax.nn aligns its own `is_causal` and `local_window_size` top-left (p = t),
  the same only for T == S; so they go to jax.nn when T == S and the rule is causal
  (`local_window_size=(window - 1, 0)`, which cuDNN takes too; it refuses a right
  window), and as the explicit mask `rule_mask(T, S, ...)` otherwise.
  """
  B, T, N, _ = q_BTNH.shape
  S = k_BSKH.shape[1]
  check_is_causal(is_causal, T=T, S=S)
  check_window(window)
  rule = rule_mask(T, S, is_causal=is_causal, window=window)
  # What decides which rows see no key at all. The causal rule alone empties no row
  # (S >= T); a window alone may (T > S), and either ANDed with a mask may.
  rows_mask = mask
  if window is not None or (is_causal and mask is not None):
    rows_mask = combine_masks(rule, mask)
  native = is_causal and T == S  # jax.nn's own rule is ours here
  if rule is not None and not native:
    mask = combine_masks(rule, mask)
  out_BTNH = jax.nn.dot_product_attention(
    q_BTNH,
    k_BSKH,
    v_BSKH,
    bias=as_rank4(bias),
    mask=as_rank4(mask),
    scale=scale,
    is_causal=native,
    local_window_size=None if window is None or not native else (min(window, S) - 1, 0),
    implementation=implementation,
  )
  if rows_mask is None:
    return out_BTNH
  seen_BNT = jnp.broadcast_to(jnp.any(as_rank4(rows_mask), axis=-1), (B, N, T))
  seen_BTN1 = seen_BNT.transpose(0, 2, 1)[..., None]
  return jnp.where(seen_BTN1, out_BTNH, 0.0).astype(out_BTNH.dtype)
