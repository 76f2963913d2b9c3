"""Tiled attention: online softmax over blocks, O(T) memory, portable JAX.

Dimension key:
  B batch   T query length   S key/value length   N query heads   K kv heads
  G = N // K   H head dim   Q query-block length   C key-block length
  I number of query blocks   J number of key blocks
  Z = B * K independent problems (one per kv head)   R = G * Q query rows of a block

The same function as `tfmr_jax.ops.attention` (same arguments, same masks, same
fully-masked-row rule), computed without ever holding the [T, S] logits:

  for each block of Q queries:               (lax.scan over I blocks)
    m = -big, l = 0, acc = 0                  running max, sum, weighted values
    for each block of C keys it may see:      (while loop, bounds per query block)
      s = q k^T * scale + bias                [Q, C] float32
      m' = max(m, rowmax s);  p = exp(s - m')
      l = l e^(m - m') + rowsum p;  acc = acc e^(m - m') + p v;  m = m'
    out = acc / l,   lse = m + log l          lse is saved for the backward

Blocks that a mask rules out entirely are never visited; blocks it leaves fully
open run without any masking work; only the blocks it cuts (the causal diagonal,
the padded tail) pay for `where`. With `is_causal=True` that structure is known
statically and no [T, S] mask exists anywhere, so memory is O(T) end to end.

The backward is written by hand (jax.custom_vjp): it recomputes each block's
probabilities from the saved lse, p = exp(s - lse), and forms dV += p^T dO,
dP = dO V^T, dS = p (dP - rowsum(dO * O)), dQ += dS K, dK += dS^T Q with matmuls,
so training memory is O(T) too. Accumulation is float32 whatever the inputs.
"""

import dataclasses
import functools

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax

from tfmr_jax.ops.attention import MASKED_LOGIT, check_attention_args
from tfmr_jax.ops.guards import check_positive

# Default block lengths, chosen with experiments/bench_attention.py on 2 CPU cores (see
# README): 512 queries against 256 keys (smaller blocks leave the second core idle, larger
# ones spill the caches); a short query block (decoding, T = 1) takes key blocks long
# enough for Q * C = 512 * 256 logits, instead of many tiny ones.
DEFAULT_Q_BLOCK = 512
DEFAULT_BLOCK_LOGITS = 512 * 256

# A pass over one block holds B N Q C logits; past this many (B=1, N=8 at the default
# blocks) the batch runs in chunks of sequences, one chunk after the other, so the logits
# of a pass stay cache-sized. Measured: B=8, T=2048 forward 548 ms in one pass, 8 x 36 ms
# one sequence at a time.
MAX_PASS_LOGITS = 8 * DEFAULT_BLOCK_LOGITS

# With one query block and a mask array, up to this many key blocks run unrolled.
_UNROLL_KEY_BLOCKS = 4

# Block kinds: never visited, visited without a mask, visited with a mask.
_SKIP, _FULL, _PARTIAL = 0, 1, 2

# lse of a query row with no visible key: exp(s - lse) underflows to 0 for every s.
_EMPTY_ROW_LSE = -MASKED_LOGIT


@dataclasses.dataclass(frozen=True)
class _Plan:
  """Static tiling of a [T, S] attention problem into I x J blocks of Q x C."""

  T: int
  S: int
  Q: int
  C: int
  is_causal: bool
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


def _block_length(length: int, target: int) -> int:
  """Split `length` into ceil(length / target) near-equal blocks, so padding stays small."""
  count = -(-length // target)
  return -(-length // count)


def _static_kinds_IJ(plan: _Plan) -> np.ndarray:
  """[I, J] block kinds from the causal rule and the key padding alone."""
  i_I1 = np.arange(plan.I)[:, None]
  j_1J = np.arange(plan.J)[None, :]
  first_key = j_1J * plan.C
  last_key = np.minimum((j_1J + 1) * plan.C, plan.S) - 1
  kinds = np.full((plan.I, plan.J), _FULL, np.int32)
  if plan.keys_padded:
    kinds[:, -1] = _PARTIAL
  if plan.is_causal:
    offset = plan.S - plan.T  # query t sees key s <= t + offset
    first_query = i_I1 * plan.Q
    last_query = np.minimum((i_I1 + 1) * plan.Q, plan.T) - 1
    all_open = last_key <= first_query + offset
    any_open = first_key <= last_query + offset
    kinds = np.where(all_open, kinds, _PARTIAL)
    kinds = np.where(any_open, kinds, _SKIP)
  return kinds


def _mask_kinds_IJ(mask_bKGts, plan: _Plan):
  """[I, J] block kinds of a (padded) bool mask: skip where no entry is True anywhere."""
  b, k, g, t, s = mask_bKGts.shape
  I, Q = (plan.I, plan.Q) if t > 1 else (1, 1)
  J, C = (plan.J, plan.C) if s > 1 else (1, 1)
  mask_bkgIQJC = mask_bKGts.reshape(b, k, g, I, Q, J, C)
  any_IJ = jnp.any(mask_bkgIQJC, axis=(0, 1, 2, 4, 6))
  all_IJ = jnp.all(mask_bkgIQJC, axis=(0, 1, 2, 4, 6))
  kinds_IJ = jnp.where(all_IJ, _FULL, jnp.where(any_IJ, _PARTIAL, _SKIP))
  return jnp.broadcast_to(kinds_IJ, (plan.I, plan.J)).astype(jnp.int32)


def _block_kinds_IJ(plan: _Plan, mask_bKGts):
  """[I, J] kinds combining the static structure with the mask's, and the visited range.

  Returns (kinds_IJ, start_I, stop_I): query block i visits key blocks [start, stop).
  """
  kinds = _static_kinds_IJ(plan)
  if mask_bKGts is not None:
    from_mask = _mask_kinds_IJ(mask_bKGts, plan)
    kinds = jnp.where(
      (kinds == _SKIP) | (from_mask == _SKIP),
      _SKIP,
      jnp.where((kinds == _FULL) & (from_mask == _FULL), _FULL, _PARTIAL),
    )
  xp = np if isinstance(kinds, np.ndarray) else jnp
  visited_IJ = kinds != _SKIP
  j_J = xp.arange(plan.J)
  start_I = xp.min(xp.where(visited_IJ, j_J, plan.J), axis=1)
  stop_I = xp.max(xp.where(visited_IJ, j_J + 1, 0), axis=1)
  start_I = xp.minimum(start_I, stop_I)
  return xp.asarray(kinds, np.int32), xp.asarray(start_I, np.int32), xp.asarray(stop_I, np.int32)


def _grouped(x_bnts, K: int, G: int):
  """Rank-4 [b, n, t, s] (n = 1 or N) -> [b, K|1, G|1, t, s], query head n = k * G + g."""
  b, n, t, s = x_bnts.shape
  return x_bnts.reshape(b, K if n > 1 else 1, G if n > 1 else 1, t, s)


def _block(x, i, j, plan: _Plan, *, t_axis: int, s_axis: int):
  """Block (i, j) of x along its query and key axes; axes of size 1 stay (they broadcast)."""
  size = list(x.shape)
  if x.shape[t_axis] > 1:
    size[t_axis] = plan.Q
  if x.shape[s_axis] > 1:
    size[s_axis] = plan.C
  return lax.dynamic_slice(x, _block_start(x, i, j, plan, t_axis=t_axis, s_axis=s_axis), size)


def _block_start(x, i, j, plan: _Plan, *, t_axis: int, s_axis: int):
  """Start indices of block (i, j) in x, as `_block` slices it."""
  start = [0] * x.ndim
  if x.shape[t_axis] > 1:
    start[t_axis] = i * plan.Q
  if x.shape[s_axis] > 1:
    start[s_axis] = j * plan.C
  return start


def _rows_block(x, i, j, plan: _Plan, *, transposed: bool):
  """Block (i, j) of a mask or bias as [Z, R, C] (or [Z, C, R] when transposed).

  x is [b, K|1, G|1, t, s] (or [b, K|1, s, G|1, t] when transposed); the block is
  broadcast over the axes x lacks, then folded: Z = (B, K), R = (G, Q).
  """
  B, K, G, Q, C = plan.B, plan.K, plan.G, plan.Q, plan.C
  if transposed:
    block = _block(x, i, j, plan, t_axis=4, s_axis=2)
    return jnp.broadcast_to(block, (B, K, C, G, Q)).reshape(B * K, C, G * Q)
  block = _block(x, i, j, plan, t_axis=3, s_axis=4)
  return jnp.broadcast_to(block, (B, K, G, Q, C)).reshape(B * K, G * Q, C)


def _open_block(i, j, plan: _Plan, mask, *, transposed: bool):
  """bool, broadcastable to [Z, R, C] (or [Z, C, R] when transposed).

  True where query i * Q + q may attend key j * C + c: inside the keys, causal if
  the plan says so, and allowed by `mask` ([b, K, G, t, s], or [b, K, s, G, t]).
  """
  query_1Q = i * plan.Q + lax.broadcasted_iota(jnp.int32, (1, plan.Q), 1)
  key_C1 = j * plan.C + lax.broadcasted_iota(jnp.int32, (plan.C, 1), 0)
  open_CQ = jnp.ones((plan.C, plan.Q), jnp.bool_)
  if plan.keys_padded:
    open_CQ = open_CQ & (key_C1 < plan.S)
  if plan.is_causal:
    open_CQ = open_CQ & (key_C1 <= query_1Q + (plan.S - plan.T))
  G, Q, C = plan.G, plan.Q, plan.C
  if transposed:
    open_ = jnp.broadcast_to(open_CQ[:, None, :], (C, G, Q)).reshape(1, C, G * Q)
  else:
    open_ = jnp.broadcast_to(open_CQ.T[None], (G, Q, C)).reshape(1, G * Q, C)
  if mask is not None:
    open_ = open_ & _rows_block(mask, i, j, plan, transposed=transposed)
  return open_


def _bmm(a_ZMX, b_ZXN):
  """float32 [Z, M, N] = a b, batched over Z.

  Callers lay operands out as XLA's CPU dot wants them, [Z, M, contract] times
  [Z, contract, N], so no [R, C]-sized operand is ever transposed.
  """
  return lax.dot_general(
    a_ZMX, b_ZXN, (((2,), (1,)), ((0,), (0,))), preferred_element_type=jnp.float32
  )


def _scaled_queries(q_IZRH, scale, plan: _Plan):
  """q * scale when the plan folds the scale into the queries (float32), else q."""
  return q_IZRH * scale if plan.prescaled else q_IZRH


def _forward(plan: _Plan, q_IZRH, k_JZCH, v_JZCH, scale, mask_bKGts, bias_bKGts):
  """Online-softmax forward. Returns (out_IZRH float32, lse_IZR float32)."""
  _, Z, R, H = q_IZRH.shape
  kinds_IJ, start_I, stop_I = _block_kinds_IJ(plan, mask_bKGts)
  kT_JZHC = jnp.swapaxes(k_JZCH, -1, -2)
  qs_IZRH = _scaled_queries(q_IZRH, scale, plan)

  def visit(i, j, qs_ZRH, carry, *, masked):
    m_ZR, l_ZR, acc_ZRH = carry
    s_ZRC = _bmm(qs_ZRH, kT_JZHC[j])
    if not plan.prescaled:
      s_ZRC = s_ZRC * scale
    if bias_bKGts is not None:
      s_ZRC = s_ZRC + _rows_block(bias_bKGts, i, j, plan, transposed=False)
    if masked:
      open_ZRC = _open_block(i, j, plan, mask_bKGts, transposed=False)
      s_ZRC = jnp.where(open_ZRC, s_ZRC, MASKED_LOGIT)
    m_new_ZR = jnp.maximum(m_ZR, jnp.max(s_ZRC, axis=-1))
    p_ZRC = jnp.exp(s_ZRC - m_new_ZR[..., None])
    if masked and mask_bKGts is not None:
      # A row with no open key so far has m' = MASKED_LOGIT, and exp(0) = 1 at its closed
      # keys. Without a mask array that cannot happen: key 0, in the first block every
      # row visits, is open to every row (causal or not), so m' is a real logit from then.
      p_ZRC = jnp.where(open_ZRC, p_ZRC, 0.0)
    alpha_ZR = jnp.exp(m_ZR - m_new_ZR)
    l_ZR = l_ZR * alpha_ZR + jnp.sum(p_ZRC, axis=-1)
    v_ZCH = v_JZCH[j]
    pv_ZRH = _bmm(p_ZRC.astype(v_ZCH.dtype), v_ZCH)
    return m_new_ZR, l_ZR, acc_ZRH * alpha_ZR[..., None] + pv_ZRH

  def query_block(i, qs_ZRH):
    init = (
      jnp.full((Z, R), MASKED_LOGIT, jnp.float32),
      jnp.zeros((Z, R), jnp.float32),
      jnp.zeros((Z, R, H), jnp.float32),
    )
    m_ZR, l_ZR, acc_ZRH = _sweep(
      kinds_IJ,
      start_I,
      stop_I,
      i,
      init,
      full=lambda j, c: visit(i, j, qs_ZRH, c, masked=False),
      partial=lambda j, c: visit(i, j, qs_ZRH, c, masked=True),
    )
    seen_ZR = l_ZR > 0.0
    l_ZR = jnp.where(seen_ZR, l_ZR, 1.0)
    out_ZRH = acc_ZRH / l_ZR[..., None]
    lse_ZR = jnp.where(seen_ZR, m_ZR + jnp.log(l_ZR), _EMPTY_ROW_LSE)
    return out_ZRH, lse_ZR

  if plan.I == 1:  # one query block: no loop, so short sequences pay no loop overhead
    return jax.tree.map(lambda x: x[None], query_block(0, qs_IZRH[0]))
  return lax.map(lambda args: query_block(*args), (jnp.arange(plan.I), qs_IZRH))


def _sweep(kinds_IJ, start_I, stop_I, i, carry, *, full, partial):
  """Fold query block i's visited key blocks j into carry with full(j, c) or partial(j, c).

  No per-block branch: each row runs as partial, then full, then partial blocks, the
  full run being its FULL blocks when they are contiguous (causal, padding, sliding
  windows) and empty otherwise. The masked body is right for any block, only slower,
  so a row of scattered kinds runs it throughout. With static kinds the bounds are
  static too, and a loop that would run once is unrolled; so is a short sequence's
  single row of traced kinds.
  """
  J = kinds_IJ.shape[1]
  if not isinstance(kinds_IJ, np.ndarray) and isinstance(i, int) and J <= _UNROLL_KEY_BLOCKS:
    # One query block, a few key blocks of traced kinds (a short sequence with a mask
    # array): the masked body fits every block, and straight-line code beats loops.
    for j in range(J):
      carry = partial(j, carry)
    return carry
  xp = np if isinstance(kinds_IJ, np.ndarray) else jnp
  is_full_IJ = kinds_IJ == _FULL
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
  carry = _loop(bounds[0], bounds[1], partial, carry)
  carry = _loop(bounds[1], bounds[2], full, carry)
  return _loop(bounds[2], bounds[3], partial, carry)


def _loop(start, stop, body, carry):
  """lax.fori_loop, or plain calls when the bounds are static and it runs at most once."""
  if isinstance(start, int) and isinstance(stop, int) and stop - start <= 1:
    for j in range(start, stop):
      carry = body(j, carry)
    return carry
  return lax.fori_loop(start, stop, body, carry)


def _backward(plan: _Plan, res, dout_IZRH):
  """Hand-written backward: recompute p from lse, accumulate dQ, dK, dV, dscale, dbias.

  Blocks are laid out transposed, [Z, C, R], so that every matmul reads its
  [C, R]-sized operand in place: dV = p^T dO, dK = dS^T Q and dQ^T = K^T dS^T.
  """
  q_IZRH, k_JZCH, v_JZCH, scale, mask_bKGts, bias_bKGts, out_IZRH, lse_IZR = res
  _, Z, R, H = q_IZRH.shape
  # A constant cotangent (the gradient of sum(out)) reaches us as a broadcast; XLA's CPU
  # backend (jax 0.10.2) then computed dQ and dK from uninitialised memory for a single
  # 128 x 128 block. Materialising it first costs one copy of dO and avoids that.
  dout_IZRH = lax.optimization_barrier(dout_IZRH)
  kinds_IJ, start_I, stop_I = _block_kinds_IJ(plan, mask_bKGts)
  kT_JZHC = jnp.swapaxes(k_JZCH, -1, -2)
  qs_IZRH = _scaled_queries(q_IZRH, scale, plan)
  qsT_IZHR = jnp.swapaxes(qs_IZRH, -1, -2)
  doutT_IZHR = jnp.swapaxes(dout_IZRH, -1, -2)
  mask_bKsGt = None if mask_bKGts is None else mask_bKGts.transpose(0, 1, 4, 2, 3)
  bias_bKsGt = None if bias_bKGts is None else bias_bKGts.transpose(0, 1, 4, 2, 3)
  # rowsum(dO * O): the softmax Jacobian's diagonal term, one number per query.
  delta_IZR = jnp.sum(dout_IZRH.astype(jnp.float32) * out_IZRH, axis=-1)

  def visit(i, j, row, carry, *, masked):
    qs_ZRH, qsT_ZHR, dout_ZRH, doutT_ZHR, lse_ZR, delta_ZR = row
    dqT_ZHR, dk_JZCH, dv_JZCH, dbias_bKsGt = carry
    k_ZCH, v_ZCH = k_JZCH[j], v_JZCH[j]
    sT_ZCR = _bmm(k_ZCH, qsT_ZHR)
    if not plan.prescaled:
      sT_ZCR = sT_ZCR * scale
    if bias_bKsGt is not None:
      sT_ZCR = sT_ZCR + _rows_block(bias_bKsGt, i, j, plan, transposed=True)
    if masked:
      open_ZCR = _open_block(i, j, plan, mask_bKsGt, transposed=True)
      sT_ZCR = jnp.where(open_ZCR, sT_ZCR, MASKED_LOGIT)
    pT_ZCR = jnp.exp(sT_ZCR - lse_ZR[:, None, :])  # closed entries underflow to 0
    dv_ZCH = _bmm(pT_ZCR.astype(dout_ZRH.dtype), dout_ZRH)
    dpT_ZCR = _bmm(v_ZCH, doutT_ZHR)
    dsT_ZCR = pT_ZCR * (dpT_ZCR - delta_ZR[:, None, :])
    dqT_ZHR = dqT_ZHR + _bmm(kT_JZHC[j], dsT_ZCR.astype(k_ZCH.dtype))
    dk_ZCH = _bmm(dsT_ZCR.astype(qs_ZRH.dtype), qs_ZRH)
    dk_JZCH = lax.dynamic_update_index_in_dim(dk_JZCH, dk_JZCH[j] + dk_ZCH, j, 0)
    dv_JZCH = lax.dynamic_update_index_in_dim(dv_JZCH, dv_JZCH[j] + dv_ZCH, j, 0)
    if bias_bKsGt is not None:
      dbias_bKsGt = _add_block(dbias_bKsGt, dsT_ZCR, i, j, plan)
    return dqT_ZHR, dk_JZCH, dv_JZCH, dbias_bKsGt

  def query_block(carry, xs):
    i, row = xs[0], xs[1:]
    dk_JZCH, dv_JZCH, dbias_bKsGt = carry
    init = (jnp.zeros((Z, H, R), jnp.float32), dk_JZCH, dv_JZCH, dbias_bKsGt)
    dqT_ZHR, dk_JZCH, dv_JZCH, dbias_bKsGt = _sweep(
      kinds_IJ,
      start_I,
      stop_I,
      i,
      init,
      full=lambda j, c: visit(i, j, row, c, masked=False),
      partial=lambda j, c: visit(i, j, row, c, masked=True),
    )
    return (dk_JZCH, dv_JZCH, dbias_bKsGt), dqT_ZHR

  zeros_JZCH = jnp.zeros(k_JZCH.shape, jnp.float32)
  dbias0 = None if bias_bKsGt is None else jnp.zeros(bias_bKsGt.shape, jnp.float32)
  xs = (jnp.arange(plan.I), qs_IZRH, qsT_IZHR, dout_IZRH, doutT_IZHR, lse_IZR, delta_IZR)
  if plan.I == 1:  # one query block: no loop
    carry, dqT_ZHR = query_block(
      (zeros_JZCH, zeros_JZCH, dbias0), (0,) + tuple(x[0] for x in xs[1:])
    )
    (dk_JZCH, dv_JZCH, dbias_bKsGt), dqT_IZHR = carry, dqT_ZHR[None]
  else:
    (dk_JZCH, dv_JZCH, dbias_bKsGt), dqT_IZHR = lax.scan(
      query_block, (zeros_JZCH, zeros_JZCH, dbias0), xs
    )
  # dqT holds dS k (the scale not yet applied). s = scale * q.k, so
  # dL/dscale = sum(dS * q.k) = sum(q * (dS k)).
  dq_IZRH = jnp.swapaxes(dqT_IZHR, -1, -2)
  dscale = jnp.sum(dq_IZRH * q_IZRH.astype(jnp.float32))
  dk_scale = 1.0 if plan.prescaled else scale  # prescaled: dS^T (q * scale) already
  dbias_bKGts = None
  if bias_bKGts is not None:
    dbias_bKGts = dbias_bKsGt.transpose(0, 1, 3, 4, 2).astype(bias_bKGts.dtype)
  return (
    (dq_IZRH * scale).astype(q_IZRH.dtype),
    (dk_JZCH * dk_scale).astype(k_JZCH.dtype),
    dv_JZCH.astype(v_JZCH.dtype),
    dscale.astype(scale.dtype),
    None,
    dbias_bKGts,
  )


def _add_block(acc_bKsGt, dsT_ZCR, i, j, plan: _Plan):
  """acc[block (i, j)] += dS^T, summed over the axes where acc broadcasts (size 1)."""
  dsT_BKCGQ = dsT_ZCR.reshape(plan.B, plan.K, plan.C, plan.G, plan.Q)
  axes = tuple(a for a, size in enumerate(acc_bKsGt.shape) if size == 1)
  ds = jnp.sum(dsT_BKCGQ, axis=axes, keepdims=True)
  return lax.dynamic_update_slice(
    acc_bKsGt,
    _block(acc_bKsGt, i, j, plan, t_axis=4, s_axis=2) + ds,
    _block_start(acc_bKsGt, i, j, plan, t_axis=4, s_axis=2),
  )


@functools.partial(jax.custom_vjp, nondiff_argnums=(0,))
def _tiled_core(plan, q_IZRH, k_JZCH, v_JZCH, scale, mask_bKGts, bias_bKGts):
  return _forward(plan, q_IZRH, k_JZCH, v_JZCH, scale, mask_bKGts, bias_bKGts)[0]


def _tiled_core_fwd(plan, q_IZRH, k_JZCH, v_JZCH, scale, mask_bKGts, bias_bKGts):
  out_IZRH, lse_IZR = _forward(plan, q_IZRH, k_JZCH, v_JZCH, scale, mask_bKGts, bias_bKGts)
  res = (q_IZRH, k_JZCH, v_JZCH, scale, mask_bKGts, bias_bKGts, out_IZRH, lse_IZR)
  return out_IZRH, res


_tiled_core.defvjp(_tiled_core_fwd, _backward)


def _pad_axis(x, axis: int, length: int, value):
  """Pad axis `axis` of x at the end up to `length` with `value` (no-op if already there)."""
  extra = length - x.shape[axis]
  if extra == 0:
    return x
  widths = [(0, 0)] * x.ndim
  widths[axis] = (0, extra)
  return jnp.pad(x, widths, constant_values=value)


def _rank4(x):
  """A broadcastable [.., N, T, S] array with leading axes of size 1 added up to rank 4."""
  x = jnp.asarray(x)
  return x.reshape((1,) * (4 - x.ndim) + x.shape)


def _as_bnts(x, plan: _Plan, *, pad_queries, pad_keys):
  """A broadcastable [.., N, T, S] array as rank 4 with its T and S axes padded to blocks."""
  x = _rank4(x)
  if x.shape[2] > 1:
    x = _pad_axis(x, 2, plan.I * plan.Q, pad_queries)
  if x.shape[3] > 1:
    x = _pad_axis(x, 3, plan.J * plan.C, pad_keys)
  return x


def tiled_attention(
  q_BTNH,
  k_BSKH,
  v_BSKH,
  *,
  mask=None,
  bias=None,
  scale=None,
  is_causal: bool = False,
  q_block: int | None = None,
  kv_block: int | None = None,
):
  """softmax(q k^T * scale + bias) v, tiled. Returns [B, T, N, H] in q's dtype.

  Same arguments, masks and fully-masked-row rule as `tfmr_jax.ops.attention`, plus:
    is_causal: apply the causal rule (query t sees key s <= t + S - T) from its
      structure: no [T, S] mask is built, blocks above the diagonal are skipped.
      Combines (AND) with `mask` if both are given.
    q_block, kv_block: block lengths (default DEFAULT_Q_BLOCK queries and
      DEFAULT_BLOCK_LOGITS / Q keys, at least 256); they need not divide T or S.

  Memory is O(B N T H) plus whatever `mask` and `bias` occupy; gradients (including
  with respect to `bias` and `scale`) come from a hand-written backward.
  """
  B, T, S, N, K, H = check_attention_args(q_BTNH, k_BSKH, v_BSKH, mask, bias)
  for name, value in (("q_block", q_block), ("kv_block", kv_block)):
    if value is not None:
      check_positive(name, value)
  if is_causal and S < T:
    raise ValueError(f"is_causal needs S >= T (queries are the last T of S keys), got T={T}, S={S}")
  G = N // K
  Q = _block_length(T, q_block or DEFAULT_Q_BLOCK)
  C = _block_length(S, kv_block or max(256, DEFAULT_BLOCK_LOGITS // Q))
  chunk = _batch_chunk(B, N, Q, C)
  if chunk < B:
    return _in_batch_chunks(
      chunk,
      q_BTNH,
      k_BSKH,
      v_BSKH,
      mask=mask,
      bias=bias,
      scale=scale,
      is_causal=is_causal,
      q_block=Q,
      kv_block=C,
    )
  plan = _Plan(
    T=T,
    S=S,
    Q=Q,
    C=C,
    is_causal=bool(is_causal),
    B=B,
    K=K,
    G=G,
    prescaled=q_BTNH.dtype == jnp.float32,
  )
  scale = jnp.asarray(H**-0.5 if scale is None else scale, jnp.float32)
  I, J = plan.I, plan.J
  q_BIQKGH = _pad_axis(q_BTNH, 1, I * Q, 0).reshape(B, I, Q, K, G, H)
  q_IZRH = q_BIQKGH.transpose(1, 0, 3, 4, 2, 5).reshape(I, B * K, G * Q, H)
  k_BJCKH, v_BJCKH = (_pad_axis(x, 1, J * C, 0).reshape(B, J, C, K, H) for x in (k_BSKH, v_BSKH))
  k_JZCH, v_JZCH = (x.transpose(1, 0, 3, 2, 4).reshape(J, B * K, C, H) for x in (k_BJCKH, v_BJCKH))
  mask_bKGts = bias_bKGts = None
  if mask is not None:
    mask_bKGts = _grouped(_as_bnts(mask, plan, pad_queries=True, pad_keys=False), K, G)
  if bias is not None:
    bias_f32 = jnp.asarray(bias, jnp.float32)
    bias_bKGts = _grouped(_as_bnts(bias_f32, plan, pad_queries=0.0, pad_keys=0.0), K, G)
  out_IZRH = _tiled_core(plan, q_IZRH, k_JZCH, v_JZCH, scale, mask_bKGts, bias_bKGts)
  out_IBKGQH = out_IZRH.reshape(I, B, K, G, Q, H)
  out_BTNH = out_IBKGQH.transpose(1, 0, 4, 2, 3, 5).reshape(B, I * Q, N, H)[:, :T]
  return out_BTNH.astype(q_BTNH.dtype)


def _batch_chunk(B: int, N: int, Q: int, C: int) -> int:
  """The largest divisor of B whose block pass holds at most MAX_PASS_LOGITS logits (>= 1)."""
  limit = max(1, MAX_PASS_LOGITS // (N * Q * C))
  return max(d for d in range(1, min(B, limit) + 1) if B % d == 0)


def _in_batch_chunks(chunk: int, q_BTNH, k_BSKH, v_BSKH, *, mask, bias, scale, **options):
  """tiled_attention over B / chunk groups of `chunk` sequences in turn (lax.map).

  mask and bias are split with the batch where they have one, else shared.
  """
  B = q_BTNH.shape[0]

  def split(x):
    return x.reshape((B // chunk, chunk) + x.shape[1:])

  mask, bias = (None if x is None else _rank4(x) for x in (mask, bias))
  per_sequence = {
    name: x for name, x in (("mask", mask), ("bias", bias)) if x is not None and x.shape[0] == B
  }
  shared = {name: x for name, x in (("mask", mask), ("bias", bias)) if name not in per_sequence}

  def run(xs):
    q, k, v, extra = xs
    return tiled_attention(q, k, v, scale=scale, **shared, **extra, **options)

  xs = (split(q_BTNH), split(k_BSKH), split(v_BSKH), {n: split(x) for n, x in per_sequence.items()})
  out = lax.map(run, xs)
  return out.reshape((B,) + out.shape[2:])


__all__ = ["DEFAULT_BLOCK_LOGITS", "DEFAULT_Q_BLOCK", "MAX_PASS_LOGITS", "tiled_attention"]
