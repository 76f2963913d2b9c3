"""flat_dot_general: the same values and gradients as lax.dot_general, 2-D inside."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax import lax

from tfmr_jax.ops.flat_dot import flat_dot_general

DENSE = (((2,), (0,)), ((), ()))


def rand(shape, seed, dtype=jnp.float32):
  return jnp.asarray(np.random.default_rng(seed).normal(size=shape), dtype)


@pytest.mark.parametrize("jit", [False, True])
def test_dense_product_and_its_gradients_match_dot_general(jit):
  x_BTI, w_IO = rand((3, 5, 7), 0), rand((7, 11), 1)
  dy_BTO = rand((3, 5, 11), 2)

  def loss(fn, x, w):
    return jnp.sum(fn(x, w, DENSE) * dy_BTO)

  ours = jax.grad(lambda x, w: loss(flat_dot_general, x, w), argnums=(0, 1))
  theirs = jax.grad(lambda x, w: loss(lax.dot_general, x, w), argnums=(0, 1))
  if jit:
    ours, theirs = jax.jit(ours), jax.jit(theirs)
  np.testing.assert_allclose(
    flat_dot_general(x_BTI, w_IO, DENSE), lax.dot_general(x_BTI, w_IO, DENSE), rtol=1e-6
  )
  for a, b in zip(ours(x_BTI, w_IO), theirs(x_BTI, w_IO), strict=True):
    assert a.shape == b.shape
    np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)

  # The step lowers to 2-D matmuls only: no dot_general contracts two axes at once.
  jaxpr = jax.make_jaxpr(ours)(x_BTI, w_IO).jaxpr
  dots = [e for e in jaxpr.eqns if e.primitive.name == "dot_general"]
  if not jit:
    assert dots and all(len(e.params["dimension_numbers"][0][0]) == 1 for e in dots)


def test_dtypes_pass_through():
  x_BTI, w_IO = rand((2, 3, 5), 0, jnp.bfloat16), rand((5, 7), 1, jnp.bfloat16)
  y = flat_dot_general(x_BTI, w_IO, DENSE, preferred_element_type=jnp.float32)
  assert y.dtype == jnp.float32 and y.shape == (2, 3, 7)
  assert flat_dot_general(x_BTI, w_IO, DENSE).dtype == jnp.bfloat16


def test_other_contractions_go_to_dot_general_unchanged():
  a_BIJ, b_BJK = rand((2, 3, 5), 0), rand((2, 5, 7), 1)
  batched = (((2,), (1,)), ((0,), (0,)))
  np.testing.assert_array_equal(
    flat_dot_general(a_BIJ, b_BJK, batched), lax.dot_general(a_BIJ, b_BJK, batched)
  )
  x_MI, w_IO = rand((3, 5), 2), rand((5, 7), 3)
  plain = (((1,), (0,)), ((), ()))
  np.testing.assert_array_equal(
    flat_dot_general(x_MI, w_IO, plain), lax.dot_general(x_MI, w_IO, plain)
  )
