"""tj.attention(..., dropout_rate=p, dropout_rng=key): inverted dropout on the probabilities.

The keep-mask is drawn block by block: for sequence b, query block i and key block j,
bernoulli(fold_in(fold_in(fold_in(key, b), i), j), 1 - p, [N, Q, C]). Tests build that
mask here from jax.random directly, compute dropped attention with plain jnp under it,
and hold the tiled kernel (forward and its hand-written backward) and the reference path
to it; the mean over many keys must approach the undropped output within a bound taken
from the number of samples.
"""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import tfmr_jax as tj
from tests.conftest import random_qkv
from tests.ops.oracle import np_attention, np_causal
from tfmr_jax.ops.dropout import keep_mask
from tfmr_jax.ops.implementations import choose_implementation
from tfmr_jax.ops.reference import reference_attention
from tfmr_jax.ops.tiled_attention import tiled_attention

B, T, S, N, H = 2, 13, 17, 6, 7  # prime-sized, T != S
Q, C = 4, 5  # blocks that divide neither T nor S
RATE = 0.3
KEY = jax.random.key(7)


def keep_by_definition(key, *, B, N, T, S, rate, Q, C):
  """bool [B, N, T, S], block by block straight from jax.random (not through tfmr_jax)."""
  I, J = -(-T // Q), -(-S // C)
  keep = np.zeros((B, N, I * Q, J * C), bool)
  for b in range(B):
    for i in range(I):
      for j in range(J):
        block_key = jax.random.fold_in(jax.random.fold_in(jax.random.fold_in(key, b), i), j)
        keep[b, :, i * Q : (i + 1) * Q, j * C : (j + 1) * C] = jax.random.bernoulli(
          block_key, 1.0 - rate, (N, Q, C)
        )
  return keep[:, :, :T, :S]


def dropped_attention(q_BTNH, k_BSKH, v_BSKH, allowed_BNTS, keep_BNTS, rate):
  """Plain jnp: softmax over the allowed keys, times keep / (1 - rate), times v."""
  G = q_BTNH.shape[2] // k_BSKH.shape[2]
  k_BSNH, v_BSNH = (jnp.repeat(x, G, axis=2) for x in (k_BSKH, v_BSKH))
  logits_BNTS = jnp.einsum("BTNH,BSNH->BNTS", q_BTNH, k_BSNH) / np.sqrt(q_BTNH.shape[-1])
  allowed_BNTS = jnp.asarray(allowed_BNTS)
  probs_BNTS = jax.nn.softmax(jnp.where(allowed_BNTS, logits_BNTS, -1e30), axis=-1)
  probs_BNTS = jnp.where(allowed_BNTS, probs_BNTS, 0.0)
  probs_BNTS = probs_BNTS * jnp.asarray(keep_BNTS) / (1.0 - rate)
  return jnp.einsum("BNTS,BSNH->BTNH", probs_BNTS, v_BSNH)


def padding_with_an_empty_sequence():
  """[B, 1, 1, S]: sequence 0 sees 12 keys, sequence 1 none (its rows must stay zero)."""
  return tj.padding_mask(np.array([12, 0]), S)


def test_keep_mask_is_the_per_block_definition_and_keeps_one_minus_the_rate():
  N_, Q_, C_ = 64, 7, 9  # enough entries (B N T S = 28288) to see the keep fraction
  got = keep_mask(KEY, B=B, N=N_, T=T, S=S, rate=RATE, blocks=(Q_, C_))
  assert got.shape == (B, N_, T, S) and got.dtype == jnp.bool_
  want = keep_by_definition(KEY, B=B, N=N_, T=T, S=S, rate=RATE, Q=Q_, C=C_)
  np.testing.assert_array_equal(got, want)
  assert np.any(want[0] != want[1])  # each sequence draws its own
  sigma = np.sqrt(RATE * (1 - RATE) / want.size)  # binomial standard error
  assert abs(want.mean() - (1 - RATE)) < 5 * sigma
  # A raw uint32 key is the typed key's data: the same mask.
  raw = keep_mask(jax.random.key_data(KEY), B=B, N=N_, T=T, S=S, rate=RATE, blocks=(Q_, C_))
  np.testing.assert_array_equal(raw, want)


CASES = {
  # name -> (K, mask, is_causal, window)
  "causal-gqa": (3, None, True, None),
  "padding-mqa": (1, "padding", False, None),
  "window-mha": (6, None, False, 4),
  "causal+padding-gqa": (3, "padding", True, None),
}
QUICK_CASES = ("causal+padding-gqa",)


def case_inputs(name, seed=0):
  K, mask_name, is_causal, window = CASES[name]
  q, k, v = random_qkv(B=B, T=T, S=S, N=N, K=K, H=H, seed=seed)
  mask = padding_with_an_empty_sequence() if mask_name == "padding" else None
  allowed = np.ones((B, N, T, S), bool)
  if mask is not None:
    allowed &= np.asarray(mask)
  if window is not None:
    allowed &= np.asarray(tj.sliding_window_mask(T, S, window=window, causal=is_causal))
  elif is_causal:
    allowed &= np_causal(T, S)
  options = dict(mask=mask, is_causal=is_causal, window=window)
  return (q, k, v), allowed, options


@pytest.mark.parametrize(
  "name", [c if c in QUICK_CASES else pytest.param(c, marks=pytest.mark.slow) for c in CASES]
)
def test_tiled_equals_plain_attention_under_the_same_mask(name):
  """Forward and gradients (q, k, v), for one key, of the tiled kernel (its hand-written
  backward) against autodiff of plain jnp attention under the keep-mask drawn here."""
  (q, k, v), allowed, options = case_inputs(name, seed=1)
  keep = keep_by_definition(KEY, B=B, N=N, T=T, S=S, rate=RATE, Q=Q, C=C)
  cot = jnp.asarray(np.random.default_rng(2).normal(size=(B, T, N, H)), jnp.float32)
  dropout = dict(dropout_rate=RATE, dropout_rng=KEY)

  def tiled(q, k, v):
    return tiled_attention(q, k, v, **options, **dropout, q_block=Q, kv_block=C)

  def plain(q, k, v):
    return dropped_attention(q, k, v, allowed, keep, RATE)

  @jax.jit
  def run(q, k, v):
    results = []
    for fn in (tiled, plain):
      out, vjp = jax.vjp(fn, q, k, v)
      results.append((out, vjp(cot)))
    return results

  (out_t, grads_t), (out_p, grads_p) = run(q, k, v)
  np.testing.assert_allclose(out_t, out_p, atol=2e-6, rtol=2e-6)
  for name_, g_t, g_p in zip("qkv", grads_t, grads_p, strict=True):
    np.testing.assert_allclose(g_t, g_p, atol=1e-5, rtol=1e-5, err_msg=f"d{name_}")
  # The mask does something: the dropped output is not the undropped one.
  assert np.max(np.abs(np.asarray(out_t) - np_attention(q, k, v, allowed))) > 0.1
  if options["mask"] is not None:  # sequence 1 sees no key: zeros, and no gradient
    assert np.all(np.asarray(out_t[1]) == 0.0)
    for g in grads_t:
      assert np.all(np.asarray(g[1]) == 0.0)


@pytest.mark.slow
@pytest.mark.parametrize("name", list(CASES))
def test_reference_gradients_equal_plain_attention_under_the_same_mask(name):
  """The reference path's autodiff under its keep-mask, against plain jnp under the one
  drawn here (the tiled kernel's own gradients are held to the same in the test above)."""
  (q, k, v), allowed, options = case_inputs(name, seed=1)
  keep = keep_by_definition(KEY, B=B, N=N, T=T, S=S, rate=RATE, Q=Q, C=C)
  cot = jnp.asarray(np.random.default_rng(2).normal(size=(B, T, N, H)), jnp.float32)

  def reference(q, k, v):
    return reference_attention(
      q, k, v, **options, dropout_rate=RATE, dropout_rng=KEY, dropout_blocks=(Q, C)
    )

  @jax.jit
  def run(q, k, v):
    out_r, vjp_r = jax.vjp(reference, q, k, v)
    out_p, vjp_p = jax.vjp(lambda q, k, v: dropped_attention(q, k, v, allowed, keep, RATE), q, k, v)
    return out_r, out_p, vjp_r(cot), vjp_p(cot)

  out_r, out_p, grads_r, grads_p = run(q, k, v)
  np.testing.assert_allclose(out_r, out_p, atol=2e-6, rtol=2e-6)
  for name_, g_r, g_p in zip("qkv", grads_r, grads_p, strict=True):
    np.testing.assert_allclose(g_r, g_p, atol=1e-5, rtol=1e-5, err_msg=f"d{name_}")


def test_public_implementations_drop_the_same_entries():
  """tj.attention: "reference" and "tiled" at their default blocks, for one key."""
  (q, k, v), allowed, _ = case_inputs("causal-gqa", seed=3)
  dropout = dict(dropout_rate=RATE, dropout_rng=KEY, is_causal=True)

  @jax.jit
  def run(q, k, v):
    return [
      tj.attention(q, k, v, implementation=implementation, **dropout)
      for implementation in ("reference", "tiled")
    ]

  reference, tiled = run(q, k, v)
  keep = keep_by_definition(KEY, B=B, N=N, T=T, S=S, rate=RATE, Q=T, C=S)  # one block here
  want = dropped_attention(q, k, v, allowed, keep, RATE)
  for got in (reference, tiled):
    np.testing.assert_allclose(got, want, atol=2e-6, rtol=2e-6)


def test_rate_zero_is_no_dropout_exactly():
  (q, k, v), _, options = case_inputs("causal+padding-gqa", seed=4)

  @jax.jit
  def run(q, k, v):
    outs = []
    for implementation in ("reference", "tiled", "xla"):
      plain = tj.attention(q, k, v, **options, implementation=implementation)
      zero = tj.attention(q, k, v, **options, implementation=implementation, dropout_rate=0.0)
      keyed = tj.attention(
        q, k, v, **options, implementation=implementation, dropout_rate=0, dropout_rng=KEY
      )
      outs.append((plain, zero, keyed))
    return outs

  for plain, zero, keyed in run(q, k, v):
    np.testing.assert_array_equal(zero, plain)
    np.testing.assert_array_equal(keyed, plain)


@pytest.mark.parametrize(
  "implementation", ["reference", pytest.param("tiled", marks=pytest.mark.slow)]
)
def test_mean_over_keys_approaches_the_undropped_output(implementation):
  """Over M keys the dropped output's mean is within z standard errors of the undropped
  one, the standard error per entry computed exactly: Var = p / (1 - p) * sum_s P^2 v^2
  (independent keeps), over M. The same bound rejects dropout without the 1 / (1 - p)."""
  B_, T_, S_, N_, H_, M, z = 1, 5, 7, 2, 3, 3000, 5.0
  q, k, v = random_qkv(B=B_, T=T_, S=S_, N=N_, K=1, H=H_, seed=5)
  mask = tj.causal_mask(T_, S_)

  def dropped(key):
    return tj.attention(
      q, k, v, mask=mask, dropout_rate=RATE, dropout_rng=key, implementation=implementation
    )

  outs = np.asarray(jax.jit(jax.vmap(dropped))(jax.random.split(KEY, M)), np.float64)
  undropped = np_attention(q, k, v, mask)
  probs = np.asarray(tj.attention_weights(q, k, mask=mask), np.float64)  # [B, N, T, S]
  v_BSNH = np.repeat(np.asarray(v, np.float64), N_, axis=2)
  # Var of sum_s P_s D_s v_s, D_s = keep_s / (1 - p): sum_s P_s^2 v_s^2 p / (1 - p).
  var = np.einsum("bnts,bsnh->btnh", probs**2, v_BSNH**2) * RATE / (1 - RATE)
  standard_error = np.sqrt(var / M)
  deviation = np.abs(outs.mean(0) - undropped) / standard_error
  assert deviation.max() < z
  # The bound has teeth: dropout without the 1 / (1 - p) scale breaks it.
  assert (np.abs(outs.mean(0) * (1 - RATE) - undropped) / standard_error).max() > 4 * z
  np.testing.assert_allclose(outs.var(0), var, rtol=0.15)  # the variance is as predicted


@pytest.mark.parametrize(
  "implementation", ["tiled", pytest.param("reference", marks=pytest.mark.slow)]
)
def test_masked_positions_stay_masked_with_dropout(implementation):
  """Perturbing masked keys and values moves nothing, dropout or not."""
  (q, k, v), allowed, options = case_inputs("causal+padding-gqa", seed=6)
  noise = np.random.default_rng(7).normal(size=k.shape) * 100
  masked_keys = ~np.asarray(padding_with_an_empty_sequence())[:, 0, 0, :, None, None]
  k2, v2 = (x + jnp.asarray(np.where(masked_keys, noise, 0.0), jnp.float32) for x in (k, v))

  @jax.jit
  def run(k, v):
    return tj.attention(
      q,
      k,
      v,
      **options,
      dropout_rate=RATE,
      dropout_rng=KEY,
      implementation=implementation,
    )

  np.testing.assert_allclose(run(k2, v2), run(k, v), atol=1e-6, rtol=1e-6)


def test_batch_chunks_draw_the_same_mask(monkeypatch):
  """A batch run one sequence at a time (as large batches are) drops the same entries as
  the plain computation under the mask drawn here. (The backward draws from the same
  per-sequence keys as the forward; the test above checks it.)"""
  from tfmr_jax.ops import tiled_attention as module

  (q, k, v), allowed, options = case_inputs("causal+padding-gqa", seed=8)
  keep = keep_by_definition(KEY, B=B, N=N, T=T, S=S, rate=RATE, Q=Q, C=C)
  monkeypatch.setattr(module, "MAX_PASS_LOGITS", 1)
  chunked = jax.jit(
    lambda q, k, v: tiled_attention(
      q, k, v, **options, dropout_rate=RATE, dropout_rng=KEY, q_block=Q, kv_block=C
    )
  )(q, k, v)
  want = dropped_attention(q, k, v, allowed, keep, RATE)
  np.testing.assert_allclose(chunked, want, atol=2e-6, rtol=2e-6)


q0, k0, v0 = random_qkv(B=1, T=3, S=5, N=2, K=1, H=3)


@pytest.mark.parametrize("rate", [-0.1, 1.0, 1.5, float("nan"), True, "0.1", [0.1]])
def test_bad_rate_is_one_clear_error(rate):
  for call in (
    lambda: tj.attention(q0, k0, v0, dropout_rate=rate, dropout_rng=KEY),
    lambda: tiled_attention(q0, k0, v0, dropout_rate=rate, dropout_rng=KEY),
  ):
    with pytest.raises(ValueError, match=r"dropout_rate must be a number in \[0, 1\)"):
      call()


def test_rate_without_a_key_or_with_a_bad_key_is_refused():
  with pytest.raises(ValueError, match=r"dropout_rng is required when dropout_rate > 0"):
    tj.attention(q0, k0, v0, dropout_rate=0.1)
  for bad in (3, jnp.zeros((3,), jnp.uint32), jax.random.split(KEY, 2)):
    with pytest.raises(ValueError, match=r"dropout_rng must be one jax random key"):
      tj.attention(q0, k0, v0, dropout_rate=0.1, dropout_rng=bad)
  with pytest.raises(ValueError, match=r"dropout_rate must be a number"):
    jax.jit(lambda r: tj.attention(q0, k0, v0, dropout_rate=r, dropout_rng=KEY))(0.1)


@pytest.mark.parametrize("implementation", ["xla", "cudnn"])
def test_jax_nn_implementations_refuse_dropout_by_name(implementation):
  with pytest.raises(ValueError, match=rf"implementation='{implementation}' .*has no attention"):
    tj.attention(q0, k0, v0, dropout_rate=0.1, dropout_rng=KEY, implementation=implementation)


@pytest.mark.parametrize("backend", ["cpu", "gpu", "tpu"])
@pytest.mark.parametrize("T_", [16, 64, 8192])
def test_none_with_dropout_chooses_an_implementation_that_has_it(backend, T_):
  for dtype in (jnp.float32, jnp.bfloat16):
    got = choose_implementation(
      B=8, T=T_, S=T_, N=8, H=64, dtype=dtype, backend=backend, dropout=True
    )
    assert got in ("reference", "tiled")
