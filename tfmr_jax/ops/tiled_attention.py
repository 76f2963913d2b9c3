"""Tiled attention: online softmax over blocks, O(T) memory, portable JAX.

Dimension key:
  B batch   T query length   S key/value length   N query heads   K kv heads
  G = N // K   H head dim   Q query-block length   C key-block length
  I number of query blocks   J number of key blocks
  Z = B * K independent problems (one per kv head)   R = G * Q query rows of a block

The same function as `tfmr_jax.ops.attention` (same arguments, same masks, same
fully-masked-row rule), computed without ever holding the [T, S] logits: each block
of Q queries runs an online softmax over the blocks of C keys it may see
(tfmr_jax.ops.tiled.forward), keeping a running max, sum and weighted values.

Blocks that a mask rules out entirely are never visited; blocks it leaves fully
open run without any masking work; only the blocks it cuts (the causal diagonal,
the padded tail) pay for `where` (tfmr_jax.ops.tiled.plan). With `is_causal=True`
that structure is known statically and no [T, S] mask exists anywhere, so memory is
O(T) end to end. So is a sliding window (`window=W`): only the blocks that meet the
band are visited, and the work grows as T * W instead of T * S.

The backward is written by hand (jax.custom_vjp, tfmr_jax.ops.tiled.backward): it
recomputes each block's probabilities from the saved log-sum-exp, so training memory
is O(T) too. This module holds the public wrapper: checks, padding to whole blocks,
batch chunking and the custom_vjp.
"""

import functools

import jax
import jax.numpy as jnp
from jax import lax

from tfmr_jax.ops.dropout import sequence_keys
from tfmr_jax.ops.guards import (
  as_rank4,
  check_attention_args,
  check_dropout,
  check_positive,
  grouped,
)
from tfmr_jax.ops.tiled.backward import backward
from tfmr_jax.ops.tiled.forward import forward
from tfmr_jax.ops.tiled.plan import Plan, block_length

# Default block lengths, chosen with experiments/bench_attention.py on 2 CPU cores (see
# README): 512 queries against 256 keys (smaller blocks leave the second core idle, larger
# ones spill the caches); a short query block (decoding, T = 1) takes key blocks long
# enough for Q * C = 512 * 256 logits, instead of many tiny ones.
DEFAULT_Q_BLOCK = 512
DEFAULT_BLOCK_LOGITS = 512 * 256

# A pass over one block holds B N Q C logits; past this many (B=1, N=8 at the default
# blocks) the batch runs in chunks of sequences, one chunk after the other, so the logits
# of a pass stay cache-sized. Chosen with experiments/bench_attention.py; its timings are
# in experiments/results/bench_attention.md and the README's performance section.
MAX_PASS_LOGITS = 8 * DEFAULT_BLOCK_LOGITS


@functools.partial(jax.custom_vjp, nondiff_argnums=(0,))
def _tiled_core(plan, q_IZRH, k_JZCH, v_JZCH, scale, mask_bKGts, bias_bKGts, keys_B):
  return forward(plan, q_IZRH, k_JZCH, v_JZCH, scale, mask_bKGts, bias_bKGts, keys_B)[0]


def _tiled_core_fwd(plan, q_IZRH, k_JZCH, v_JZCH, scale, mask_bKGts, bias_bKGts, keys_B):
  out_IZRH, lse_I2ZR = forward(plan, q_IZRH, k_JZCH, v_JZCH, scale, mask_bKGts, bias_bKGts, keys_B)
  res = (q_IZRH, k_JZCH, v_JZCH, scale, mask_bKGts, bias_bKGts, keys_B, out_IZRH, lse_I2ZR)
  return out_IZRH, res


_tiled_core.defvjp(_tiled_core_fwd, backward)


def _pad_axis(x, axis: int, length: int, value):
  """Pad axis `axis` of x at the end up to `length` with `value` (no-op if already there)."""
  extra = length - x.shape[axis]
  if extra == 0:
    return x
  widths = [(0, 0)] * x.ndim
  widths[axis] = (0, extra)
  return jnp.pad(x, widths, constant_values=value)


def _as_bnts(x, plan: Plan, *, pad_queries, pad_keys):
  """A broadcastable [.., N, T, S] array as rank 4 with its T and S axes padded to blocks."""
  x = as_rank4(x)
  if x.shape[2] > 1:
    x = _pad_axis(x, 2, plan.I * plan.Q, pad_queries)
  if x.shape[3] > 1:
    x = _pad_axis(x, 3, plan.J * plan.C, pad_keys)
  return x


def block_lengths(T: int, S: int, *, q_block=None, kv_block=None) -> tuple[int, int]:
  """(Q, C): the query and key block lengths tiled attention uses for T queries, S keys.

  Defaults: DEFAULT_Q_BLOCK queries, DEFAULT_BLOCK_LOGITS / Q keys (at least 256), each
  evened out so that padding stays small. Dropout's keep-mask is drawn on this grid.
  """
  Q = block_length(T, q_block or DEFAULT_Q_BLOCK)
  C = block_length(S, kv_block or max(256, DEFAULT_BLOCK_LOGITS // Q))
  return Q, C


def tiled_attention(
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
  q_block: int | None = None,
  kv_block: int | None = None,
):
  """softmax(q k^T * scale + bias) v, tiled. Returns [B, T, N, H] in q's dtype.

  Same arguments, masks and fully-masked-row rule as `tfmr_jax.ops.attention`, plus:
    is_causal: apply the causal rule (query t sees key s <= t + S - T) from its
      structure: no [T, S] mask is built, blocks above the diagonal are skipped.
      Combines (AND) with `mask` if both are given.
    window: sliding window, as `tfmr_jax.ops.attention` defines it, from its
      structure: no [T, S] mask is built, blocks outside the band are skipped
      (forward and backward), so the cost grows as T * window.
    dropout_rate, dropout_rng: attention dropout (tfmr_jax.ops.dropout). Each visited
      block draws its keep-mask from the key and its block indices, in the forward and
      again in the backward; no mask is stored. The same entries as the reference path
      drops with `keep_mask(dropout_rng, ..., blocks=block_lengths(T, S, ...))`.
    q_block, kv_block: block lengths (default DEFAULT_Q_BLOCK queries and
      DEFAULT_BLOCK_LOGITS / Q keys, at least 256); they need not divide T or S.

  Memory is O(B N T H) plus whatever `mask` and `bias` occupy; gradients (including
  with respect to `bias` and `scale`) come from a hand-written backward.
  """
  B, T, S, N, K, H = check_attention_args(
    q_BTNH, k_BSKH, v_BSKH, mask, bias, scale=scale, is_causal=is_causal, window=window
  )
  for name, value in (("q_block", q_block), ("kv_block", kv_block)):
    if value is not None:
      check_positive(name, value)
  check_dropout(dropout_rate, dropout_rng)
  if T == 0 or S == 0:  # no query, or no key to attend: every row is empty, so zeros
    return jnp.zeros(q_BTNH.shape, q_BTNH.dtype)
  Q, C = block_lengths(T, S, q_block=q_block, kv_block=kv_block)
  dropout_rate = float(dropout_rate)
  keys_B = sequence_keys(dropout_rng, B) if dropout_rate > 0 else None
  options = dict(
    mask=mask,
    bias=bias,
    scale=scale,
    is_causal=bool(is_causal),
    window=None if window is None else min(int(window), max(T, S)),
    dropout_rate=dropout_rate,
    keys_B=keys_B,
    Q=Q,
    C=C,
  )
  chunk = _batch_chunk(B, N, Q, C)
  if chunk < B:
    return _in_batch_chunks(chunk, q_BTNH, k_BSKH, v_BSKH, **options)
  return _tiled(q_BTNH, k_BSKH, v_BSKH, **options)


def _tiled(
  q_BTNH, k_BSKH, v_BSKH, *, mask, bias, scale, is_causal, window, dropout_rate, keys_B, Q, C
):
  """The checked problem, blocked and run through the custom_vjp core."""
  B, T, N, H = q_BTNH.shape
  S, K = k_BSKH.shape[1:3]
  G = N // K
  plan = Plan(
    T=T,
    S=S,
    Q=Q,
    C=C,
    is_causal=is_causal,
    window=window,
    dropout_rate=dropout_rate,
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
    mask_bKGts = grouped(_as_bnts(mask, plan, pad_queries=True, pad_keys=False), K, G)
  if bias is not None:
    bias_f32 = jnp.asarray(bias, jnp.float32)
    bias_bKGts = grouped(_as_bnts(bias_f32, plan, pad_queries=0.0, pad_keys=0.0), K, G)
  out_IZRH = _tiled_core(plan, q_IZRH, k_JZCH, v_JZCH, scale, mask_bKGts, bias_bKGts, keys_B)
  out_IBKGQH = out_IZRH.reshape(I, B, K, G, Q, H)
  out_BTNH = out_IBKGQH.transpose(1, 0, 4, 2, 3, 5).reshape(B, I * Q, N, H)[:, :T]
  return out_BTNH.astype(q_BTNH.dtype)


def _batch_chunk(B: int, N: int, Q: int, C: int) -> int:
  """The largest divisor of B whose block pass holds at most MAX_PASS_LOGITS logits (>= 1)."""
  limit = max(1, MAX_PASS_LOGITS // (N * Q * C))
  return max(d for d in range(1, min(B, limit) + 1) if B % d == 0)


def _in_batch_chunks(chunk: int, q_BTNH, k_BSKH, v_BSKH, *, mask, bias, keys_B, **options):
  """_tiled over B / chunk groups of `chunk` sequences in turn (lax.map).

  mask and bias are split with the batch where they have one, else shared; the
  per-sequence dropout keys always are.
  """
  B = q_BTNH.shape[0]

  def split(x):
    return x.reshape((B // chunk, chunk) + x.shape[1:])

  mask, bias = as_rank4(mask), as_rank4(bias)
  named = (("mask", mask), ("bias", bias), ("keys_B", keys_B))
  per_sequence = {name: x for name, x in named if x is not None and x.shape[0] == B}
  shared = {name: x for name, x in named if name not in per_sequence}

  def run(xs):
    q, k, v, extra = xs
    return _tiled(q, k, v, **shared, **extra, **options)

  xs = (split(q_BTNH), split(k_BSKH), split(v_BSKH), {n: split(x) for n, x in per_sequence.items()})
  out = lax.map(run, xs)
  return out.reshape((B,) + out.shape[2:])


__all__ = [
  "DEFAULT_BLOCK_LOGITS",
  "DEFAULT_Q_BLOCK",
  "MAX_PASS_LOGITS",
  "block_lengths",
  "tiled_attention",
]
