"""tj.attention(..., window=W): sliding-window attention, the same function as the band mask.

Query t stands at key position p = t + (S - T) (bottom-right, as is_causal aligns it).
With is_causal it sees keys p - W < s <= p; without, |p - s| < W. Every implementation
must give what the explicit mask `sliding_window_mask(T, S, window=W, causal=...)` gives,
and what a NumPy oracle gives, outputs and gradients; the tiled kernel must skip every
block outside the band.
"""

import re

import jax
import jax.extend
import jax.numpy as jnp
import numpy as np
import pytest

import tfmr_jax as tj
from tests.conftest import random_qkv
from tests.ops.oracle import jnp_attention, np_attention, np_window
from tfmr_jax.ops.tiled.plan import Plan, static_kinds_IJ
from tfmr_jax.ops.tiled_attention import tiled_attention

B, N, H = 2, 6, 7
# name -> (T, S, K, window). Prime-ish, T != S, GQA (K = 3) and MHA (K = 6); a window of
# one key; one wider than T and S (it must mask nothing); one where T > S, so that
# without the causal rule the first rows see no key at all.
CASES = {
  "square-gqa": (13, 13, 3, 4),
  "wide-mha": (7, 19, 6, 5),
  "one-key": (11, 11, 6, 1),
  "wider-than-T": (11, 13, 3, 29),
  "tall": (17, 11, 3, 3),
}
# What the band leaves of "tall" without the causal rule: p = t - 6, |p - s| < 3, so
# rows t = 0, 1, 2, 3 (p < -2) see no key.
TALL_EMPTY = 4
IMPLEMENTATIONS = ["reference", "tiled", "tiled-small-blocks", "xla", None]
QUICK_WIDE = {("tiled-small-blocks", True)}


def attend(implementation, q, k, v, **kw):
  """tj.attention by name; "tiled-small-blocks" runs the kernel with 4 x 5 blocks, so that
  these short sequences have blocks to skip and blocks the band cuts."""
  if implementation == "tiled-small-blocks":
    return tiled_attention(q, k, v, q_block=4, kv_block=5, **kw)
  return tj.attention(q, k, v, implementation=implementation, **kw)


# Each (implementation, case, causal) compiles its own forward and backward; the default
# run keeps one of each path (the tiled kernel with blocks to skip, the reference, jax.nn
# with its own window and with the band as a mask; causal and not; T != S; GQA and MHA;
# window 1; empty rows; a window wider than T in the test after), the rest run with -m slow.
QUICK = {
  ("tiled-small-blocks", "square-gqa", True),
  ("tiled-small-blocks", "tall", False),
  ("reference", "one-key", False),
  ("xla", "square-gqa", True),  # T == S: jax.nn's own local_window_size
  ("xla", "tall", False),  # the band as a mask
}


def equivalence_params():
  params = []
  for implementation in IMPLEMENTATIONS:
    for causal in (True, False):
      for case, (T, S, _, _) in CASES.items():
        if causal and S < T:  # the causal rule needs S >= T
          continue
        quick = (implementation, case, causal) in QUICK
        marks = () if quick else (pytest.mark.slow,)
        params.append(pytest.param(implementation, case, causal, marks=marks))
  return params


def test_sliding_window_mask_matches_numpy():
  for T, S in [(1, 1), (5, 9), (9, 5)]:
    for window in (1, 3, 20):
      for causal in (True, False):
        if causal and S < T:
          with pytest.raises(ValueError, match="needs S >= T"):
            tj.sliding_window_mask(T, S, window=window, causal=causal)
          continue
        m = tj.sliding_window_mask(T, S, window=window, causal=causal)
        assert m.shape == (1, 1, T, S) and m.dtype == jnp.bool_
        np.testing.assert_array_equal(m[0, 0], np_window(T, S, window, causal))


def test_the_oracle_means_what_the_docstring_says():
  # Square, causal, window 2: the diagonal and the one below it; not causal: tridiagonal.
  eye = np.eye(6, dtype=bool)
  below = np.eye(6, k=-1, dtype=bool)
  np.testing.assert_array_equal(np_window(6, 6, 2, True), eye | below)
  np.testing.assert_array_equal(np_window(6, 6, 2, False), eye | below | below.T)
  # A KV cache: one query, the last of 9 keys, window 3: keys 6, 7, 8.
  np.testing.assert_array_equal(np_window(1, 9, 3, True)[0], np.arange(9) >= 6)


@pytest.mark.parametrize("implementation,case,causal", equivalence_params())
def test_window_equals_the_band_mask_outputs_and_gradients(implementation, case, causal):
  """Outputs against NumPy; gradients against autodiff of plain jnp attention under the
  explicit band mask (tests/ops/oracle.py), for a random output cotangent."""
  T, S, K, W = CASES[case]
  q, k, v = random_qkv(B=B, T=T, S=S, N=N, K=K, H=H, seed=1)
  allowed_TS = np_window(T, S, W, causal)
  band = jnp.asarray(allowed_TS)[None, None]
  cot = jnp.asarray(np.random.default_rng(2).normal(size=(B, T, N, H)), jnp.float32)
  only_empty = jnp.zeros_like(cot).at[:, :TALL_EMPTY].set(1.0)

  @jax.jit
  def run(q, k, v):
    out, vjp = jax.vjp(
      lambda q, k, v: attend(implementation, q, k, v, is_causal=causal, window=W), q, k, v
    )
    _, vjp_oracle = jax.vjp(lambda q, k, v: jnp_attention(q, k, v, band), q, k, v)
    return out, vjp(cot), vjp_oracle(cot), vjp(only_empty)

  out, grads, grads_oracle, grads_of_first_rows = run(q, k, v)
  assert out.shape == (B, T, N, H) and out.dtype == jnp.float32
  np.testing.assert_allclose(out, np_attention(q, k, v, allowed_TS), atol=1e-5, rtol=1e-5)
  for name, got, want in zip("qkv", grads, grads_oracle, strict=True):
    np.testing.assert_allclose(got, want, atol=5e-5, rtol=5e-5, err_msg=f"d{name}")
  if case == "tall":  # rows that see no key: zeros, and no gradient flows through them
    assert np.all(np.asarray(out[:, :TALL_EMPTY]) == 0.0)
    assert np.all(np.abs(np.asarray(out[:, TALL_EMPTY:])).sum(-1) > 0.0)
    for g in grads_of_first_rows:
      assert np.all(np.asarray(g) == 0.0)


@pytest.mark.slow
@pytest.mark.parametrize("implementation", ["tiled-small-blocks", "xla"])
def test_window_equals_the_same_implementation_with_the_mask(implementation):
  """The flag and the explicit mask through one implementation: the same numbers."""
  T, S, K, W = CASES["wide-mha"]
  q, k, v = random_qkv(B=B, T=T, S=S, N=N, K=K, H=H, seed=7)
  band = tj.sliding_window_mask(T, S, window=W, causal=True)
  out = jax.jit(lambda q, k, v: attend(implementation, q, k, v, is_causal=True, window=W))
  masked = jax.jit(lambda q, k, v: attend(implementation, q, k, v, mask=band))
  np.testing.assert_allclose(out(q, k, v), masked(q, k, v), atol=1e-6, rtol=1e-6)


@pytest.mark.parametrize(
  "implementation,causal",
  [
    pytest.param(i, c, marks=() if (i, c) in QUICK_WIDE else (pytest.mark.slow,))
    for i in IMPLEMENTATIONS
    for c in (True, False)
  ],
)
def test_window_of_at_least_T_is_no_window(implementation, causal):
  T = S = 13
  q, k, v = random_qkv(B=B, T=T, S=S, N=N, K=3, H=H, seed=3)
  plain = jax.jit(lambda q, k, v: attend(implementation, q, k, v, is_causal=causal))(q, k, v)
  for W in (T, 10**12):
    out = jax.jit(lambda q, k, v, W=W: attend(implementation, q, k, v, is_causal=causal, window=W))(
      q, k, v
    )
    np.testing.assert_allclose(out, plain, atol=1e-6, rtol=1e-6, err_msg=f"window={W}")


@pytest.mark.parametrize(
  "implementation",
  [
    pytest.param("reference", marks=pytest.mark.slow),
    "tiled",
    pytest.param("xla", marks=pytest.mark.slow),
  ],
)
def test_window_combines_with_a_padding_mask(implementation):
  T, S, W = 11, 13, 4
  q, k, v = random_qkv(B=B, T=T, S=S, N=N, K=3, H=H, seed=4)
  valid_BS = np.ones((B, S), bool)
  valid_BS[1, :6] = False  # left padding: with the window, rows 0 and 1 see nothing
  padding = valid_BS[:, None, None, :]
  allowed = np_window(T, S, W, True)[None, None] & padding
  fn = jax.jit(
    lambda q, k, v: tj.attention(
      q, k, v, mask=jnp.asarray(padding), is_causal=True, window=W, implementation=implementation
    )
  )
  out = fn(q, k, v)
  np.testing.assert_allclose(out, np_attention(q, k, v, allowed), atol=1e-5, rtol=1e-5)
  assert np.all(np.asarray(out[1, :2]) == 0.0)


@pytest.mark.parametrize("causal", [True, pytest.param(False, marks=pytest.mark.slow)])
def test_weights_apply_the_window(causal):
  T, S, W = 7, 19, 5
  q, k, _ = random_qkv(B=B, T=T, S=S, N=N, K=3, H=H, seed=5)
  w = np.asarray(tj.attention_weights(q, k, is_causal=causal, window=W))
  allowed = np.broadcast_to(np_window(T, S, W, causal), w.shape)
  assert np.all(w[~allowed] == 0.0)
  np.testing.assert_allclose(w.sum(-1), 1.0, atol=1e-6)
  band = tj.sliding_window_mask(T, S, window=W, causal=causal)
  np.testing.assert_array_equal(w, tj.attention_weights(q, k, mask=band))


@pytest.mark.parametrize(
  "T,S,Q,C,W,causal",
  [
    (16, 16, 4, 4, 4, True),
    (13, 17, 4, 5, 3, True),
    (13, 17, 4, 5, 6, False),
    (17, 11, 3, 4, 2, False),
    (5, 23, 2, 3, 7, True),
    (16, 16, 4, 4, 1, False),
  ],
)
def test_window_block_plan_matches_numpy(T, S, Q, C, W, causal):
  plan = Plan(T=T, S=S, Q=Q, C=C, is_causal=causal, window=W)
  allowed = np.zeros((plan.I * Q, plan.J * C), bool)
  allowed[:T, :S] = np_window(T, S, W, causal)
  allowed[T:, :] = allowed[T - 1 : T, :]  # padded query rows are discarded: not counted
  blocks = allowed.reshape(plan.I, Q, plan.J, C)
  expected = np.where(blocks.all(axis=(1, 3)), 1, np.where(blocks.any(axis=(1, 3)), 2, 0))
  np.testing.assert_array_equal(static_kinds_IJ(plan), expected)


def test_visited_blocks_grow_as_T_times_window():
  """At the default blocks and W = 256, each query block visits a bounded number of key
  blocks, so the work is linear in T; the causal rule alone visits about half of all."""
  from tfmr_jax.ops.tiled_attention import DEFAULT_Q_BLOCK

  Q, C, W = DEFAULT_Q_BLOCK, 256, 256
  per_query_block = -(-(Q + W - 1) // C) + 1  # the band of a query block spans this many
  for T in (2048, 8192, 32768):
    window = Plan(T=T, S=T, Q=Q, C=C, is_causal=True, window=W)
    causal = Plan(T=T, S=T, Q=Q, C=C, is_causal=True)
    visited = int(np.sum(static_kinds_IJ(window) != 0))
    assert visited <= per_query_block * window.I
    assert np.sum(static_kinds_IJ(causal) != 0) >= window.I * window.J / 2


def test_tiled_skips_blocks_outside_the_band_forward_and_backward():
  """Keys 0..7 hold NaN. With T = S = 16, blocks of 4 and W = 4, query block 3 (queries
  12..15, keys 9..15 in their windows) visits key blocks 2 and 3 only: its rows, and
  their dq, stay finite and right. The reference multiplies NaN by zero probability."""
  T = S = 16
  q, k, v = random_qkv(B=1, T=T, S=S, N=2, K=1, H=5, seed=6)
  k_nan, v_nan = k.at[:, :8].set(jnp.nan), v.at[:, :8].set(jnp.nan)

  def tiled(q, k, v):
    return tiled_attention(q, k, v, is_causal=True, window=4, q_block=4, kv_block=4)

  only_last_block = jnp.zeros(q.shape).at[:, 12:].set(1.0)

  @jax.jit
  def out_and_dq(q, k, v):
    out, vjp = jax.vjp(lambda q: tiled(q, k, v), q)
    return out, vjp(only_last_block)[0]

  out, dq = out_and_dq(q, k_nan, v_nan)
  np.testing.assert_allclose(
    out[:, 12:], np_attention(q, k, v, np_window(T, S, 4, True))[:, 12:], atol=1e-5, rtol=1e-5
  )
  _, dq_clean = out_and_dq(q, k, v)
  assert np.all(np.isfinite(np.asarray(dq[:, 12:])))
  np.testing.assert_allclose(dq[:, 12:], dq_clean[:, 12:], atol=1e-6, rtol=1e-6)
  ref = tj.attention(q, k_nan, v_nan, is_causal=True, window=4, implementation="reference")
  assert not np.all(np.isfinite(np.asarray(ref[:, 12:])))


def test_tiled_window_builds_no_query_by_key_mask():
  T = S = 1024
  x = jax.ShapeDtypeStruct((1, T, 1, 8), jnp.float32)
  found = set()

  def walk(jaxpr):
    for eqn in jaxpr.eqns:
      for var in eqn.outvars:
        found.add(tuple(getattr(var.aval, "shape", ())))
      for sub in jax.extend.core.jaxprs_in_params(eqn.params):
        walk(sub)

  for implementation in ("tiled", None):
    grad = jax.grad(
      lambda q, k, v, i=implementation: jnp.sum(
        tj.attention(q, k, v, is_causal=True, window=128, implementation=i)
      ),
      argnums=(0, 1, 2),
    )
    walk(jax.make_jaxpr(grad)(x, x, x).jaxpr)
  assert not any(shape[-2:] == (T, S) for shape in found if len(shape) >= 2)


@pytest.mark.parametrize("window", [0, -3, True, False, 2.5, "3", np.bool_(True), np.float32(4)])
def test_bad_window_is_one_clear_error_before_tracing(window):
  q, k, v = random_qkv(B=1, T=5, S=7, N=2, K=1, H=3)
  message = rf"window must be None or a positive int .*got {re.escape(repr(window))}"
  calls = [
    lambda: tj.attention(q, k, v, window=window),
    lambda: tj.attention(q, k, v, is_causal=True, window=window, implementation="tiled"),
    lambda: tj.attention(q, k, v, window=window, implementation="xla"),
    lambda: tj.attention_weights(q, k, window=window),
    lambda: tiled_attention(q, k, v, window=window),
    lambda: tj.sliding_window_mask(5, 7, window=window),
    lambda: jax.jit(lambda q: tj.attention(q, k, v, window=window))(q),
  ]
  for call in calls:
    with pytest.raises(ValueError, match=message):
      call()


def test_a_traced_window_is_refused():
  q, k, v = random_qkv(B=1, T=5, S=7, N=2, K=1, H=3)
  with pytest.raises(ValueError, match="window must be None or a positive int"):
    jax.jit(lambda w: tj.attention(q, k, v, window=w))(3)
