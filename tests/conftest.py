"""Strict JAX for every test: rank promotion raises, warnings are errors (setup.cfg).

Also the shared random attention inputs, `random_qkv` (import it from tests.conftest,
or take the `make_qkv` fixture).
"""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

jax.config.update("jax_numpy_rank_promotion", "raise")


def random_qkv(*, B: int, T: int, S: int, N: int, K: int, H: int, dtype=jnp.float32, seed=0):
  """Standard-normal q [B, T, N, H], k [B, S, K, H] and v [B, S, K, H], drawn in that
  order from one NumPy seed and cast to `dtype`."""
  rng = np.random.default_rng(seed)
  arrays = (
    rng.normal(size=(B, T, N, H)),
    rng.normal(size=(B, S, K, H)),
    rng.normal(size=(B, S, K, H)),
  )
  return tuple(jnp.asarray(a, dtype) for a in arrays)


@pytest.fixture
def make_qkv():
  """`random_qkv` as a fixture: make_qkv(B=.., T=.., S=.., N=.., K=.., H=..)."""
  return random_qkv


@pytest.fixture(params=["jit", "nojit"])
def maybe_jit(request):
  """Run a test once under jax.jit and once eagerly: fn -> fn or jax.jit(fn)."""
  if request.param == "jit":
    return jax.jit
  return lambda fn, **_: fn
