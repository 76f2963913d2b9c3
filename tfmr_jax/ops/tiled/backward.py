"""The hand-written backward of tiled attention.

Dimension key: I query blocks, J key blocks, Z = B * K problems, R = G * Q query rows
of a block, C key-block length, H head dim; b, t, s axes that may be 1.

It recomputes each block's probabilities from the saved row max m and log l (the lse
in two parts), p = exp((s - m) - log l), with the forward's own matmul for s, so that
huge logits (q, k scaled by 1e5) give the reference's gradients, not inf or NaN; and
forms dV += p^T dO, dP = dO V^T, dS = p (dP - rowsum(dO * O)), dQ += dS K,
dK += dS^T Q with matmuls, so training memory is O(T) too. Accumulation is float32
whatever the inputs.

With dropout (keep mask M, d = 1 / (1 - rate), out = (M d P) V): dV += (M d p)^T dO and
dP = M d (dO V^T); rowsum(dO * O) is still the Jacobian's diagonal term, O being the
dropped output. M is drawn again from the same per-block keys, never stored.
"""

import jax.numpy as jnp
from jax import lax

from tfmr_jax.ops.guards import MASKED_LOGIT
from tfmr_jax.ops.tiled.blocks import (
  add_block,
  bmm,
  keep_block,
  open_block,
  rows_block,
  scaled_queries,
)
from tfmr_jax.ops.tiled.plan import Plan, block_kinds_IJ, sweep


def backward(plan: Plan, res, dout_IZRH):
  """Hand-written backward: recompute p from lse, accumulate dQ, dK, dV, dscale, dbias.

  Blocks are laid out transposed, [Z, C, R], so that every matmul reads its
  [C, R]-sized operand in place: dV = p^T dO, dK = dS^T Q and dQ^T = K^T dS^T.
  """
  q_IZRH, k_JZCH, v_JZCH, scale, mask_bKGts, bias_bKGts, keys_B, out_IZRH, lse_I2ZR = res
  _, Z, R, H = q_IZRH.shape
  # A constant cotangent (the gradient of sum(out)) reaches us as a broadcast; XLA's CPU
  # backend (jax 0.10.2) then computed dQ and dK from uninitialised memory for a single
  # 128 x 128 block. Materialising it first costs one copy of dO and avoids that.
  dout_IZRH = lax.optimization_barrier(dout_IZRH)
  kinds_IJ, start_I, stop_I = block_kinds_IJ(plan, mask_bKGts)
  kT_JZHC = jnp.swapaxes(k_JZCH, -1, -2)
  qs_IZRH = scaled_queries(q_IZRH, scale, plan)
  qsT_IZHR = jnp.swapaxes(qs_IZRH, -1, -2)
  doutT_IZHR = jnp.swapaxes(dout_IZRH, -1, -2)
  bias_bKsGt = None if bias_bKGts is None else bias_bKGts.transpose(0, 1, 4, 2, 3)
  # rowsum(dO * O): the softmax Jacobian's diagonal term, one number per query.
  delta_IZR = jnp.sum(dout_IZRH.astype(jnp.float32) * out_IZRH, axis=-1)

  def visit(i, j, row, carry, *, masked):
    qs_ZRH, qsT_ZHR, dout_ZRH, doutT_ZHR, lse_2ZR, delta_ZR = row
    dqT_ZHR, dk_JZCH, dv_JZCH, dbias_bKsGt = carry
    k_ZCH, v_ZCH = k_JZCH[j], v_JZCH[j]
    if plan.prescaled:  # float32: the forward's very matmul, so that s - m is exactly 0
      # at a row's max; with huge logits (|s| ~ 1e10, an ulp ~ 1e3) a differently
      # ordered sum is off by thousands. (XLA's CPU dot lacks this layout in bf16 x bf16.)
      sT_ZCR = jnp.swapaxes(bmm(qs_ZRH, kT_JZHC[j]), -1, -2)
    else:
      sT_ZCR = bmm(k_ZCH, qsT_ZHR)
    if not plan.prescaled:
      sT_ZCR = sT_ZCR * scale
    if bias_bKsGt is not None:
      sT_ZCR = sT_ZCR + rows_block(bias_bKsGt, i, j, plan, transposed=True)
    if masked:
      open_ZCR = open_block(i, j, plan, mask_bKGts, transposed=True)
      sT_ZCR = jnp.where(open_ZCR, sT_ZCR, MASKED_LOGIT)
    # p = exp((s - m) - log l): s - m first, exact near the max whatever the logits' size.
    pT_ZCR = jnp.exp((sT_ZCR - lse_2ZR[0][:, None, :]) - lse_2ZR[1][:, None, :])  # closed: 0
    dpT_ZCR = bmm(v_ZCH, doutT_ZHR)
    kept_pT_ZCR = pT_ZCR
    if plan.dropout_rate > 0:
      keepT_ZCR = keep_block(keys_B, i, j, plan, transposed=True)
      inv_keep = jnp.float32(1.0 / (1.0 - plan.dropout_rate))
      kept_pT_ZCR = jnp.where(keepT_ZCR, pT_ZCR * inv_keep, 0.0)
      dpT_ZCR = jnp.where(keepT_ZCR, dpT_ZCR * inv_keep, 0.0)
    dv_ZCH = bmm(kept_pT_ZCR.astype(dout_ZRH.dtype), dout_ZRH)
    dsT_ZCR = pT_ZCR * (dpT_ZCR - delta_ZR[:, None, :])
    dqT_ZHR = dqT_ZHR + bmm(kT_JZHC[j], dsT_ZCR.astype(k_ZCH.dtype))
    dk_ZCH = bmm(dsT_ZCR.astype(qs_ZRH.dtype), qs_ZRH)
    dk_JZCH = lax.dynamic_update_index_in_dim(dk_JZCH, dk_JZCH[j] + dk_ZCH, j, 0)
    dv_JZCH = lax.dynamic_update_index_in_dim(dv_JZCH, dv_JZCH[j] + dv_ZCH, j, 0)
    if bias_bKsGt is not None:
      dbias_bKsGt = add_block(dbias_bKsGt, dsT_ZCR, i, j, plan)
    return dqT_ZHR, dk_JZCH, dv_JZCH, dbias_bKsGt

  def query_block(carry, xs):
    i, row = xs[0], xs[1:]
    dk_JZCH, dv_JZCH, dbias_bKsGt = carry
    init = (jnp.zeros((Z, H, R), jnp.float32), dk_JZCH, dv_JZCH, dbias_bKsGt)
    dqT_ZHR, dk_JZCH, dv_JZCH, dbias_bKsGt = sweep(
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
  xs = (jnp.arange(plan.I), qs_IZRH, qsT_IZHR, dout_IZRH, doutT_IZHR, lse_I2ZR, delta_IZR)
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
    None,
  )
