"""Position encodings: the paper's formula, the relative-offset property, RoPE."""

import jax.numpy as jnp
import numpy as np
import pytest

import tfmr_jax as tj


def test_sinusoidal_matches_paper_formula_elementwise():
  P, D = 13, 10
  table = np.asarray(tj.sinusoidal_positions(P, D))
  assert table.shape == (P, D)
  for pos in range(P):
    for i in range(D // 2):
      angle = pos / 10000 ** (2 * i / D)
      assert table[pos, 2 * i] == pytest.approx(np.sin(angle), abs=1e-5)
      assert table[pos, 2 * i + 1] == pytest.approx(np.cos(angle), abs=1e-5)


def test_sinusoidal_odd_width_keeps_the_formula():
  P, D = 9, 7
  table = np.asarray(tj.sinusoidal_positions(P, D))
  assert table.shape == (P, D)
  pos = np.arange(P)[:, None]
  freq = 10000.0 ** (-np.arange(0, D, 2) / D)
  np.testing.assert_allclose(table[:, 0::2], np.sin(pos * freq), atol=1e-5)
  np.testing.assert_allclose(table[:, 1::2], np.cos(pos * freq[: D // 2]), atol=1e-5)


@pytest.mark.parametrize("offset", [1, 3, 17])
def test_sinusoidal_offset_is_a_fixed_linear_map(offset):
  """PE[pos + k] = PE[pos] @ M_k for one matrix M_k (found by least squares) for every pos."""
  P, D = 64, 16
  table = np.asarray(tj.sinusoidal_positions(P + offset, D), np.float64)
  src, dst = table[:P], table[offset : P + offset]
  M, *_ = np.linalg.lstsq(src, dst, rcond=None)
  assert np.abs(src @ M - dst).max() < 1e-4
  # ... and M_k is the block rotation by angle k * w_i, so it is known in closed form.
  rot = np.zeros((D, D))
  for i in range(D // 2):
    a = offset / 10000 ** (2 * i / D)
    rot[2 * i : 2 * i + 2, 2 * i : 2 * i + 2] = [[np.cos(a), -np.sin(a)], [np.sin(a), np.cos(a)]]
  assert np.abs(src @ rot - dst).max() < 1e-4


def test_rope_preserves_norm_and_makes_scores_depend_on_offset_only():
  rng = np.random.default_rng(0)
  q = jnp.asarray(rng.normal(size=(1, 1, 1, 8)), jnp.float32)
  k = jnp.asarray(rng.normal(size=(1, 1, 1, 8)), jnp.float32)

  def score(m, n):
    qm = tj.apply_rope(q, jnp.array([[m]]))
    kn = tj.apply_rope(k, jnp.array([[n]]))
    return float(jnp.sum(qm * kn))

  assert score(5, 2) == pytest.approx(score(13, 10), abs=1e-4)
  assert score(0, 0) == pytest.approx(float(jnp.sum(q * k)), abs=1e-5)
  assert score(5, 2) != pytest.approx(score(5, 3), abs=1e-3)
  x = jnp.asarray(rng.normal(size=(2, 5, 3, 8)), jnp.float32)
  rotated = tj.apply_rope(x, jnp.arange(5))
  np.testing.assert_allclose(
    jnp.linalg.norm(rotated, axis=-1), jnp.linalg.norm(x, axis=-1), rtol=1e-5
  )


def test_rope_matches_complex_multiplication():
  """Independent formulation: pairs as complex numbers times exp(i * pos * freq)."""
  rng = np.random.default_rng(1)
  x = rng.normal(size=(2, 5, 3, 6))
  pos = np.arange(5)
  freq = 10000.0 ** (-np.arange(0, 6, 2) / 6)
  z = (x[..., 0::2] + 1j * x[..., 1::2]) * np.exp(1j * pos[None, :, None, None] * freq)
  expected = np.stack([z.real, z.imag], -1).reshape(x.shape)
  np.testing.assert_allclose(tj.apply_rope(jnp.asarray(x, jnp.float32), pos), expected, atol=1e-5)
