"""Strict JAX for every test: rank promotion raises, warnings are errors (setup.cfg)."""

import jax
import pytest

jax.config.update("jax_numpy_rank_promotion", "raise")


@pytest.fixture(params=["jit", "nojit"])
def maybe_jit(request):
  """Run a test once under jax.jit and once eagerly: fn -> fn or jax.jit(fn)."""
  if request.param == "jit":
    return jax.jit
  return lambda fn, **_: fn
