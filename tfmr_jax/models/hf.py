"""Hugging Face models in and out, one entry point for every family, without torch.

  model = from_hf(state_dict, hf_config)   # dispatches on hf_config["model_type"]
  model = load_hf_dir("gpt2/")             # a folder: config.json + model.safetensors
  to_hf(model, "out/")                     # a folder transformers loads (GPT-2 today)

A family plugs in with its importer in `IMPORTERS`: a function
`(state_dict, hf_config, *, dtype, param_dtype) -> model` that raises `HFConfigError`
for a config it cannot take and `HFWeightsError` for weights that do not fit
(`hf_checks.check_weights` does the usual checks). The family modules import
`hf_checks` and `hf_files`, never this module, which imports them.
"""

import pathlib
from collections.abc import Callable, Mapping

import numpy as np
from flax import nnx

from tfmr_jax.models import hf_files, hf_gpt2, hf_llama
from tfmr_jax.models.hf_checks import HFConfigError, HFWeightsError
from tfmr_jax.models.hf_gpt2 import config_from_hf

IMPORTERS: dict[str, Callable[..., nnx.Module]] = {
  hf_gpt2.MODEL_TYPE: hf_gpt2.from_hf_gpt2,
  "llama": hf_llama.from_hf_llama,
}

__all__ = [
  "IMPORTERS",
  "HFConfigError",
  "HFWeightsError",
  "config_from_hf",
  "from_hf",
  "load_hf_dir",
  "model_type_of",
  "to_hf",
]


def model_type_of(hf_config: Mapping) -> str:
  """The family of a Hugging Face config: its `model_type`, one of `IMPORTERS`.

  A config without model_type is GPT-2's if it has GPT-2's keys (n_embd, n_head, ...).
  Raises HFConfigError naming model_type, its value and the supported ones otherwise.
  """
  if not isinstance(hf_config, Mapping):
    raise TypeError(f"hf_config must be a dict (config.json), got {type(hf_config).__name__}")
  supported = tuple(IMPORTERS)
  if "model_type" not in hf_config:
    if hf_gpt2.is_gpt2_config(hf_config):
      return hf_gpt2.MODEL_TYPE
    missing = [key for key in hf_gpt2.REQUIRED_KEYS if key not in hf_config]
    raise HFConfigError(
      f"Hugging Face config has no model_type and lacks {missing[0]!r}, so it is not GPT-2's "
      f"(which has {hf_gpt2.REQUIRED_KEYS}); model_type must be one of {supported}"
    )
  model_type = hf_config["model_type"]
  if model_type not in IMPORTERS:
    raise HFConfigError(f"model_type={model_type!r} is not supported: must be one of {supported}")
  return model_type


def from_hf(
  state_dict: Mapping[str, np.ndarray],
  hf_config: Mapping,
  *,
  attention_fn: Callable | None = None,
  dtype: str = "float32",
  param_dtype: str = "float32",
) -> nnx.Module:
  """The model a Hugging Face state dict and config describe, for any family in `IMPORTERS`.

  Args:
    state_dict: HF parameter names -> NumPy arrays (`safetensors.numpy.load_file`).
    hf_config: the HF `config.json` as a dict; its `model_type` picks the importer.
    attention_fn: the op every layer runs (GPT-2's importer takes it; None = default).
    dtype, param_dtype: the model's compute and parameter dtypes; weights are cast
      to param_dtype as they load.

  Raises HFConfigError (a ValueError) for an unsupported model_type or config, and
  HFWeightsError (a ValueError) naming the tensor for weights that do not fit.
  """
  importer = IMPORTERS[model_type_of(hf_config)]
  options = {} if attention_fn is None else {"attention_fn": attention_fn}
  return importer(state_dict, hf_config, dtype=dtype, param_dtype=param_dtype, **options)


def to_hf(model: nnx.Module, out_dir, *, overwrite: bool = False) -> pathlib.Path:
  """Write `model` to `out_dir` as a Hugging Face folder; returns `out_dir` as a Path.

  GPT-2 (the one family Hugging Face's format holds today): `config.json` that
  transformers loads as GPT2LMHeadModel, and `model.safetensors` named as its state
  dict (`transformer.wte.weight`, ...; Conv1D weights [in, out], `c_attn` fused;
  no `lm_head.weight`, tied to wte, as `save_pretrained` writes it) in the model's
  param_dtype. The write is atomic.

  Raises TypeError for a model that is not a GPT2, ModelConfigError (a ValueError)
  naming the field, its value and the rule for a config the format cannot hold, and
  FileExistsError for a non-empty `out_dir` unless `overwrite`.
  """
  hf_config, state_dict = hf_gpt2.to_hf_gpt2(model)
  return hf_files.write_folder(out_dir, hf_config, state_dict, overwrite=overwrite)


def load_hf_dir(path, *, dtype: str = "float32", param_dtype: str = "float32") -> nnx.Module:
  """The model in a Hugging Face folder: `config.json` and `model.safetensors` (or its
  sharded index). Tokenizer files are not read.

  Raises FileNotFoundError naming the path for a missing folder, config or weights
  (and, for a folder of torch pickles only, how to convert it); HFConfigError naming
  config.json, the field and the rule for invalid JSON or a config of another
  architecture; HFWeightsError naming the weights file and the tensor for weights of
  the wrong name, shape or dtype.
  """
  folder = hf_files.check_folder(path)
  hf_config = hf_files.read_config(folder)
  config_path = str(folder / hf_files.CONFIG)
  try:
    model_type_of(hf_config)
  except HFConfigError as e:
    raise HFConfigError(f"{config_path!r}: {e}") from None
  state_dict, weights_path = hf_files.read_weights(folder)
  try:
    return from_hf(state_dict, hf_config, dtype=dtype, param_dtype=param_dtype)
  except HFConfigError as e:
    raise HFConfigError(f"{config_path!r}: {e}") from None
  except HFWeightsError as e:
    raise HFWeightsError(f"{str(weights_path)!r}: {e}") from None
