"""Slicing one block out of the operands, its open (unmasked) entries, and block matmuls.

Dimension key: B batch, K kv heads, G = N // K, H head dim, Q query-block length,
C key-block length, Z = B * K independent problems, R = G * Q query rows of a block;
b, t, s axes that may be 1 (they broadcast).
"""

import jax.numpy as jnp
from jax import lax

from tfmr_jax.ops.dropout import keep_block_BNQC
from tfmr_jax.ops.tiled.plan import Plan


def take_block(x, i, j, plan: Plan, *, t_axis: int, s_axis: int):
  """Block (i, j) of x along its query and key axes; axes of size 1 stay (they broadcast)."""
  size = list(x.shape)
  if x.shape[t_axis] > 1:
    size[t_axis] = plan.Q
  if x.shape[s_axis] > 1:
    size[s_axis] = plan.C
  return lax.dynamic_slice(x, block_start(x, i, j, plan, t_axis=t_axis, s_axis=s_axis), size)


def block_start(x, i, j, plan: Plan, *, t_axis: int, s_axis: int):
  """Start indices of block (i, j) in x, as `take_block` slices it."""
  start = [0] * x.ndim
  if x.shape[t_axis] > 1:
    start[t_axis] = i * plan.Q
  if x.shape[s_axis] > 1:
    start[s_axis] = j * plan.C
  return start


def rows_block(x, i, j, plan: Plan, *, transposed: bool):
  """Block (i, j) of a mask or bias as [Z, R, C] (or [Z, C, R] when transposed).

  x is [b, K|1, G|1, t, s] (or [b, K|1, s, G|1, t] when transposed); the block is
  broadcast over the axes x lacks, then folded: Z = (B, K), R = (G, Q).
  """
  B, K, G, Q, C = plan.B, plan.K, plan.G, plan.Q, plan.C
  if transposed:
    block = take_block(x, i, j, plan, t_axis=4, s_axis=2)
    return jnp.broadcast_to(block, (B, K, C, G, Q)).reshape(B * K, C, G * Q)
  block = take_block(x, i, j, plan, t_axis=3, s_axis=4)
  return jnp.broadcast_to(block, (B, K, G, Q, C)).reshape(B * K, G * Q, C)


def open_block(i, j, plan: Plan, mask, *, transposed: bool):
  """bool, broadcastable to [Z, R, C] (or [Z, C, R] when transposed).

  True where query i * Q + q may attend key j * C + c: inside the keys, causal and
  inside the window if the plan says so, and allowed by `mask` ([b, K, G, t, s] in both
  layouts: a transposed block is transposed on its own, so the backward never copies
  the whole mask into the other layout).
  """
  query_1Q = i * plan.Q + lax.broadcasted_iota(jnp.int32, (1, plan.Q), 1)
  key_C1 = j * plan.C + lax.broadcasted_iota(jnp.int32, (plan.C, 1), 0)
  p_1Q = query_1Q + (plan.S - plan.T)  # the query's own key position
  open_CQ = jnp.ones((plan.C, plan.Q), jnp.bool_)
  if plan.keys_padded:
    open_CQ = open_CQ & (key_C1 < plan.S)
  if plan.is_causal:
    open_CQ = open_CQ & (key_C1 <= p_1Q)
  if plan.window is not None:
    open_CQ = open_CQ & (key_C1 > p_1Q - plan.window)
    if not plan.is_causal:
      open_CQ = open_CQ & (key_C1 < p_1Q + plan.window)
  G, Q, C = plan.G, plan.Q, plan.C
  if transposed:
    open_ = jnp.broadcast_to(open_CQ[:, None, :], (C, G, Q)).reshape(1, C, G * Q)
  else:
    open_ = jnp.broadcast_to(open_CQ.T[None], (G, Q, C)).reshape(1, G * Q, C)
  if mask is not None:
    block = rows_block(mask, i, j, plan, transposed=False)
    open_ = open_ & (jnp.swapaxes(block, -1, -2) if transposed else block)
  return open_


def bmm(a_ZMX, b_ZXN):
  """float32 [Z, M, N] = a b, batched over Z.

  Callers lay operands out as XLA's CPU dot wants them, [Z, M, contract] times
  [Z, contract, N], so no [R, C]-sized operand is ever transposed.
  """
  return lax.dot_general(
    a_ZMX, b_ZXN, (((2,), (1,)), ((0,), (0,))), preferred_element_type=jnp.float32
  )


def scaled_queries(q_IZRH, scale, plan: Plan):
  """q * scale when the plan folds the scale into the queries (float32), else q."""
  return q_IZRH * scale if plan.prescaled else q_IZRH


def add_block(acc_bKsGt, dsT_ZCR, i, j, plan: Plan):
  """acc[block (i, j)] += dS^T, summed over the axes where acc broadcasts (size 1)."""
  dsT_BKCGQ = dsT_ZCR.reshape(plan.B, plan.K, plan.C, plan.G, plan.Q)
  axes = tuple(a for a, size in enumerate(acc_bKsGt.shape) if size == 1)
  ds = jnp.sum(dsT_BKCGQ, axis=axes, keepdims=True)
  return lax.dynamic_update_slice(
    acc_bKsGt,
    take_block(acc_bKsGt, i, j, plan, t_axis=4, s_axis=2) + ds,
    block_start(acc_bKsGt, i, j, plan, t_axis=4, s_axis=2),
  )


def keep_block(keys_B, i, j, plan: Plan, *, transposed: bool):
  """Dropout's keep-mask of block (i, j) as bool [Z, R, C] (or [Z, C, R] when transposed).

  Drawn afresh from the per-sequence keys (tfmr_jax.ops.dropout), the same bits in the
  forward and the backward; never stored.
  """
  B, K, G, Q, C = plan.B, plan.K, plan.G, plan.Q, plan.C
  keep_BNQC = keep_block_BNQC(keys_B, i, j, N=K * G, Q=Q, C=C, rate=plan.dropout_rate)
  keep_BKGQC = keep_BNQC.reshape(B, K, G, Q, C)
  if transposed:
    return keep_BKGQC.transpose(0, 1, 4, 2, 3).reshape(B * K, C, G * Q)
  return keep_BKGQC.reshape(B * K, G * Q, C)
