"""The heads of multi-head attention: their shape rules, their projections, the head split.

Dimension key: B batch, T length, D model dim, N query heads, K kv heads, H head dim.

`MultiHeadAttention` (`tfmr_jax.nn.attention`) builds its four projections with
`head_projection` and splits their outputs into heads with `split_heads`, which also
constrains them to the logical axes (act_batch, act_length, act_heads, None): the
head dim H is never sharded.
"""

import jax.numpy as jnp
from flax import nnx

from tfmr_jax.nn.partitioning import ACT_BATCH, ACT_HEADS, ACT_LENGTH, constrain, param_axes
from tfmr_jax.ops.flat_dot import flat_dot_general
from tfmr_jax.ops.guards import check_positive

_HEADS_AXES = (ACT_BATCH, ACT_LENGTH, ACT_HEADS, None)


def head_shape(
  d_model: int, num_heads: int, num_kv_heads: int | None, head_dim: int | None, *, rope: bool
) -> tuple[int, int]:
  """(K, H): the kv heads (default N) and the head dim (default D // N), checked.

  ValueError naming the argument unless every size is positive, K divides N, N divides
  D when H is not given, and H is even with rotary embeddings (`rope`).
  """
  check_positive("d_model", d_model)
  check_positive("num_heads", num_heads)
  num_kv_heads = num_heads if num_kv_heads is None else num_kv_heads
  check_positive("num_kv_heads", num_kv_heads)
  if num_heads % num_kv_heads:
    raise ValueError(
      f"num_kv_heads={num_kv_heads} must divide num_heads={num_heads} (grouped-query attention)"
    )
  if head_dim is None:
    if d_model % num_heads:
      raise ValueError(
        f"num_heads={num_heads} must divide d_model={d_model} when head_dim is not given"
      )
    head_dim = d_model // num_heads
  check_positive("head_dim", head_dim)
  if rope and head_dim % 2:
    raise ValueError(f"rotary embeddings need an even head_dim, got {head_dim}")
  return num_kv_heads, head_dim


def head_projection(
  d_in: int, d_out: int, *, axes: tuple[str, str], use_bias: bool, init, dtype, param_dtype, rngs
) -> nnx.Linear:
  """A [d_in, d_out] projection whose kernel has the logical axes `axes` and whose bias
  has the output's; dense matmuls flattened to 2-D (`flat_dot_general`)."""
  return nnx.Linear(
    d_in,
    d_out,
    use_bias=use_bias,
    kernel_init=init,
    dtype=dtype,
    param_dtype=param_dtype,
    kernel_metadata=param_axes(*axes),
    bias_metadata=param_axes(axes[1]),
    rngs=rngs,
    dot_general=flat_dot_general,
  )


def split_heads(projection: nnx.Linear, x_BTD, num_heads: int, head_dim: int):
  """x_BTD projected and split into heads: [B, T, num_heads, head_dim], constrained to
  the heads' logical axes."""
  B, T, _ = x_BTD.shape
  x_BTNH = projection(x_BTD).reshape(B, T, num_heads, head_dim)
  return constrain(x_BTNH, *_HEADS_AXES)


def rope_positions(T: int, positions, offset=0):
  """The int positions RoPE rotates by: `positions` if given, else offset + arange(T)."""
  if positions is None:
    return offset + jnp.arange(T, dtype=jnp.int32)
  return jnp.asarray(positions)
