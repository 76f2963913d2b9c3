"""The shared checks and shape helpers of tfmr_jax.ops.guards."""

import jax.numpy as jnp
import numpy as np
import pytest

from tfmr_jax.ops import guards


def test_rank_and_dtype_checks_take_python_sequences_as_arrays():
  guards.check_rank("lengths_B", [3, 4], 1, "[B]")
  guards.check_floating("bias", 0.5)
  with pytest.raises(ValueError, match=r"lengths_B must have rank 1 \[B\], got shape \(1, 2\)"):
    guards.check_rank("lengths_B", [[3, 4]], 1, "[B]")
  with pytest.raises(TypeError, match=r"bias must have a floating dtype, got int32"):
    guards.check_floating("bias", 3)


@pytest.mark.parametrize(
  "shape,ok",
  [((), True), ((7,), True), ((1, 5, 1), True), ((2, 6, 5, 7), True), ((3, 1, 1, 1), False)],
)
def test_broadcastable_means_without_growing(shape, ok):
  target = (2, 6, 5, 7)
  if ok:
    guards.check_broadcastable("bias", shape, target, "[B, N, T, S]")
  else:
    with pytest.raises(ValueError, match=r"bias of shape \(3, 1, 1, 1\) does not broadcast"):
      guards.check_broadcastable("bias", shape, target, "[B, N, T, S]")


def test_as_rank4_adds_leading_axes_and_keeps_none():
  assert guards.as_rank4(None) is None
  assert guards.as_rank4(np.ones((5, 7), bool)).shape == (1, 1, 5, 7)
  assert guards.as_rank4(jnp.ones((2, 6, 5, 7))).shape == (2, 6, 5, 7)


def test_grouped_splits_heads_as_k_times_g_plus_g():
  K, G = 3, 2
  x_BNTS = jnp.arange(K * G, dtype=jnp.float32).reshape(1, K * G, 1, 1)
  x_BKGTS = guards.grouped(x_BNTS, K, G)
  assert x_BKGTS.shape == (1, K, G, 1, 1)
  for k in range(K):
    for g in range(G):
      assert x_BKGTS[0, k, g, 0, 0] == k * G + g
  assert guards.grouped(jnp.ones((5, 7)), K, G).shape == (1, 1, 1, 5, 7)  # no head axis
