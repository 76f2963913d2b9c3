"""The guards of decoding's public entry points (`decode`, `decode_beam`).

Dimension key: B batch, T prompt length, V vocabulary.

Each raises one ValueError (TypeError for a wrong dtype) naming the argument, its value
and the rule, on concrete Python or NumPy values, before anything compiles.
"""

import math
import numbers

import jax.numpy as jnp
import numpy as np

from tfmr_jax.models.parts import check_token_range
from tfmr_jax.ops.guards import check_positive, check_rank


def check_tokens(name: str, tokens, vocab_size: int):
  """int [B, T] ids in [0, vocab_size) (the range is checked on concrete arrays) -> int32."""
  check_rank(name, tokens, 2, "[B, T]")
  if not jnp.issubdtype(jnp.result_type(tokens), jnp.integer):
    raise TypeError(f"{name} must be integer token ids, got dtype {jnp.result_type(tokens)}")
  check_token_range(name, tokens, vocab_size)
  return jnp.asarray(tokens, jnp.int32)


def check_sampling_options(
  *, max_new_tokens: int, temperature, top_k: int | None, top_p=1.0
) -> float:
  """Raise ValueError unless max_new_tokens > 0, temperature is a finite real number >= 0
  (any real type: float, int, np.float32), top_k is None or a positive int and top_p a
  number in (0, 1]; returns the temperature as a float. `generate` also checks top_k <= V
  and the max_len."""
  check_positive("max_new_tokens", max_new_tokens)
  if not is_real(temperature) or not math.isfinite(temperature) or temperature < 0:
    raise ValueError(f"temperature must be a finite number >= 0 (0 = greedy), got {temperature!r}")
  if top_k is not None:
    check_positive("top_k", top_k)
  if not is_real(top_p) or not 0 < top_p <= 1:  # NaN fails the comparison too
    raise ValueError(f"top_p must be a number in (0, 1] (1 = no nucleus filter), got {top_p!r}")
  return float(temperature)


def is_real(value) -> bool:
  return isinstance(value, numbers.Real) and not isinstance(value, bool)


def check_sampling(temperature, top_k, top_p, rng, vocab_size: int) -> bool:
  """Validate the sampling options (max_new_tokens is checked before); True for greedy."""
  temperature = check_sampling_options(
    max_new_tokens=1, temperature=temperature, top_k=top_k, top_p=top_p
  )
  if top_k is not None and top_k > vocab_size:
    raise ValueError(f"top_k={top_k} must lie in [1, vocab_size={vocab_size}]")
  greedy = temperature == 0
  if not greedy and rng is None:
    raise ValueError(f"temperature={temperature} samples, so rng (a jax.random key) is required")
  return greedy


def check_eos(eos_id, vocab_size: int) -> None:
  if eos_id is not None and (
    not isinstance(eos_id, numbers.Integral)
    or isinstance(eos_id, bool)
    or not 0 <= eos_id < vocab_size
  ):
    raise ValueError(
      f"eos_id must be None or an int in [0, vocab_size={vocab_size}), got {eos_id!r}"
    )


def check_prompt_valid(prompt_valid_BT, shape: tuple[int, int]) -> np.ndarray:
  """bool [B, T], each row left-padded (pad tokens first, then at least one real token)."""
  if prompt_valid_BT is None:
    return np.ones(shape, bool)
  valid_BT = np.asarray(prompt_valid_BT)
  if valid_BT.dtype != np.bool_ or valid_BT.shape != shape:
    raise ValueError(
      f"prompt_valid_BT must be bool of the prompt's shape {shape} (True = real token), got "
      f"{valid_BT.dtype} {valid_BT.shape}"
    )
  for b, row_T in enumerate(valid_BT):
    if not row_T.any():
      raise ValueError(f"prompt_valid_BT row {b} has no real token: every prompt needs one")
    if not row_T[np.argmax(row_T) :].all():
      raise ValueError(
        f"prompt_valid_BT row {b} = {row_T.astype(int).tolist()} is not left-padded: pad "
        "tokens (False) must all come before the real ones (True)"
      )
  return valid_BT


def static_top_k(top_k: int | None, vocab_size: int) -> int | None:
  """top_k = V keeps every token: the same compilation as None."""
  return None if top_k is None or top_k >= vocab_size else int(top_k)
