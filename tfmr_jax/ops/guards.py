"""Argument checks shared by the ops, the masked-logit constant and two shape helpers.

Dimension key: B batch, T query length, S key/value length, N query heads, K kv heads,
G = N // K, H head dim; lower case (b, n, t, s) for axes that may be 1 and broadcast.

Every op imports this module; it imports no other ops module. The rank, shape, dtype
and broadcast checks go through chex's static assertions, which read shapes and dtypes
only, so under `jax.jit` they run while tracing and cost nothing after. A failed one
is raised again as one ValueError or TypeError that names the argument, what it got
and the rule it broke (chex's own message would name "input 0").
"""

from collections.abc import Callable, Sequence

import chex
import jax
import jax.numpy as jnp
import numpy as np

# Large, finite: exp(MASKED - max) underflows to exactly 0 in float32, and a row
# of nothing but MASKED stays finite (the ops zero it afterwards).
MASKED_LOGIT = -0.7 * float(jnp.finfo(jnp.float32).max)


def _require(assertion: Callable, *args, error: type[Exception], message: str, **kwargs) -> None:
  """Run a chex assertion; where it fails, raise `error(message)` in its place."""
  try:
    assertion(*args, **kwargs)
  except AssertionError:
    raise error(message) from None


def _array_like(x):
  """x itself when it has a shape and a dtype (arrays, tracers), else np.asarray(x)."""
  return x if hasattr(x, "shape") and hasattr(x, "dtype") else np.asarray(x)


def check_rank(name: str, x, rank: int, dims: str) -> None:
  """Raise ValueError unless `x` has `rank` axes; `dims` spells them, e.g. "[B, T, N, H]"."""
  x = _array_like(x)
  message = f"{name} must have rank {rank} {dims}, got shape {np.shape(x)}"
  _require(chex.assert_rank, x, rank, error=ValueError, message=message)


def check_floating(name: str, x) -> None:
  """Raise TypeError unless `x` has a floating dtype."""
  message = f"{name} must have a floating dtype, got {jnp.result_type(x)}"
  _require(chex.assert_type, _array_like(x), jnp.floating, error=TypeError, message=message)


def check_broadcastable(name: str, shape: Sequence[int], target: Sequence[int], dims: str) -> None:
  """Raise ValueError unless an array of `shape` broadcasts to `target` without growing."""
  shape, target = tuple(shape), tuple(target)
  message = f"{name} of shape {shape} does not broadcast to {dims} = {target}"
  _require(chex.assert_is_broadcastable, shape, target, error=ValueError, message=message)


def check_bool_mask(name: str, mask, target: Sequence[int]) -> None:
  """Raise unless `mask` is bool and broadcasts to `target` = (B, N, T, S)."""
  message = (
    f"{name} must be a bool array (True = may attend), got dtype {jnp.result_type(mask)}; "
    "convert explicitly, e.g. mask != 0"
  )
  _require(chex.assert_type, _array_like(mask), bool, error=TypeError, message=message)
  check_broadcastable(name, np.shape(mask), target, "[B, N, T, S]")


def check_positive(name: str, value, *, allow_zero: bool = False) -> None:
  """Raise ValueError unless `value` is an int > 0 (or >= 0 with `allow_zero`)."""
  low = 0 if allow_zero else 1
  if not isinstance(value, (int, np.integer)) or isinstance(value, bool) or value < low:
    rule = "a non-negative int" if allow_zero else "a positive int"
    raise ValueError(f"{name} must be {rule}, got {value!r}")


def check_is_causal(is_causal, *, T: int, S: int) -> None:
  """Raise unless `is_causal` is a Python bool, and, when True, S >= T.

  A traced or array value is refused: the causal structure must be known while
  tracing (pass a traced rule as a `mask` instead).
  """
  if not isinstance(is_causal, bool):
    raise TypeError(
      f"is_causal must be a Python bool (static; use mask= for a rule known only at run time), "
      f"got {type(is_causal).__name__} {is_causal!r}"
    )
  if is_causal and S < T:
    raise ValueError(
      f"is_causal=True needs S >= T (queries are the last T of S keys), got T={T}, S={S}"
    )


def check_window(window) -> None:
  """Raise ValueError unless `window` is None or a positive Python int (bool refused).

  The window is static structure (it decides which blocks exist), so a traced or array
  value is refused too.
  """
  if window is None:
    return
  if (
    not isinstance(window, (int, np.integer)) or isinstance(window, (bool, np.bool_)) or window < 1
  ):
    raise ValueError(
      f"window must be None or a positive int (the number of keys a query sees, itself "
      f"included), got {window!r}"
    )


def check_dropout(dropout_rate, dropout_rng) -> None:
  """Raise unless 0 <= dropout_rate < 1 (a static number) and, when it is > 0, dropout_rng
  is one jax random key: a typed key of shape () or a raw uint32 key of shape (2,)."""
  value = np.asarray(dropout_rate) if not isinstance(dropout_rate, jax.core.Tracer) else None
  number = (
    value is not None
    and value.shape == ()
    and value.dtype != bool
    and np.issubdtype(value.dtype, np.number)
    and not np.issubdtype(value.dtype, np.complexfloating)
  )
  if not (number and 0.0 <= float(value) < 1.0):
    raise ValueError(
      f"dropout_rate must be a number in [0, 1) (the probability of dropping an attention "
      f"probability; static, not traced), got {dropout_rate!r}"
    )
  if float(value) == 0.0:
    return
  if dropout_rng is None:
    raise ValueError(
      f"dropout_rng is required when dropout_rate > 0 (got dropout_rate={dropout_rate!r}): "
      "pass a jax random key, e.g. jax.random.key(0)"
    )
  dtype, shape = getattr(dropout_rng, "dtype", None), np.shape(dropout_rng)
  typed = dtype is not None and jnp.issubdtype(dtype, jax.dtypes.prng_key) and shape == ()
  raw = dtype == jnp.uint32 and shape == (2,)
  if not (typed or raw):
    raise ValueError(
      "dropout_rng must be one jax random key (jax.random.key(seed), shape (), or a raw "
      f"uint32 key of shape (2,)), got dtype {dtype} and shape {shape}"
    )


def check_scale(scale) -> None:
  """Raise ValueError unless `scale` is None or a finite real scalar (traced: unchecked)."""
  if scale is None or isinstance(scale, jax.core.Tracer):
    return
  value = np.asarray(scale)
  real = value.shape == () and value.dtype != bool and np.issubdtype(value.dtype, np.number)
  if not (real and np.isfinite(value)):
    raise ValueError(f"scale must be a finite number (the logit scale) or None, got {scale!r}")


def check_attention_args(
  q_BTNH, k_BSKH, v_BSKH, mask, bias, *, scale=None, is_causal: bool = False, window=None
) -> tuple[int, int, int, int, int, int]:
  """Validate the shared arguments of every attention implementation.

  Returns (B, T, S, N, K, H). Raises ValueError/TypeError naming the argument.
  """
  check_rank("q_BTNH", q_BTNH, 4, "[B, T, N, H]")
  check_rank("k_BSKH", k_BSKH, 4, "[B, S, K, H]")
  check_rank("v_BSKH", v_BSKH, 4, "[B, S, K, H]")
  for name, x in (("q_BTNH", q_BTNH), ("k_BSKH", k_BSKH), ("v_BSKH", v_BSKH)):
    check_floating(name, x)
  message = f"k_BSKH and v_BSKH must have the same shape, got {k_BSKH.shape} and {v_BSKH.shape}"
  _require(chex.assert_equal_shape, [k_BSKH, v_BSKH], error=ValueError, message=message)
  message = f"q_BTNH {q_BTNH.shape} and k_BSKH {k_BSKH.shape} must agree on batch B and head dim H"
  _require(
    chex.assert_equal_shape, [q_BTNH, k_BSKH], dims=(0, 3), error=ValueError, message=message
  )
  B, T, N, H = q_BTNH.shape
  S, K = k_BSKH.shape[1:3]
  if H < 1:
    raise ValueError(f"head dim H must be at least 1, got q_BTNH {q_BTNH.shape}")
  check_scale(scale)
  message = (
    f"query heads N={N} must be a multiple of kv heads K={K} (q {q_BTNH.shape}, k {k_BSKH.shape})"
  )
  _require(chex.assert_is_divisible, N, K, error=ValueError, message=message)
  check_is_causal(is_causal, T=T, S=S)
  check_window(window)
  target = (B, N, T, S)
  if mask is not None:
    check_bool_mask("mask", mask, target)
  if bias is not None:
    check_floating("bias", bias)
    check_broadcastable("bias", jnp.shape(bias), target, "[B, N, T, S]")
  return B, T, S, N, K, H


def as_array(x):
  """None stays None; a Python list or tuple (e.g. a nested list of bools) becomes an array."""
  return jnp.asarray(x) if isinstance(x, list | tuple) else x


def as_rank4(x_NTS):
  """A broadcastable [.., N, T, S] array as rank 4 [b, n, t, s]; None stays None.

  Leading axes of size 1 are added, so jax.nn and the grouped helpers see four axes.
  """
  if x_NTS is None:
    return None
  x = jnp.asarray(x_NTS)
  return x.reshape((1,) * (4 - x.ndim) + x.shape)


def grouped(x_NTS, K: int, G: int):
  """A broadcastable [.., N, T, S] array as rank 5 [b, K|1, G|1, t, s].

  Query head n = k * G + g; an array without a head axis (n = 1) keeps K = G = 1.
  """
  x_bnts = as_rank4(x_NTS)
  b, n, t, s = x_bnts.shape
  return x_bnts.reshape(b, K if n > 1 else 1, G if n > 1 else 1, t, s)
