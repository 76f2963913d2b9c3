"""Argument checks shared by the public ops.

Every check runs on static shapes and dtypes, so under `jax.jit` it costs nothing
after tracing. Each raises one error that names the argument, what it got and the
rule it broke.
"""

from collections.abc import Sequence

import jax.numpy as jnp
import numpy as np


def check_rank(name: str, x, rank: int, dims: str) -> None:
  """Raise ValueError unless `x` has `rank` axes; `dims` spells them, e.g. "[B, T, N, H]"."""
  if np.ndim(x) != rank:
    raise ValueError(f"{name} must have rank {rank} {dims}, got shape {np.shape(x)}")


def check_floating(name: str, x) -> None:
  """Raise TypeError unless `x` has a floating dtype."""
  if not jnp.issubdtype(jnp.result_type(x), jnp.floating):
    raise TypeError(f"{name} must have a floating dtype, got {jnp.result_type(x)}")


def check_broadcastable(name: str, shape: Sequence[int], target: Sequence[int], dims: str) -> None:
  """Raise ValueError unless an array of `shape` broadcasts to `target` without growing."""
  shape, target = tuple(shape), tuple(target)
  ok = len(shape) <= len(target) and all(
    s in (1, t) for s, t in zip(reversed(shape), reversed(target), strict=False)
  )
  if not ok:
    raise ValueError(f"{name} of shape {shape} does not broadcast to {dims} = {target}")


def check_bool_mask(name: str, mask, target: Sequence[int]) -> None:
  """Raise unless `mask` is bool and broadcasts to `target` = (B, N, T, S)."""
  if jnp.result_type(mask) != jnp.bool_:
    raise TypeError(
      f"{name} must be a bool array (True = may attend), got dtype {jnp.result_type(mask)}; "
      "convert explicitly, e.g. mask != 0"
    )
  check_broadcastable(name, np.shape(mask), target, "[B, N, T, S]")


def check_positive(name: str, value, *, allow_zero: bool = False) -> None:
  """Raise ValueError unless `value` is an int > 0 (or >= 0 with `allow_zero`)."""
  low = 0 if allow_zero else 1
  if not isinstance(value, (int, np.integer)) or isinstance(value, bool) or value < low:
    rule = "a non-negative int" if allow_zero else "a positive int"
    raise ValueError(f"{name} must be {rule}, got {value!r}")
