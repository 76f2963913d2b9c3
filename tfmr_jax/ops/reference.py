"""The reference attention: einsum, softmax over [B, N, T, S] float32 logits, einsum.

Dimension key:
  B batch   T query length   S key/value length   N query heads   K kv heads
  G = N // K (query heads per kv head)   H head dim

    attention(q, k, v) = softmax(q k^T * scale + bias, masked) v,  scale = 1/sqrt(H)

Why the scale: with q and k of unit variance per channel, q.k is a sum of H terms
of unit variance, so its variance is H. Left unscaled, logits grow like sqrt(H),
softmax saturates onto one key and its gradient vanishes. Dividing by sqrt(H)
brings the variance back to 1 whatever the head size.

Masked logits become MASKED_LOGIT (finite) before the softmax, and masked
probabilities exactly 0 after it, so a row whose keys are all masked returns zeros
and passes zero gradient. Arguments must already have passed `check_attention_args`
(the public `tfmr_jax.ops.attention` checks them).
"""

import jax
import jax.numpy as jnp

from tfmr_jax.ops.dropout import apply_dropout, keep_mask
from tfmr_jax.ops.guards import MASKED_LOGIT, grouped
from tfmr_jax.ops.masks import combine_masks, rule_mask


def probabilities_BKGTS(
  q_BTNH, k_BSKH, *, mask, bias, scale, is_causal: bool = False, window: int | None = None
):
  """float32 attention probabilities, grouped as [B, K, G, T, S], masked entries exactly 0.

  is_causal and window apply as their explicit mask, `rule_mask(T, S, ...)`.
  """
  B, T, N, H = q_BTNH.shape
  S, K = k_BSKH.shape[1:3]
  G = N // K
  mask = combine_masks(rule_mask(T, S, is_causal=is_causal, window=window), mask)
  scale = H**-0.5 if scale is None else scale
  q_BTKGH = q_BTNH.reshape(B, T, K, G, H)
  logits_BKGTS = jnp.einsum(
    "BTKGH,BSKH->BKGTS", q_BTKGH, k_BSKH, preferred_element_type=jnp.float32
  ) * jnp.float32(scale)
  if bias is not None:
    logits_BKGTS = logits_BKGTS + grouped(jnp.asarray(bias, jnp.float32), K, G)
  if mask is None:
    return jax.nn.softmax(logits_BKGTS, axis=-1)
  mask_BKGTS = grouped(mask, K, G)
  logits_BKGTS = jnp.where(mask_BKGTS, logits_BKGTS, MASKED_LOGIT)
  probs_BKGTS = jax.nn.softmax(logits_BKGTS, axis=-1)
  # Zeroes fully masked rows (where softmax was uniform) and cuts their gradient.
  return jnp.where(mask_BKGTS, probs_BKGTS, 0.0)


def reference_attention(
  q_BTNH,
  k_BSKH,
  v_BSKH,
  *,
  mask=None,
  bias=None,
  scale=None,
  is_causal: bool = False,
  window: int | None = None,
  dropout_rate: float = 0.0,
  dropout_rng=None,
  dropout_blocks: tuple[int, int] | None = None,
):
  """softmax(q k^T * scale + bias) v with masking. Returns [B, T, N, H] in q's dtype.

  With dropout_rate > 0 the probabilities are dropped by the keep-mask
  `tfmr_jax.ops.dropout.keep_mask(dropout_rng, ..., blocks=dropout_blocks)` (required
  then: the tiled kernel's block grid, so that both drop the same entries).
  """
  B, T, N, H = q_BTNH.shape
  S, K = k_BSKH.shape[1:3]
  probs_BKGTS = probabilities_BKGTS(
    q_BTNH, k_BSKH, mask=mask, bias=bias, scale=scale, is_causal=is_causal, window=window
  )
  if dropout_rate > 0:
    keep_BNTS = keep_mask(dropout_rng, B=B, N=N, T=T, S=S, rate=dropout_rate, blocks=dropout_blocks)
    probs_BKGTS = apply_dropout(probs_BKGTS, grouped(keep_BNTS, K, N // K), dropout_rate)
  out_BTKGH = jnp.einsum(
    "BKGTS,BSKH->BTKGH",
    probs_BKGTS.astype(v_BSKH.dtype),
    v_BSKH,
    preferred_element_type=jnp.float32,
  )
  return out_BTKGH.reshape(B, T, N, H).astype(q_BTNH.dtype)
