"""tj.attention(..., implementation=...): every choice computes the same function."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import tfmr_jax as tj
from tests.conftest import random_qkv
from tests.ops.oracle import np_attention
from tfmr_jax.ops.implementations import CPU_TILED_MIN_LOGITS, choose_implementation
from tfmr_jax.ops.jax_nn import jax_nn_attention

B, T, S, N, H = 2, 5, 11, 6, 7  # prime-sized, T != S


def qkv(K, seed=0):
  return random_qkv(B=B, T=T, S=S, N=N, K=K, H=H, seed=seed)


def with_empty_rows():
  """Causal, padded, one batch entry with no keys at all: its rows must come out zero."""
  return tj.combine_masks(tj.causal_mask(T, S), tj.padding_mask(np.array([S - 2, 0]), S))


@pytest.mark.parametrize("implementation", ["reference", "tiled", "xla", None])
@pytest.mark.parametrize("K", [6, 3], ids=["mha", "gqa"])
def test_every_implementation_matches_the_oracle(implementation, K, maybe_jit):
  q, k, v = qkv(K)
  mask = with_empty_rows()
  bias = jnp.asarray(np.random.default_rng(1).normal(size=(1, N, T, S)), jnp.float32)
  fn = maybe_jit(
    lambda q, k, v: tj.attention(
      q, k, v, mask=mask, bias=bias, scale=0.3, implementation=implementation
    )
  )
  out = fn(q, k, v)
  assert out.shape == (B, T, N, H)
  np.testing.assert_allclose(
    out, np_attention(q, k, v, mask, bias, scale=0.3), atol=1e-5, rtol=1e-5
  )
  assert np.all(np.asarray(out[1]) == 0.0)


@pytest.mark.parametrize("implementation", ["tiled", "xla"])
def test_gradients_match_the_reference_and_vanish_on_empty_rows(implementation):
  q, k, v = qkv(3, seed=2)
  mask = with_empty_rows()
  w = jnp.asarray(np.random.default_rng(3).normal(size=(B, T, N, H)), jnp.float32)

  def grads(impl):
    loss = lambda q, k, v: jnp.sum(tj.attention(q, k, v, mask=mask, implementation=impl) * w)  # noqa: E731
    return jax.jit(jax.grad(loss, argnums=(0, 1, 2)))(q, k, v)

  for got, want in zip(grads(implementation), grads("reference"), strict=True):
    np.testing.assert_allclose(got, want, atol=5e-5, rtol=5e-5)
    assert np.all(np.isfinite(np.asarray(got))) and np.all(np.asarray(got[1]) == 0.0)


def test_none_runs_the_tiled_path_on_long_cpu_sequences():
  # Past the crossover, implementation=None must take the tiled path. Proof: keys in
  # whole padded blocks hold NaN; only a path that skips those blocks stays finite.
  T_ = 1024
  assert T_ * T_ >= CPU_TILED_MIN_LOGITS
  x = jnp.asarray(np.random.default_rng(4).normal(size=(1, T_, 1, 8)), jnp.float32)
  kv = x.at[:, T_ // 2 :].set(jnp.nan)
  mask = tj.padding_mask(np.array([T_ // 2]), T_)
  assert choose_implementation(B=1, T=T_, S=T_, N=1, H=8, dtype=jnp.float32) == "tiled"
  assert np.all(np.isfinite(np.asarray(tj.attention(x, kv, kv, mask=mask))))
  ref = tj.attention(x, kv, kv, mask=mask, implementation="reference")
  assert not np.all(np.isfinite(np.asarray(ref)))


@pytest.mark.parametrize(
  "backend,B_,T_,dtype,H_,expected",
  [
    ("cpu", 8, 32, jnp.float32, 64, "reference"),
    ("cpu", 1, 64, jnp.float32, 64, "tiled"),
    ("cpu", 1, 8192, jnp.float32, 64, "tiled"),
    ("cpu", 8, 8192, jnp.bfloat16, 64, "tiled"),
    ("gpu", 1, 2048, jnp.bfloat16, 64, "cudnn"),
    ("gpu", 1, 2048, jnp.float16, 128, "cudnn"),
    ("gpu", 1, 2048, jnp.float32, 64, "xla"),
    ("gpu", 1, 2048, jnp.bfloat16, 72 + 1, "xla"),
    ("gpu", 1, 65536, jnp.float32, 64, "tiled"),
    ("tpu", 1, 2048, jnp.bfloat16, 64, "xla"),
  ],
)
def test_choice_for_backend_and_shape(backend, B_, T_, dtype, H_, expected):
  got = choose_implementation(B=B_, T=T_, S=T_, N=8, H=H_, dtype=dtype, backend=backend)
  assert got == expected


def test_cpu_choice_switches_at_the_measured_crossover():
  S_ = CPU_TILED_MIN_LOGITS // 64
  below = choose_implementation(B=1, T=64, S=S_ - 1, N=1, H=64, dtype=jnp.float32, backend="cpu")
  at = choose_implementation(B=1, T=64, S=S_, N=1, H=64, dtype=jnp.float32, backend="cpu")
  assert (below, at) == ("reference", "tiled")


def test_unknown_implementation_names_the_choices():
  q, k, v = qkv(3)
  with pytest.raises(ValueError, match=r"implementation must be None or one of .*'flash'"):
    tj.attention(q, k, v, implementation="flash")


@pytest.mark.skipif(jax.default_backend() == "gpu", reason="checks the CPU/TPU error")
def test_cudnn_off_gpu_says_why():
  q, k, v = qkv(3)
  with pytest.raises(ValueError, match="implementation='cudnn' needs a GPU backend"):
    tj.attention(q, k, v, implementation="cudnn")


def test_xla_wrapper_zeroes_rows_that_jax_nn_would_fill_with_the_mean():
  q, k, v = qkv(3, seed=5)
  mask = tj.padding_mask(np.array([S, 0]), S)
  raw = jax.nn.dot_product_attention(q, k, v, mask=mask, implementation="xla")
  assert np.any(np.asarray(raw[1]) != 0.0)  # what jax.nn does on empty rows
  ours = jax_nn_attention(q, k, v, mask=mask)
  assert np.all(np.asarray(ours[1]) == 0.0)
  np.testing.assert_allclose(ours[0], raw[0], atol=1e-6)
