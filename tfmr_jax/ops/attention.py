"""Scaled dot-product attention, the public entry points: `attention`, `attention_weights`.

Dimension key:
  B batch   T query length   S key/value length   N query heads   K kv heads
  G = N // K (query heads per kv head)   H head dim

    attention(q, k, v) = softmax(q k^T * scale + bias, masked) v,  scale = 1/sqrt(H)

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

`dropout_rate=p` (with `dropout_rng`, a jax random key) is inverted dropout on the
normalized probabilities: each kept with probability 1 - p and scaled by 1 / (1 - p).
Its keep-mask is a pure function of the key and the tiled kernel's block grid
(tfmr_jax.ops.dropout), so "reference" and "tiled" drop the same entries; "xla" and
"cudnn" have no dropout and refuse it.

`window=W` is sliding-window (local) attention, also structure: with is_causal, query
t sees the W keys s in (t + (S - T) - W, t + (S - T)]; without, the symmetric band
|t + (S - T) - s| < W. The same as `mask=combine_masks(sliding_window_mask(T, S,
window=W, causal=is_causal), mask)`; the tiled implementation visits only the blocks
that meet the band, so its cost grows as T * W, not T * S.

Each call checks its arguments (guards), picks an implementation (implementations)
and runs it; with `debug_checks` on it also adds value checks (debug).
"""

from tfmr_jax.ops.debug import check_finite, check_rows_see_a_key, debug_enabled
from tfmr_jax.ops.guards import as_array, check_attention_args, check_dropout
from tfmr_jax.ops.implementations import resolve_implementation, run_implementation
from tfmr_jax.ops.masks import combine_masks, rule_mask
from tfmr_jax.ops.reference import probabilities_BKGTS


def attention(
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
    window: None, or a positive Python int: sliding-window attention. With is_causal,
      query t sees the `window` keys p - window < s <= p, p = t + (S - T) (itself and
      the window - 1 before it); without, the band |p - s| < window. ANDed with
      `mask`; the same result as `mask=combine_masks(sliding_window_mask(T, S,
      window=window, causal=is_causal), mask)`. The tiled implementation skips every
      block outside the band. A window of at least S (causal) or max(T, S) masks nothing.
    dropout_rate: a number in [0, 1): inverted dropout on the probabilities (each kept
      with probability 1 - rate, scaled by 1 / (1 - rate)). 0 is no dropout, exactly.
      Masked entries stay 0; fully masked rows still return zeros.
    dropout_rng: a jax random key (jax.random.key(seed)), required when
      dropout_rate > 0. The keep-mask is drawn per block of the tiled kernel's grid
      from this key (tfmr_jax.ops.dropout), so "reference" and "tiled" drop the same
      entries for the same key; the tiled kernel never stores it.
    implementation: None (the fastest correct choice for this backend and shape),
      "reference" (einsum + softmax), "tiled" (online softmax, O(T) memory), "xla" or
      "cudnn" (jax.nn.dot_product_attention). Same semantics whichever runs; see
      tfmr_jax.ops.implementations. With dropout only "reference" and "tiled" run
      (jax.nn has no attention dropout; None picks one of the two).
  """
  mask, bias = as_array(mask), as_array(bias)
  check_attention_args(
    q_BTNH, k_BSKH, v_BSKH, mask, bias, scale=scale, is_causal=is_causal, window=window
  )
  check_dropout(dropout_rate, dropout_rng)
  dropout_rate = float(dropout_rate)
  implementation = resolve_implementation(implementation, q_BTNH, k_BSKH, dropout=dropout_rate > 0)
  if debug_enabled():
    _check_values(
      "attention",
      q_BTNH,
      k_BSKH,
      v_BSKH,
      mask=mask,
      bias=bias,
      is_causal=is_causal,
      window=window,
    )
  out_BTNH = run_implementation(
    implementation,
    q_BTNH,
    k_BSKH,
    v_BSKH,
    mask=mask,
    bias=bias,
    scale=scale,
    is_causal=is_causal,
    window=window,
    dropout_rate=dropout_rate,
    dropout_rng=dropout_rng,
  )
  check_finite("attention: the output", out_BTNH)
  return out_BTNH


def attention_weights(
  q_BTNH,
  k_BSKH,
  *,
  mask=None,
  bias=None,
  scale=None,
  is_causal: bool = False,
  window: int | None = None,
):
  """Attention probabilities [B, N, T, S], float32.

  Each row sums to 1, or is all zeros where every key of that row is masked.
  Same arguments and semantics as `attention` (computed by the reference path); the
  probabilities before any dropout.
  """
  mask, bias = as_array(mask), as_array(bias)
  B, T, S, N, _, _ = check_attention_args(
    q_BTNH, k_BSKH, k_BSKH, mask, bias, scale=scale, is_causal=is_causal, window=window
  )
  if debug_enabled():
    _check_values(
      "attention_weights", q_BTNH, k_BSKH, mask=mask, bias=bias, is_causal=is_causal, window=window
    )
  probs_BKGTS = probabilities_BKGTS(
    q_BTNH, k_BSKH, mask=mask, bias=bias, scale=scale, is_causal=is_causal, window=window
  )
  probs_BNTS = probs_BKGTS.reshape(B, N, T, S)
  check_finite("attention_weights: the output", probs_BNTS)
  return probs_BNTS


def _check_values(
  op: str, q_BTNH, k_BSKH, v_BSKH=None, *, mask, bias, is_causal: bool, window=None
) -> None:
  """The value checks `debug_checks` turns on: finite inputs, no forbidden empty row.

  The causal rule alone empties no row (S >= T); a window alone may (T > S), and
  either ANDed with `mask` may.
  """
  named = {"q_BTNH": q_BTNH, "k_BSKH": k_BSKH, "v_BSKH": v_BSKH, "bias": bias}
  for name, x in named.items():
    if x is not None:
      check_finite(f"{op}: {name}", x)
  if window is not None or (is_causal and mask is not None):
    T, S = q_BTNH.shape[1], k_BSKH.shape[1]
    mask = combine_masks(rule_mask(T, S, is_causal=is_causal, window=window), mask)
  check_rows_see_a_key(op, mask)
