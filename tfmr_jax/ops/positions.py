"""Position encodings as pure functions.

Dimension key: B batch, T positions, N heads, H head dim, D model dim, P table length.
"""

import jax.numpy as jnp

from tfmr_jax.ops.guards import check_floating, check_positive, check_rank


def sinusoidal_positions(num_positions: int, d_model: int, *, base: float = 10000.0) -> jnp.ndarray:
  """[P, D] float32 table from "Attention Is All You Need", section 3.5.

      PE[pos, 2i]   = sin(pos / base^(2i / D))
      PE[pos, 2i+1] = cos(pos / base^(2i / D))

  Even channels carry sine, odd channels cosine, interleaved. Each (sin, cos)
  pair turns at its own frequency, so PE[pos + k] is PE[pos] rotated pair by pair
  by an angle that depends on k alone: a fixed linear map for every offset k.
  """
  check_positive("num_positions", num_positions)
  check_positive("d_model", d_model)
  pos_P1 = jnp.arange(num_positions, dtype=jnp.float32)[:, None]
  two_i_1I = jnp.arange(0, d_model, 2, dtype=jnp.float32)[None, :]
  angle_PI = pos_P1 / jnp.power(jnp.float32(base), two_i_1I / d_model)
  table_PI2 = jnp.stack([jnp.sin(angle_PI), jnp.cos(angle_PI)], axis=-1)
  return table_PI2.reshape(num_positions, -1)[:, :d_model]


def rope_frequencies(head_dim: int, *, base: float = 10000.0) -> jnp.ndarray:
  """[H/2] float32 angular frequencies base^(-2i/H) of rotary embeddings."""
  check_positive("head_dim", head_dim)
  if head_dim % 2:
    raise ValueError(f"rotary embeddings need an even head_dim, got {head_dim}")
  return jnp.power(jnp.float32(base), -jnp.arange(0, head_dim, 2, dtype=jnp.float32) / head_dim)


def apply_rope(x_BTNH, positions_BT, *, base: float = 10000.0):
  """Rotary position embedding (RoFormer, Su et al. 2021). Returns [B, T, N, H] in x's dtype.

  Channel pairs (2i, 2i+1) are rotated by angle positions * base^(-2i/H), so the
  dot product of a rotated query at position m and a rotated key at position n
  depends on m - n alone.

  Args:
    x_BTNH: queries or keys.
    positions_BT: int or float positions, broadcastable to [B, T] (a [T] vector works).
  """
  check_rank("x_BTNH", x_BTNH, 4, "[B, T, N, H]")
  check_floating("x_BTNH", x_BTNH)
  B, T, N, H = x_BTNH.shape
  freq_I = rope_frequencies(H, base=base)
  positions_BT = jnp.broadcast_to(jnp.asarray(positions_BT, jnp.float32), (B, T))
  angle_BTI = positions_BT[..., None] * freq_I[None, None, :]
  cos_BT1I, sin_BT1I = jnp.cos(angle_BTI)[:, :, None], jnp.sin(angle_BTI)[:, :, None]
  x_BTNI2 = x_BTNH.astype(jnp.float32).reshape(B, T, N, H // 2, 2)
  even_BTNI, odd_BTNI = x_BTNI2[..., 0], x_BTNI2[..., 1]
  rotated_BTNI2 = jnp.stack(
    [even_BTNI * cos_BT1I - odd_BTNI * sin_BT1I, even_BTNI * sin_BT1I + odd_BTNI * cos_BT1I],
    axis=-1,
  )
  return rotated_BTNI2.reshape(B, T, N, H).astype(x_BTNH.dtype)
