"""What every Hugging Face importer checks: the errors it raises and the state-dict checks.

A family's importer (`hf_gpt2.py`, `hf_llama.py`) raises `HFConfigError` for a
`config.json` it cannot take and `HFWeightsError` for weights that do not fit;
`load_hf_dir` names the file each came from. Both are ValueErrors.
"""

from collections.abc import Mapping

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx


class HFConfigError(ValueError):
  """A Hugging Face config breaks a rule; the message names the field, the value and the rule."""


class HFWeightsError(ValueError):
  """A Hugging Face state dict does not fit the config; the message names the tensor."""


def check_weights(
  weights: Mapping[str, np.ndarray],
  expected: Mapping[str, tuple[int, ...]],
  *,
  ignored_suffixes: tuple[str, ...] = (),
) -> None:
  """Raise HFWeightsError unless `weights` holds exactly the `expected` names and shapes.

  Every weight must be floating point (float32, float16, bfloat16, ...): a cast from
  integers or bools would load silently wrong values. Names ending in one of
  `ignored_suffixes` (buffers such as causal masks) may be present and are skipped.
  """
  missing = sorted(set(expected) - set(weights))
  if missing:
    raise HFWeightsError(f"state_dict is missing {len(missing)} key(s), first {missing[0]!r}")
  unexpected = sorted(k for k in set(weights) - set(expected) if not k.endswith(ignored_suffixes))
  if unexpected:
    raise HFWeightsError(f"state_dict has unexpected key(s) {unexpected[:5]}")
  for key, shape in expected.items():
    got = tuple(np.shape(weights[key]))
    if got != shape:
      raise HFWeightsError(f"state_dict[{key!r}] has shape {got}, expected {shape}")
    dtype = np.asarray(weights[key]).dtype
    if not jnp.issubdtype(dtype, jnp.floating):
      raise HFWeightsError(
        f"state_dict[{key!r}] has dtype {dtype}; weights must be floating point (a cast from "
        "integers or bools would load silently wrong values)"
      )


def set_weight(variable, array) -> None:
  """Load `array` into `variable` in the variable's own dtype (the config's param_dtype)."""
  variable.set_value(jnp.asarray(array, variable.get_value().dtype))


def check_all_set(model, *, importer: str) -> None:
  """RuntimeError naming every parameter of `model` (built by `nnx.eval_shape`) that the
  importer left as a shape only: a mapping that forgot a tensor fails loudly."""
  unset = [
    jax.tree_util.keystr(path)
    for path, leaf in jax.tree_util.tree_leaves_with_path(nnx.state(model))
    if isinstance(leaf, jax.ShapeDtypeStruct)
  ]
  if unset:
    raise RuntimeError(f"{importer} left parameters unset: {unset}")
