"""Mask builders against definitions written out in NumPy."""

import jax.numpy as jnp
import numpy as np
import pytest

import tfmr_jax as tj
from tests.ops.oracle import np_causal


@pytest.mark.parametrize("T,S", [(1, 1), (5, 5), (5, 7), (1, 13), (7, 7)])
def test_causal_mask_matches_definition(T, S):
  m = tj.causal_mask(T, S)
  assert m.shape == (1, 1, T, S) and m.dtype == jnp.bool_
  np.testing.assert_array_equal(m[0, 0], np_causal(T, S))


def test_causal_mask_square_is_lower_triangular():
  np.testing.assert_array_equal(tj.causal_mask(6)[0, 0], np.tril(np.ones((6, 6), bool)))


def test_padding_mask_from_lengths_and_from_validity_agree():
  lengths = np.array([7, 0, 3])
  valid = np.arange(7)[None, :] < lengths[:, None]
  from_lengths = tj.padding_mask(lengths, 7)
  from_valid = tj.padding_mask(jnp.asarray(valid))
  assert from_lengths.shape == (3, 1, 1, 7) and from_lengths.dtype == jnp.bool_
  np.testing.assert_array_equal(from_lengths[:, 0, 0], valid)
  np.testing.assert_array_equal(from_valid, from_lengths)


def test_padding_mask_accepts_traced_lengths():
  import jax

  out = jax.jit(lambda n: tj.padding_mask(n, 5))(jnp.array([2, 5]))
  np.testing.assert_array_equal(out[:, 0, 0], [[1, 1, 0, 0, 0], [1, 1, 1, 1, 1]])


def test_combine_masks_is_logical_and_and_skips_none():
  rng = np.random.default_rng(0)
  a = rng.random((2, 1, 5, 7)) < 0.5
  b = rng.random((1, 3, 5, 7)) < 0.5
  out = tj.combine_masks(jnp.asarray(a), None, jnp.asarray(b))
  np.testing.assert_array_equal(out, a & b)
  assert out.shape == (2, 3, 5, 7)
  assert tj.combine_masks(None, None) is None
  np.testing.assert_array_equal(tj.combine_masks(jnp.asarray(a)), a)
