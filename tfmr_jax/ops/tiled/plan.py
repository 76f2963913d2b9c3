"""The static plan of a tiled attention problem, block kinds, and the loops over blocks.

Dimension key: T query length, S key/value length, Q query-block length, C key-block
length, I number of query blocks, J number of key blocks; b, t, s axes that may be 1.

A plan cuts [T, S] into I x J blocks of Q x C. Each block has a kind: never visited
(SKIP), visited without any masking work (FULL), or visited with it (PARTIAL); the
causal rule, the sliding window and the key padding give kinds statically, a mask
array at run time. With a window only the blocks that meet the band are visited, so
the work grows as T * window.
`sweep` folds one query block's visited key blocks into a carry.
"""

import dataclasses

import jax.numpy as jnp
import numpy as np
from jax import lax

# Block kinds: never visited, visited without a mask, visited with a mask.
SKIP, FULL, PARTIAL = 0, 1, 2

# With one query block and a mask array, up to this many key blocks run unrolled.
UNROLL_KEY_BLOCKS = 4


@dataclasses.dataclass(frozen=True)
class Plan:
  """Static tiling of a [T, S] attention problem into I x J blocks of Q x C."""

  T: int
  S: int
  Q: int
  C: int
  is_causal: bool
  # Sliding window: query t (at p = t + S - T) sees p - window < s <= p when causal,
  # |p - s| < window when not; None: no window. Stored at most max(T, S).
  window: int | None = None
  # Attention dropout: each probability kept with 1 - rate (tfmr_jax.ops.dropout), its
  # keep-mask drawn per block from per-sequence keys, forward and backward alike.
  dropout_rate: float = 0.0
  B: int = 1
  K: int = 1
  G: int = 1
  # Fold the scale into the queries before the loops (float32 queries only, where it
  # costs one rounding of q * scale): saves a multiply over every [R, C] block.
  prescaled: bool = False

  @property
  def I(self) -> int:  # noqa: E743
    return -(-self.T // self.Q)

  @property
  def J(self) -> int:
    return -(-self.S // self.C)

  @property
  def keys_padded(self) -> bool:
    return self.J * self.C != self.S


def block_length(length: int, target: int) -> int:
  """Split `length` into ceil(length / target) near-equal blocks, so padding stays small."""
  count = -(-length // target)
  return -(-length // count)


def static_kinds_IJ(plan: Plan) -> np.ndarray:
  """[I, J] block kinds from the causal rule, the window and the key padding alone."""
  i_I1 = np.arange(plan.I)[:, None]
  j_1J = np.arange(plan.J)[None, :]
  first_key = j_1J * plan.C
  last_key = np.minimum((j_1J + 1) * plan.C, plan.S) - 1
  kinds = np.full((plan.I, plan.J), FULL, np.int32)
  if plan.keys_padded:
    kinds[:, -1] = PARTIAL
  if plan.is_causal or plan.window is not None:
    offset = plan.S - plan.T  # query t stands at key position p = t + offset
    first_p = i_I1 * plan.Q + offset
    last_p = np.minimum((i_I1 + 1) * plan.Q, plan.T) - 1 + offset
    W = plan.window
    reach = 0 if plan.is_causal else W - 1  # query p sees keys up to p + reach
    all_open = last_key <= first_p + reach
    any_open = first_key <= last_p + reach
    if W is not None:  # ... and down to p - W + 1
      all_open = all_open & (first_key >= last_p - W + 1)
      any_open = any_open & (last_key >= first_p - W + 1)
    kinds = np.where(all_open, kinds, PARTIAL)
    kinds = np.where(any_open, kinds, SKIP)
  return kinds


def mask_kinds_IJ(mask_bKGts, plan: Plan):
  """[I, J] block kinds of a (padded) bool mask: skip where no entry is True anywhere."""
  b, k, g, t, s = mask_bKGts.shape
  I, Q = (plan.I, plan.Q) if t > 1 else (1, 1)
  J, C = (plan.J, plan.C) if s > 1 else (1, 1)
  mask_bkgIQJC = mask_bKGts.reshape(b, k, g, I, Q, J, C)
  any_IJ = jnp.any(mask_bkgIQJC, axis=(0, 1, 2, 4, 6))
  all_IJ = jnp.all(mask_bkgIQJC, axis=(0, 1, 2, 4, 6))
  kinds_IJ = jnp.where(all_IJ, FULL, jnp.where(any_IJ, PARTIAL, SKIP))
  return jnp.broadcast_to(kinds_IJ, (plan.I, plan.J)).astype(jnp.int32)


def block_kinds_IJ(plan: Plan, mask_bKGts):
  """[I, J] kinds combining the static structure with the mask's, and the visited range.

  Returns (kinds_IJ, start_I, stop_I): query block i visits key blocks [start, stop).
  """
  kinds = static_kinds_IJ(plan)
  if mask_bKGts is not None:
    from_mask = mask_kinds_IJ(mask_bKGts, plan)
    kinds = jnp.where(
      (kinds == SKIP) | (from_mask == SKIP),
      SKIP,
      jnp.where((kinds == FULL) & (from_mask == FULL), FULL, PARTIAL),
    )
  xp = np if isinstance(kinds, np.ndarray) else jnp
  visited_IJ = kinds != SKIP
  j_J = xp.arange(plan.J)
  start_I = xp.min(xp.where(visited_IJ, j_J, plan.J), axis=1)
  stop_I = xp.max(xp.where(visited_IJ, j_J + 1, 0), axis=1)
  start_I = xp.minimum(start_I, stop_I)
  return xp.asarray(kinds, np.int32), xp.asarray(start_I, np.int32), xp.asarray(stop_I, np.int32)


def sweep(kinds_IJ, start_I, stop_I, i, carry, *, full, partial):
  """Fold query block i's visited key blocks j into carry with full(j, c) or partial(j, c).

  No per-block branch: each row runs as partial, then full, then partial blocks, the
  full run being its FULL blocks when they are contiguous (causal, padding, sliding
  windows) and empty otherwise. The masked body is right for any block, only slower,
  so a row of scattered kinds runs it throughout. With static kinds the bounds are
  static too, and a loop that would run once is unrolled; so is a short sequence's
  single row of traced kinds.
  """
  J = kinds_IJ.shape[1]
  if not isinstance(kinds_IJ, np.ndarray) and isinstance(i, int) and J <= UNROLL_KEY_BLOCKS:
    # One query block, a few key blocks of traced kinds (a short sequence with a mask
    # array): the masked body fits every block, and straight-line code beats loops.
    for j in range(J):
      carry = partial(j, carry)
    return carry
  xp = np if isinstance(kinds_IJ, np.ndarray) else jnp
  is_full_IJ = kinds_IJ == FULL
  j_J = xp.arange(J)
  full_lo_I = xp.min(xp.where(is_full_IJ, j_J, J), axis=1)
  full_hi_I = xp.max(xp.where(is_full_IJ, j_J + 1, 0), axis=1)
  contiguous_I = (full_hi_I - full_lo_I) == xp.sum(is_full_IJ, axis=1)
  full_lo_I = xp.where(contiguous_I, full_lo_I, stop_I).astype(np.int32)
  full_hi_I = xp.where(contiguous_I, full_hi_I, stop_I).astype(np.int32)
  full_lo_I = xp.clip(full_lo_I, start_I, stop_I)  # rows with no FULL block: empty run
  full_hi_I = xp.clip(full_hi_I, full_lo_I, stop_I)
  bounds = (start_I, full_lo_I, full_hi_I, stop_I)
  if xp is np and isinstance(i, int):
    bounds = tuple(int(b[i]) for b in bounds)
  else:
    bounds = tuple(jnp.asarray(b)[i] for b in bounds)
  carry = loop(bounds[0], bounds[1], partial, carry)
  carry = loop(bounds[1], bounds[2], full, carry)
  return loop(bounds[2], bounds[3], partial, carry)


def loop(start, stop, body, carry):
  """lax.fori_loop, or plain calls when the bounds are static and it runs at most once."""
  if isinstance(start, int) and isinstance(stop, int) and stop - start <= 1:
    for j in range(start, stop):
      carry = body(j, carry)
    return carry
  return lax.fori_loop(start, stop, body, carry)
