"""The online-softmax forward of tiled attention.

Dimension key: I query blocks, J key blocks, Z = B * K problems, R = G * Q query rows
of a block, C key-block length, H head dim; b, t, s axes that may be 1.

  for each block of Q queries:               (lax.map over I blocks)
    m = -big, l = 0, acc = 0                  running max, sum, weighted values
    for each block of C keys it may see:      (loops bounded per query block)
      s = q k^T * scale + bias                [R, C] float32
      m' = max(m, rowmax s);  p = exp(s - m')
      l = l e^(m - m') + rowsum p;  acc = acc e^(m - m') + p v;  m = m'
    out = acc / l,   lse = m + log l          lse is saved for the backward

With dropout, l sums the undropped p (the softmax's normalizer) while acc sums the
dropped ones, p * keep / (1 - rate): out = (keep * P / (1 - rate)) v, P the softmax.
"""

import jax
import jax.numpy as jnp
from jax import lax

from tfmr_jax.ops.guards import MASKED_LOGIT
from tfmr_jax.ops.tiled.blocks import bmm, keep_block, open_block, rows_block, scaled_queries
from tfmr_jax.ops.tiled.plan import Plan, block_kinds_IJ, sweep

# lse of a query row with no visible key: exp(s - lse) underflows to 0 for every s.
EMPTY_ROW_LSE = -MASKED_LOGIT


def forward(plan: Plan, q_IZRH, k_JZCH, v_JZCH, scale, mask_bKGts, bias_bKGts, keys_B=None):
  """Online-softmax forward. Returns (out_IZRH float32, lse_I2ZR float32).

  keys_B: per-sequence dropout keys (tfmr_jax.ops.dropout.sequence_keys) when
  plan.dropout_rate > 0, else None.

  lse_I2ZR[:, 0] is each row's max logit m (EMPTY_ROW_LSE for a row with no open key),
  lse_I2ZR[:, 1] is log l, l = sum(exp(s - m)): the log-sum-exp is their sum.
  """
  _, Z, R, H = q_IZRH.shape
  kinds_IJ, start_I, stop_I = block_kinds_IJ(plan, mask_bKGts)
  kT_JZHC = jnp.swapaxes(k_JZCH, -1, -2)
  qs_IZRH = scaled_queries(q_IZRH, scale, plan)

  def visit(i, j, qs_ZRH, carry, *, masked):
    m_ZR, l_ZR, acc_ZRH = carry
    s_ZRC = bmm(qs_ZRH, kT_JZHC[j])
    if not plan.prescaled:
      s_ZRC = s_ZRC * scale
    if bias_bKGts is not None:
      s_ZRC = s_ZRC + rows_block(bias_bKGts, i, j, plan, transposed=False)
    if masked:
      open_ZRC = open_block(i, j, plan, mask_bKGts, transposed=False)
      s_ZRC = jnp.where(open_ZRC, s_ZRC, MASKED_LOGIT)
    m_new_ZR = jnp.maximum(m_ZR, jnp.max(s_ZRC, axis=-1))
    p_ZRC = jnp.exp(s_ZRC - m_new_ZR[..., None])
    if masked and (mask_bKGts is not None or plan.window is not None):
      # A row with no open key so far has m' = MASKED_LOGIT, and exp(0) = 1 at its closed
      # keys. Without a mask array or a window that cannot happen: key 0, in the first
      # block every row visits, is open to every row (causal or not), so m' is a real
      # logit from then. A window closes key 0 (and whole blocks) to later rows.
      p_ZRC = jnp.where(open_ZRC, p_ZRC, 0.0)
    alpha_ZR = jnp.exp(m_ZR - m_new_ZR)
    l_ZR = l_ZR * alpha_ZR + jnp.sum(p_ZRC, axis=-1)  # undropped: the softmax's sum
    v_ZCH = v_JZCH[j]
    if plan.dropout_rate > 0:
      keep_ZRC = keep_block(keys_B, i, j, plan, transposed=False)
      p_ZRC = jnp.where(keep_ZRC, p_ZRC * jnp.float32(1.0 / (1.0 - plan.dropout_rate)), 0.0)
    pv_ZRH = bmm(p_ZRC.astype(v_ZCH.dtype), v_ZCH)
    return m_new_ZR, l_ZR, acc_ZRH * alpha_ZR[..., None] + pv_ZRH

  def query_block(i, qs_ZRH):
    init = (
      jnp.full((Z, R), MASKED_LOGIT, jnp.float32),
      jnp.zeros((Z, R), jnp.float32),
      jnp.zeros((Z, R, H), jnp.float32),
    )
    m_ZR, l_ZR, acc_ZRH = sweep(
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
    # lse as two numbers, m and log l: with huge logits (|m| ~ 1e10, an ulp ~ 1e3) m +
    # log l rounds back to m, and the backward's exp(s - lse) would lose l (ties).
    m_ZR = jnp.where(seen_ZR, m_ZR, EMPTY_ROW_LSE)
    return out_ZRH, jnp.stack([m_ZR, jnp.log(l_ZR)])

  if plan.I == 1:  # one query block: no loop, so short sequences pay no loop overhead
    return jax.tree.map(lambda x: x[None], query_block(0, qs_IZRH[0]))
  return lax.map(lambda args: query_block(*args), (jnp.arange(plan.I), qs_IZRH))
