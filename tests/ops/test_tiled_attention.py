"""Tiled attention equals the reference: forward, custom backward, masks, dtypes, memory."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import tfmr_jax as tj
from tests.conftest import random_qkv
from tests.ops.oracle import np_attention, np_causal
from tfmr_jax.ops.tiled.plan import Plan, static_kinds_IJ
from tfmr_jax.ops.tiled_attention import tiled_attention

# Prime-sized, T != S, so a swapped axis breaks a shape or a value.
B, T, S, N, H = 2, 13, 17, 6, 7
HEADS = {"mha": 6, "gqa": 3, "mqa": 1}
# (q_block, kv_block): neither divides T or S; one block each; blocks of one row/key.
BLOCKS = {"ragged": (4, 5), "whole": (13, 17), "single": (1, 1)}


def qkv(K, *, T=T, S=S, dtype=jnp.float32, seed=0):
  return random_qkv(B=B, T=T, S=S, N=N, K=K, H=H, dtype=dtype, seed=seed)


def random_mask(*, T=T, S=S, seed=1, empty_rows=True):
  rng = np.random.default_rng(seed)
  mask = rng.random((B, N, T, S)) < 0.5
  mask[..., 0] |= ~mask.any(-1)
  if empty_rows:
    mask[0, 1, 3] = False  # one fully masked query row
  return jnp.asarray(mask)


def mask_cases(T=T, S=S):
  """name -> (mask array for the reference, mask and is_causal for the tiled call)."""
  causal = tj.causal_mask(T, S)
  padding = tj.padding_mask(np.array([S, 0]), S)  # second sequence: every row empty
  return {
    "none": (None, None, False),
    "causal-flag": (causal, None, True),
    "causal-mask": (causal, causal, False),
    "padding": (padding, padding, False),
    "causal+padding": (tj.combine_masks(causal, padding), padding, True),
    "random": (random_mask(T=T, S=S), random_mask(T=T, S=S), False),
  }


def reference(q, k, v, **kw):
  return tj.attention(q, k, v, implementation="reference", **kw)


def check_forward(heads, mask_name, blocks, wrap=jax.jit):
  q, k, v = qkv(HEADS[heads])
  ref_mask, mask, is_causal = mask_cases()[mask_name]
  q_block, kv_block = BLOCKS[blocks]
  fn = wrap(
    lambda q, k, v: tiled_attention(
      q, k, v, mask=mask, is_causal=is_causal, q_block=q_block, kv_block=kv_block
    )
  )
  out = fn(q, k, v)
  assert out.shape == (B, T, N, H) and out.dtype == jnp.float32
  np.testing.assert_allclose(out, reference(q, k, v, mask=ref_mask), atol=1e-5, rtol=1e-5)
  np.testing.assert_allclose(out, np_attention(q, k, v, ref_mask), atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("heads", HEADS, ids=list(HEADS))
@pytest.mark.parametrize("mask_name", list(mask_cases()))
def test_forward_matches_reference(heads, mask_name):
  check_forward(heads, mask_name, "ragged")


@pytest.mark.parametrize("mask_name", ["causal-flag", "causal-mask", "padding", "random"])
@pytest.mark.parametrize("blocks", ["whole", "single"])
def test_forward_matches_reference_whatever_the_blocks(mask_name, blocks):
  check_forward("gqa", mask_name, blocks)


@pytest.mark.parametrize("mask_name", ["causal-flag", "random"])
def test_forward_matches_reference_with_and_without_jit(mask_name, maybe_jit):
  check_forward("gqa", mask_name, "ragged", wrap=maybe_jit)


@pytest.mark.parametrize("mask_name", ["none", "causal-flag", "padding", "random"])
def test_forward_matches_jax_nn(mask_name):
  q, k, v = qkv(3, S=T)
  ref_mask, mask, is_causal = mask_cases(T, T)[mask_name]
  if mask_name == "padding":  # jax.nn leaks on fully masked rows: keep one key per row
    ref_mask = mask = tj.padding_mask(np.array([T, 5]), T)
  if mask_name == "random":
    ref_mask = mask = random_mask(T=T, S=T, empty_rows=False)
  out = tiled_attention(q, k, v, mask=mask, is_causal=is_causal, q_block=4, kv_block=3)
  ref = jax.nn.dot_product_attention(q, k, v, mask=ref_mask, implementation="xla")
  np.testing.assert_allclose(out, ref, atol=1e-5, rtol=1e-5)


def loss_fn(attn, w_BTNH):
  return lambda q, k, v, bias, scale: jnp.sum(attn(q, k, v, bias, scale) * w_BTNH)


@pytest.mark.parametrize(
  "heads,mask_name,blocks",
  [
    ("mha", "none", "ragged"),
    ("mha", "causal-flag", "ragged"),
    ("gqa", "causal+padding", "ragged"),
    ("gqa", "random", "ragged"),
    ("mqa", "causal-mask", "ragged"),
    ("gqa", "causal-flag", "whole"),
  ],
)
def test_custom_backward_matches_autodiff_of_reference(heads, mask_name, blocks):
  q, k, v = qkv(HEADS[heads], seed=2)
  rng = np.random.default_rng(3)
  w = jnp.asarray(rng.normal(size=(B, T, N, H)), jnp.float32)
  bias = jnp.asarray(rng.normal(size=(1, N, T, S)), jnp.float32)
  scale = jnp.float32(0.4)
  ref_mask, mask, is_causal = mask_cases()[mask_name]
  q_block, kv_block = BLOCKS[blocks]
  tiled = loss_fn(
    lambda q, k, v, b, s: tiled_attention(
      q, k, v, mask=mask, bias=b, scale=s, is_causal=is_causal, q_block=q_block, kv_block=kv_block
    ),
    w,
  )
  ref = loss_fn(lambda q, k, v, b, s: reference(q, k, v, mask=ref_mask, bias=b, scale=s), w)
  grads = jax.jit(jax.grad(tiled, argnums=(0, 1, 2, 3, 4)))(q, k, v, bias, scale)
  expected = jax.jit(jax.grad(ref, argnums=(0, 1, 2, 3, 4)))(q, k, v, bias, scale)
  for name, got, want in zip(("dq", "dk", "dv", "dbias", "dscale"), grads, expected, strict=True):
    assert got.shape == want.shape, name
    np.testing.assert_allclose(got, want, atol=5e-5, rtol=5e-5, err_msg=name)


@pytest.mark.parametrize("bias_shape", [(N, 1, S), (B, 1, T, S), (S,)])
def test_broadcast_bias_gradient_keeps_its_shape(bias_shape):
  q, k, v = qkv(3, seed=4)
  bias = jnp.asarray(np.random.default_rng(5).normal(size=bias_shape), jnp.float32)
  mask = tj.causal_mask(T, S)

  def grad_of(attn):
    return jax.jit(jax.grad(lambda b: jnp.sum(jnp.sin(attn(q, k, v, mask=mask, bias=b)))))(bias)

  got = grad_of(lambda *a, **kw: tiled_attention(*a, **kw, q_block=4, kv_block=5))
  assert got.shape == bias_shape
  np.testing.assert_allclose(got, grad_of(reference), atol=5e-5, rtol=5e-5)


def test_fully_masked_rows_give_zeros_and_zero_finite_gradient():
  q, k, v = qkv(3, seed=6)
  lengths = np.array([S, 0])  # batch 1: no key at all
  mask = tj.padding_mask(lengths, S)

  def loss(q, k, v):
    return jnp.sum(tiled_attention(q, k, v, mask=mask, is_causal=True, q_block=4, kv_block=5))

  out = tiled_attention(q, k, v, mask=mask, is_causal=True, q_block=4, kv_block=5)
  assert np.all(np.asarray(out[1]) == 0.0)
  dq, dk, dv = jax.grad(loss, argnums=(0, 1, 2))(q, k, v)
  for g in (dq, dk, dv):
    assert np.all(np.isfinite(np.asarray(g)))
    assert np.all(np.asarray(g[1]) == 0.0)
  assert np.any(np.asarray(dq[0]) != 0.0)


def test_blocks_a_mask_rules_out_are_never_read():
  # Keys 8.. of every sequence are padding and fill whole key blocks of 4: the tiled
  # path must skip those blocks, so NaNs there never reach the output. The reference
  # multiplies them by zero probability, and 0 * NaN = NaN.
  q, k, v = qkv(3, S=16, seed=7)
  k = k.at[:, 8:].set(jnp.nan)
  v = v.at[:, 8:].set(jnp.nan)
  mask = tj.padding_mask(np.array([8, 8]), 16)
  out = tiled_attention(q, k, v, mask=mask, q_block=4, kv_block=4)
  assert np.all(np.isfinite(np.asarray(out)))
  assert not np.all(np.isfinite(np.asarray(reference(q, k, v, mask=mask))))
  clean = np_attention(q, jnp.nan_to_num(k), jnp.nan_to_num(v), mask)
  np.testing.assert_allclose(out, clean, atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("T_,S_,Q,C", [(16, 16, 4, 4), (13, 17, 4, 5), (5, 23, 2, 3)])
def test_causal_block_plan_matches_numpy(T_, S_, Q, C):
  plan = Plan(T=T_, S=S_, Q=Q, C=C, is_causal=True)
  allowed = np.zeros((plan.I * Q, plan.J * C), bool)
  allowed[:T_, :S_] = np_causal(T_, S_)
  allowed[T_:, :S_] = True  # padded query rows are discarded, they may see anything
  blocks = allowed.reshape(plan.I, Q, plan.J, C)
  expected = np.where(blocks.all(axis=(1, 3)), 1, np.where(blocks.any(axis=(1, 3)), 2, 0))
  np.testing.assert_array_equal(static_kinds_IJ(plan), expected)


@pytest.mark.parametrize("dtype", [jnp.bfloat16, jnp.float16], ids=["bf16", "fp16"])
def test_low_precision_inputs_as_accurate_as_the_reference(dtype):
  # Both paths round q, k, v and the probabilities to `dtype` at the same places and
  # accumulate in float32, so against float32 math on the same rounded inputs the tiled
  # error should be of the reference's own size. Bound: twice the reference's error.
  q, k, v = qkv(3, dtype=dtype, seed=8)
  mask = tj.causal_mask(T, S)
  w = jnp.asarray(np.random.default_rng(9).normal(size=(B, T, N, H)), dtype)
  exact = np_attention(q.astype(jnp.float32), k.astype(jnp.float32), v.astype(jnp.float32), mask)
  out = jax.jit(lambda q, k, v: tiled_attention(q, k, v, is_causal=True, q_block=4, kv_block=5))(
    q, k, v
  )
  ref = reference(q, k, v, mask=mask)
  assert out.dtype == dtype
  err_tiled = np.max(np.abs(np.asarray(out, np.float64) - exact))
  err_ref = np.max(np.abs(np.asarray(ref, np.float64) - exact))
  assert err_tiled <= 2 * err_ref

  def grads(attn, *args):
    loss = lambda q, k, v: jnp.sum((attn(q, k, v) * w).astype(jnp.float32))  # noqa: E731
    return jax.jit(jax.grad(loss, argnums=(0, 1, 2)))(*args)

  f32 = tuple(x.astype(jnp.float32) for x in (q, k, v))
  exact_g = grads(lambda q, k, v: reference(q, k, v, mask=mask), *f32)
  tiled_g = grads(
    lambda q, k, v: tiled_attention(q, k, v, is_causal=True, q_block=4, kv_block=5), q, k, v
  )
  ref_g = grads(lambda q, k, v: reference(q, k, v, mask=mask), q, k, v)
  for got, ref_, want in zip(tiled_g, ref_g, exact_g, strict=True):
    assert got.dtype == dtype
    err_tiled = np.max(np.abs(np.asarray(got, np.float64) - np.asarray(want, np.float64)))
    err_ref = np.max(np.abs(np.asarray(ref_, np.float64) - np.asarray(want, np.float64)))
    assert err_tiled <= 2 * err_ref


def test_training_memory_is_linear_in_sequence_length():
  # Compile (do not run) forward + backward at T = S = 16384: the [T, S] float32 logits
  # alone would be 1 GiB. The tiled program's scratch memory must stay far below that,
  # and the reference's must not (so the measure can tell the two apart).
  T_, H_ = 16384, 8
  x = jax.ShapeDtypeStruct((1, T_, 1, H_), jnp.float32)

  def scratch_bytes(attn):
    grad = jax.grad(lambda q, k, v: jnp.sum(attn(q, k, v)), argnums=(0, 1, 2))
    return jax.jit(grad).lower(x, x, x).compile().memory_analysis().temp_size_in_bytes

  logits_bytes = T_ * T_ * 4
  assert scratch_bytes(lambda q, k, v: tiled_attention(q, k, v, is_causal=True)) < logits_bytes / 64
  assert scratch_bytes(lambda q, k, v: reference(q, k, v, mask=tj.causal_mask(T_))) > logits_bytes


def test_an_explicit_mask_costs_no_training_memory_beyond_its_own_bytes():
  # A [T, S] bool mask is an argument of T * S bytes; forward + backward with it must need
  # no more scratch than with is_causal (the backward once copied it into a transposed
  # layout, one more mask's worth).
  T_, H_ = 4096, 8
  x = jax.ShapeDtypeStruct((1, T_, 2, H_), jnp.float32)
  mask = jax.ShapeDtypeStruct((T_, T_), jnp.bool_)

  def scratch_bytes(loss, *args):
    grad = jax.grad(loss, argnums=(0, 1, 2))
    return jax.jit(grad).lower(*args).compile().memory_analysis().temp_size_in_bytes

  causal = scratch_bytes(lambda q, k, v: jnp.sum(tiled_attention(q, k, v, is_causal=True)), x, x, x)
  masked = scratch_bytes(
    lambda q, k, v, m: jnp.sum(tiled_attention(q, k, v, mask=m)), x, x, x, mask
  )
  assert masked <= causal + T_ * T_ // 8, (masked, causal)


def test_bad_arguments_name_the_field():
  q, k, v = qkv(3)
  with pytest.raises(ValueError, match="q_block"):
    tiled_attention(q, k, v, q_block=0)
  with pytest.raises(ValueError, match="kv_block"):
    tiled_attention(q, k, v, kv_block=2.5)
  with pytest.raises(ValueError, match="is_causal=True needs S >= T"):
    tiled_attention(k.repeat(2, axis=2), q[:, :, :3], q[:, :, :3], is_causal=True)
  with pytest.raises(TypeError, match="mask must be a bool"):
    tiled_attention(q, k, v, mask=jnp.ones((T, S)))
  with pytest.raises(ValueError, match="k_BSKH"):
    tiled_attention(q, k[..., :3], v[..., :3])


@pytest.mark.parametrize("is_causal", [False, True])
def test_gradient_of_a_plain_sum_at_default_blocks(is_causal):
  """d sum(out) / d(q, k, v): a constant cotangent, one 128 x 128 block, as benchmarks take it.

  XLA's CPU backend once fed that broadcast cotangent to the backward as uninitialised
  memory (dQ and dK of 1e21-1e30); the reference's autodiff is the independent check.
  """
  T_ = 128
  rng = np.random.default_rng(11)
  q, k, v = (jnp.asarray(rng.normal(size=(1, T_, 8, 64)), jnp.float32) for _ in range(3))
  mask = tj.causal_mask(T_) if is_causal else None

  def grads(attend):
    return jax.jit(jax.grad(lambda q, k, v: jnp.sum(attend(q, k, v)), argnums=(0, 1, 2)))(q, k, v)

  got = grads(lambda q, k, v: tiled_attention(q, k, v, is_causal=is_causal))
  want = grads(lambda q, k, v: reference(q, k, v, mask=mask))
  for name, g, w in zip(("dq", "dk", "dv"), got, want, strict=True):
    np.testing.assert_allclose(g, w, atol=5e-5, rtol=5e-5, err_msg=name)


@pytest.mark.parametrize("mask_name", ["causal+padding", "random"])
def test_batch_chunks_match_reference(monkeypatch, mask_name):
  """A batch run in chunks of one sequence (as large batches are): outputs and gradients.

  The padding mask has a batch axis (split with the batch), the bias none (shared).
  """
  from tfmr_jax.ops import tiled_attention as module

  monkeypatch.setattr(module, "MAX_PASS_LOGITS", 1)
  q, k, v = qkv(3, seed=12)
  rng = np.random.default_rng(13)
  w = jnp.asarray(rng.normal(size=(B, T, N, H)), jnp.float32)
  bias = jnp.asarray(rng.normal(size=(1, N, T, S)), jnp.float32)
  ref_mask, mask, is_causal = mask_cases()[mask_name]
  tiled = loss_fn(
    lambda q, k, v, b, s: tiled_attention(
      q, k, v, mask=mask, bias=b, scale=s, is_causal=is_causal, q_block=4, kv_block=5
    ),
    w,
  )
  ref = loss_fn(lambda q, k, v, b, s: reference(q, k, v, mask=ref_mask, bias=b, scale=s), w)
  args = (q, k, v, bias, jnp.float32(0.3))
  np.testing.assert_allclose(jax.jit(tiled)(*args), jax.jit(ref)(*args), atol=1e-4, rtol=1e-5)
  grads = jax.jit(jax.grad(tiled, argnums=(0, 1, 2, 3, 4)))(*args)
  expected = jax.jit(jax.grad(ref, argnums=(0, 1, 2, 3, 4)))(*args)
  for name, got, want in zip(("dq", "dk", "dv", "dbias", "dscale"), grads, expected, strict=True):
    np.testing.assert_allclose(got, want, atol=5e-5, rtol=5e-5, err_msg=name)


def test_batch_chunk_divides_the_batch_and_respects_the_budget():
  from tfmr_jax.ops.tiled_attention import MAX_PASS_LOGITS, _batch_chunk

  assert _batch_chunk(1, 8, 512, 256) == 1
  assert _batch_chunk(8, 8, 128, 128) == 8  # 8 * 8 * 128 * 128 = MAX_PASS_LOGITS
  assert _batch_chunk(8, 8, 512, 256) == 1
  assert _batch_chunk(64, 6, 256, 256) == 2  # the baby char-LM: 2 sequences a pass
  assert _batch_chunk(7, 8, 128, 256) == 1  # 4 would fit, but 7 is prime
  for B_, N_, Q_, C_ in [(12, 4, 64, 64), (64, 6, 256, 256), (9, 2, 300, 256)]:
    chunk = _batch_chunk(B_, N_, Q_, C_)
    assert B_ % chunk == 0
    assert chunk == 1 or chunk * N_ * Q_ * C_ <= MAX_PASS_LOGITS


@pytest.mark.parametrize("T", [1, 5])
@pytest.mark.parametrize("magnitude", [3e4, 1e5])
def test_gradients_stay_finite_with_huge_logits(T, magnitude):
  """q, k times 3e4 or 1e5: logits ~ 1e10, where an ulp is ~ 1e3. The backward once
  recomputed s with a different matmul and subtracted a rounded lse: exp(s - lse)
  overflowed and the gradients were inf or NaN. Now finite, and dV (which p alone
  decides) is the reference's."""
  q, k, v = random_qkv(B=2, T=T, S=130, N=2, K=1, H=8)
  q, k = q * magnitude, k * magnitude

  def grads(implementation):
    def loss(q, k, v):
      return jnp.sum(tj.attention(q, k, v, implementation=implementation, is_causal=True))

    return jax.grad(loss, argnums=(0, 1, 2))(q, k, v)

  got, want = grads("tiled"), grads("reference")
  for name, g in zip("qkv", got, strict=True):
    assert np.all(np.isfinite(g)), name
  np.testing.assert_allclose(got[2], want[2], atol=5e-5, rtol=5e-5)
