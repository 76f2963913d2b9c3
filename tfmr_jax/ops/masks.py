"""Attention masks: bool, True = may attend, broadcastable to [B, N, T, S].

Dimension key: B batch, N heads, T query length, S key/value length.
Masks combine with logical AND. A mask is a value, never a large negative number:
the conversion to logits happens once, inside the attention op.
"""

import jax.numpy as jnp
import numpy as np

from tfmr_jax.ops.guards import check_positive, check_rank, check_window


def causal_mask(T: int, S: int | None = None) -> jnp.ndarray:
  """[1, 1, T, S] bool: query t may attend to key s <= t + (S - T).

  With S > T the queries are the last T positions of an S-long sequence (the
  layout of a KV cache after prefill), so the diagonal is aligned bottom-right.
  """
  S = T if S is None else S
  check_positive("T", T)
  check_positive("S", S)
  if S < T:
    raise ValueError(
      f"causal_mask needs S >= T (queries are the last T of S keys), got T={T}, S={S}"
    )
  t_T1 = jnp.arange(T)[:, None]
  s_1S = jnp.arange(S)[None, :]
  return (s_1S <= t_T1 + (S - T))[None, None]


def sliding_window_mask(
  T: int, S: int | None = None, *, window: int, causal: bool = True
) -> jnp.ndarray:
  """[1, 1, T, S] bool: the band of `window` keys around each query.

  Query t stands at key position p = t + (S - T) (bottom-right aligned, as in
  `causal_mask`). causal=True: it sees keys p - window < s <= p, the last `window`
  keys up to itself (needs S >= T). causal=False: a symmetric band, |p - s| < window.
  A window of at least S (causal) or max(T, S) (not causal) masks nothing.
  """
  S = T if S is None else S
  check_positive("T", T)
  check_positive("S", S)
  check_window(window)
  if window is None:
    raise ValueError("sliding_window_mask needs a window (a positive int), got None")
  if causal and S < T:
    raise ValueError(
      f"sliding_window_mask(causal=True) needs S >= T (queries are the last T of S keys), "
      f"got T={T}, S={S}"
    )
  window = min(int(window), max(T, S))  # wider masks nothing more (and stays in int32)
  p_T1 = jnp.arange(T)[:, None] + (S - T)
  s_1S = jnp.arange(S)[None, :]
  if causal:
    band_TS = (s_1S <= p_T1) & (s_1S > p_T1 - window)
  else:
    band_TS = jnp.abs(p_T1 - s_1S) < window
  return band_TS[None, None]


def rule_mask(T: int, S: int, *, is_causal: bool, window: int | None) -> jnp.ndarray | None:
  """[1, 1, T, S] bool mask of the structural rules (causal, window), or None if neither.

  What `is_causal=True` and `window=` mean, as an explicit mask: `causal_mask(T, S)`,
  `sliding_window_mask(T, S, window=window, causal=is_causal)`, or None.
  """
  if window is not None:
    return sliding_window_mask(T, S, window=window, causal=is_causal)
  return causal_mask(T, S) if is_causal else None


def padding_mask(lengths_or_valid, S: int | None = None) -> jnp.ndarray:
  """[B, 1, 1, S] bool key-padding mask.

  Args:
    lengths_or_valid: either `lengths_B`, ints, the number of real tokens at the
      front of each sequence (then `S` is required), or `valid_BS`, bool, True
      where a token is real.
    S: key length, when lengths are given.
  """
  x = jnp.asarray(lengths_or_valid)
  if x.dtype == jnp.bool_:
    check_rank("valid_BS", x, 2, "[B, S]")
    if S is not None and x.shape[1] != S:
      raise ValueError(f"valid_BS has length {x.shape[1]} but S={S}")
    return x[:, None, None, :]
  if not jnp.issubdtype(x.dtype, jnp.integer):
    raise TypeError(f"padding_mask takes int lengths_B or bool valid_BS, got dtype {x.dtype}")
  check_rank("lengths_B", x, 1, "[B]")
  if S is None:
    raise ValueError("padding_mask(lengths_B, S): S (the padded length) is required with lengths")
  check_positive("S", S)
  if isinstance(lengths_or_valid, np.ndarray | list | tuple):
    bad = np.asarray(lengths_or_valid)
    if (bad < 0).any() or (bad > S).any():
      raise ValueError(f"lengths_B must lie in [0, S={S}], got {bad.tolist()}")
  return (jnp.arange(S)[None, :] < x[:, None])[:, None, None, :]


def combine_masks(*masks) -> jnp.ndarray | None:
  """Logical AND of bool masks, broadcasting; None entries are skipped.

  Returns None when every mask is None, so "no mask" stays cheap.
  """
  present = [m for m in masks if m is not None]
  for i, m in enumerate(present):
    if jnp.result_type(m) != jnp.bool_:
      raise TypeError(f"combine_masks: mask {i} must be bool, got dtype {jnp.result_type(m)}")
  if not present:
    return None
  out = present[0]
  for m in present[1:]:
    out = jnp.logical_and(out, m)
  return out
