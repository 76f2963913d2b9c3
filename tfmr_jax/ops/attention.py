"""Scaled dot-product attention, the reference implementation.

Dimension key:
  B batch   T query length   S key/value length   N query heads   K kv heads
  G = N // K (query heads per kv head)   H head dim

    attention(q, k, v) = softmax(q k^T * scale + bias, masked) v,  scale = 1/sqrt(H)

Why the scale: with q and k of unit variance per channel, q.k is a sum of H terms
of unit variance, so its variance is H. Left unscaled, logits grow like sqrt(H),
softmax saturates onto one key and its gradient vanishes. Dividing by sqrt(H)
brings the variance back to 1 whatever the head size.

Mask semantics (written once, used everywhere): `mask` is bool, True = may
attend, broadcastable to [B, N, T, S]. Softmax runs in float32 whatever the
input dtype. A query row whose keys are all masked returns exactly zeros and
passes zero gradient. (`jax.nn.dot_product_attention` and Flax return the mean of
all values there, which leaks masked content.)

`is_causal=True` is the causal rule as structure rather than data: query t sees key
s <= t + (S - T) (bottom-right aligned, as `causal_mask(T, S)`), ANDed with `mask`.
It computes exactly what `mask=combine_masks(causal_mask(T, S), mask)` computes, but
an implementation that knows the structure statically (the tiled one) skips the
blocks above the diagonal and never builds a [T, S] mask.
"""

import jax
import jax.numpy as jnp

from tfmr_jax.ops.guards import check_bool_mask, check_broadcastable, check_floating, check_rank
from tfmr_jax.ops.masks import causal_mask, combine_masks

# Large, finite: exp(MASKED - max) underflows to exactly 0 in float32, and a row
# of nothing but MASKED stays finite (we zero it afterwards).
MASKED_LOGIT = -0.7 * float(jnp.finfo(jnp.float32).max)


def check_is_causal(is_causal, *, T: int, S: int) -> None:
  """Raise unless `is_causal` is a Python bool, and, when True, S >= T.

  A traced or array value is refused: the causal structure must be known while
  tracing (pass a traced rule as a `mask` instead).
  """
  if not isinstance(is_causal, bool):
    raise TypeError(
      f"is_causal must be a Python bool (static; use mask= for a rule known only at run time), "
      f"got {type(is_causal).__name__} {is_causal!r}"
    )
  if is_causal and S < T:
    raise ValueError(
      f"is_causal=True needs S >= T (queries are the last T of S keys), got T={T}, S={S}"
    )


def check_attention_args(
  q_BTNH, k_BSKH, v_BSKH, mask, bias, *, is_causal: bool = False
) -> tuple[int, int, int, int, int, int]:
  """Validate the shared arguments of every attention implementation.

  Returns (B, T, S, N, K, H). Raises ValueError/TypeError naming the argument.
  """
  check_rank("q_BTNH", q_BTNH, 4, "[B, T, N, H]")
  check_rank("k_BSKH", k_BSKH, 4, "[B, S, K, H]")
  check_rank("v_BSKH", v_BSKH, 4, "[B, S, K, H]")
  for name, x in (("q_BTNH", q_BTNH), ("k_BSKH", k_BSKH), ("v_BSKH", v_BSKH)):
    check_floating(name, x)
  if k_BSKH.shape != v_BSKH.shape:
    raise ValueError(
      f"k_BSKH and v_BSKH must have the same shape, got {k_BSKH.shape} and {v_BSKH.shape}"
    )
  B, T, N, H = q_BTNH.shape
  Bk, S, K, Hk = k_BSKH.shape
  if Bk != B or Hk != H:
    raise ValueError(
      f"q_BTNH {q_BTNH.shape} and k_BSKH {k_BSKH.shape} must agree on batch B and head dim H"
    )
  if N % K:
    raise ValueError(
      f"query heads N={N} must be a multiple of kv heads K={K} (q {q_BTNH.shape}, k {k_BSKH.shape})"
    )
  check_is_causal(is_causal, T=T, S=S)
  target = (B, N, T, S)
  if mask is not None:
    check_bool_mask("mask", mask, target)
  if bias is not None:
    check_floating("bias", bias)
    check_broadcastable("bias", jnp.shape(bias), target, "[B, N, T, S]")
  return B, T, S, N, K, H


def _probabilities_BKGTS(q_BTNH, k_BSKH, *, mask, bias, scale):
  """float32 attention probabilities, grouped as [B, K, G, T, S], masked entries exactly 0.

  Arguments must already have passed `check_attention_args`.
  """
  B, T, N, H = q_BTNH.shape
  K = k_BSKH.shape[2]
  G = N // K
  scale = H**-0.5 if scale is None else scale
  q_BTKGH = q_BTNH.reshape(B, T, K, G, H)
  logits_BKGTS = jnp.einsum(
    "BTKGH,BSKH->BKGTS", q_BTKGH, k_BSKH, preferred_element_type=jnp.float32
  ) * jnp.float32(scale)
  if bias is not None:
    logits_BKGTS = logits_BKGTS + _grouped(jnp.asarray(bias, jnp.float32), K, G)
  if mask is None:
    return jax.nn.softmax(logits_BKGTS, axis=-1)
  mask_BKGTS = _grouped(mask, K, G)
  logits_BKGTS = jnp.where(mask_BKGTS, logits_BKGTS, MASKED_LOGIT)
  probs_BKGTS = jax.nn.softmax(logits_BKGTS, axis=-1)
  # Zeroes fully masked rows (where softmax was uniform) and cuts their gradient.
  return jnp.where(mask_BKGTS, probs_BKGTS, 0.0)


def _grouped(x_BNTS, K: int, G: int):
  """Broadcastable [.., N, T, S] -> [.., K, G, T, S], query head n = k * G + g."""
  x = jnp.asarray(x_BNTS)
  x = x.reshape((1,) * (4 - x.ndim) + x.shape)
  b, n, t, s = x.shape
  if n == 1:
    return x[:, :, None]
  return x.reshape(b, K, G, t, s)


def attention(
  q_BTNH,
  k_BSKH,
  v_BSKH,
  *,
  mask=None,
  bias=None,
  scale=None,
  is_causal: bool = False,
  implementation=None,
):
  """softmax(q k^T * scale + bias) v with masking. Returns [B, T, N, H] in q's dtype.

  Args:
    q_BTNH: queries.
    k_BSKH, v_BSKH: keys and values; K = N is multi-head, 1 < K < N grouped-query,
      K = 1 multi-query attention.
    mask: bool, True = may attend, broadcastable to [B, N, T, S]. Fully masked
      query rows return zeros.
    bias: additive float logits bias (finite), broadcastable to [B, N, T, S].
    scale: logit scale, default 1/sqrt(H).
    is_causal: Python bool; True applies the causal rule, query t sees key
      s <= t + (S - T) (needs S >= T), ANDed with `mask`: the same result as
      `mask=combine_masks(causal_mask(T, S), mask)`, faster where the
      implementation uses the structure (the tiled one skips blocks above the diagonal).
    implementation: None (the fastest correct choice for this backend and shape),
      "reference" (the code below), "tiled" (online softmax, O(T) memory), "xla" or
      "cudnn" (jax.nn.dot_product_attention). Same semantics whichever runs; see
      tfmr_jax.ops.implementations.
  """
  B, T, S, N, K, H = check_attention_args(q_BTNH, k_BSKH, v_BSKH, mask, bias, is_causal=is_causal)
  # Imported here because implementations imports this module (for the shared checks).
  from tfmr_jax.ops import implementations

  implementation = implementations.resolve_implementation(implementation, q_BTNH, k_BSKH)
  if implementation != "reference":
    return implementations.run_implementation(
      implementation,
      q_BTNH,
      k_BSKH,
      v_BSKH,
      mask=mask,
      bias=bias,
      scale=scale,
      is_causal=is_causal,
    )
  if is_causal:
    mask = combine_masks(causal_mask(T, S), mask)
  probs_BKGTS = _probabilities_BKGTS(q_BTNH, k_BSKH, mask=mask, bias=bias, scale=scale)
  out_BTKGH = jnp.einsum(
    "BKGTS,BSKH->BTKGH",
    probs_BKGTS.astype(v_BSKH.dtype),
    v_BSKH,
    preferred_element_type=jnp.float32,
  )
  return out_BTKGH.reshape(B, T, N, H).astype(q_BTNH.dtype)


def attention_weights(q_BTNH, k_BSKH, *, mask=None, bias=None, scale=None, is_causal: bool = False):
  """Attention probabilities [B, N, T, S], float32.

  Each row sums to 1, or is all zeros where every key of that row is masked.
  Same arguments and semantics as `attention` (computed by the reference path).
  """
  B, T, S, N, _, _ = check_attention_args(q_BTNH, k_BSKH, k_BSKH, mask, bias, is_causal=is_causal)
  if is_causal:
    mask = combine_masks(causal_mask(T, S), mask)
  probs_BKGTS = _probabilities_BKGTS(q_BTNH, k_BSKH, mask=mask, bias=bias, scale=scale)
  return probs_BKGTS.reshape(B, N, T, S)
