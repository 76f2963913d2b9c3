"""The weights a new run starts from: `config.train.init_from`.

  ""        a fresh init (`build_model`)
  "hf:DIR"  the Hugging Face GPT-2 in the folder DIR (config.json + model.safetensors)
  "DIR"     a tfmr_jax work directory: the parameters of its latest intact checkpoint

The model section must describe the architecture of those weights; nothing is taken
from DIR silently, so the run's own config.json rebuilds the model, and resume,
evaluate and sample never read DIR's weights again (a text task may still read its
tokenizer there). A mismatch is a ConfigError naming the field, the recipe's value and
DIR's, raised before the corpus is tokenized or anything compiles (`check_init_from`),
as are a block_size past DIR's positions and, once the task is built, a vocabulary
other than the tokenizer's (`check_vocab`). When DIR has more positions than
block_size, its position table is cropped to the first block_size rows (nanoGPT's
`crop_block_size`). Dropout is the recipe's `model.dropout`, not DIR's.
"""

import dataclasses
import os

import jax
import jax.numpy as jnp

from tfmr_jax import config as config_lib
from tfmr_jax.config.schema import HF_PREFIX
from tfmr_jax.models import TransformerConfig, config_from_hf, hf_files, load_hf_dir
from tfmr_jax.nn import state as model_state
from tfmr_jax.train.run import load_run
from tfmr_jax.train.run_config import has_config, load_config

ConfigError = config_lib.ConfigError
# TransformerConfig fields that are no part of the weights: the sizes are checked against
# the task (vocab_size, max_len), the rest is the run's own choice.
_NOT_ARCHITECTURE = (
  "vocab_size",
  "max_len",
  "dropout",
  "dtype",
  "param_dtype",
  "attention_implementation",
  "init_std",  # how fresh weights would be drawn: the imported ones replace them
)
_HF_NAMES = {  # TransformerConfig field -> its name in a Hugging Face GPT-2 config.json
  "num_layers": "n_layer",
  "d_model": "n_embd",
  "num_heads": "n_head",
  "d_ff": "n_inner",
  "ln_eps": "layer_norm_epsilon",
}


def hf_folder(init_from: str) -> str | None:
  """DIR of init_from = "hf:DIR", else None."""
  return init_from.removeprefix(HF_PREFIX) if init_from.startswith(HF_PREFIX) else None


def check_init_from(config) -> None:
  """ConfigError unless `config.train.init_from` names weights this run's model can start
  from: the folder exists with its files, the architecture is the model section's, and
  block_size fits its positions. Reads DIR's config files only."""
  init_from = config.train.init_from
  if not init_from:
    return
  where = f"config.train.init_from = {init_from!r}"
  folder = hf_folder(init_from)
  path = folder if folder is not None else init_from
  if not os.path.isdir(path):
    raise ConfigError(f"{where}: folder {path!r} does not exist")
  if folder is not None:
    theirs = _hf_architecture(folder, where=where)
    _check_same_architecture(config, theirs, where=where)
    block_size = config.task.get("block_size")
    if block_size is not None and block_size > theirs.max_len:
      raise ConfigError(
        f"config.task.block_size = {block_size}: must be at most the {theirs.max_len} "
        f"positions (n_positions) of the weights of {where}"
      )
    return
  if not has_config(path) or not _checkpoint_steps(path):
    raise ConfigError(
      f"{where}: {path!r} is not a tfmr_jax work directory with a checkpoint (config.json "
      "and checkpoints/<step>); for a Hugging Face folder write 'hf:' before it"
    )
  other = load_config(path)
  for field, value in config.model.items():
    if field in _NOT_ARCHITECTURE:
      continue
    if other.model[field] != value:
      raise ConfigError(
        f"config.model.{field} = {value!r}: {where} is a run with model.{field} = "
        f"{other.model[field]!r}; the model section must match the weights it starts from"
      )


def check_vocab(config, task) -> None:
  """ConfigError unless Hugging Face weights have the task's (the tokenizer's) vocab size.
  (A work directory's token table is checked by shape as it loads.)"""
  folder = hf_folder(config.train.init_from)
  if folder is None:
    return
  V = _hf_architecture(folder, where="").vocab_size
  if V != task.vocab_size:
    source = (
      f"the tokenizer in config.task.tokenizer_dir = {config.task.tokenizer_dir!r}"
      if "tokenizer_dir" in config.task
      else f"task {task.name!r}"
    )
    raise ConfigError(
      f"config.train.init_from = {config.train.init_from!r}: its vocab_size = {V} differs "
      f"from the {task.vocab_size} tokens of {source}; they must be equal"
    )


def initial_params(config, params):
  """`params` (the fresh model's nnx.Param State) replaced by those `init_from` names,
  cast to their dtypes; the position table cropped to this model's rows."""
  init_from = config.train.init_from
  folder = hf_folder(init_from)
  if folder is not None:
    model = _load_hf_model(folder, dtype=config.model.dtype, param_dtype=config.model.param_dtype)
    theirs = model_state.params_of(model)
  else:
    theirs = load_run(init_from).state.params
  return _fit(theirs, params, where=f"config.train.init_from = {init_from!r}")


def _load_hf_model(folder: str, *, dtype: str, param_dtype: str):
  """The GPT2 in the Hugging Face folder `folder`, its errors as ConfigErrors naming init_from."""
  where = f"config.train.init_from = {HF_PREFIX}{folder}"
  try:
    return load_hf_dir(folder, dtype=dtype, param_dtype=param_dtype)
  except (FileNotFoundError, ValueError) as e:
    raise ConfigError(f"{where}: {e}") from None


def _read_hf_config(folder: str, *, where: str) -> dict:
  """The folder's config.json, once its weights are known to be there (checked before the
  corpus is tokenized or anything compiles)."""
  try:
    path = hf_files.check_folder(folder)
    if not any((path / name).is_file() for name in (hf_files.WEIGHTS, hf_files.WEIGHTS_INDEX)):
      raise FileNotFoundError(
        f"folder {folder!r} has no {hf_files.WEIGHTS} (a Hugging Face GPT-2 folder holds "
        f"{hf_files.CONFIG} and {hf_files.WEIGHTS})"
      )
    return hf_files.read_config(path)
  except (FileNotFoundError, ValueError) as e:
    raise ConfigError(f"{where}: {e}") from None


def _hf_architecture(folder: str, *, where: str) -> TransformerConfig:
  """The TransformerConfig of the GPT-2 in `folder`; ConfigError if it is not one we load."""
  path = os.path.join(folder, "config.json")
  try:
    return config_from_hf(_read_hf_config(folder, where=where))
  except ValueError as e:
    raise ConfigError(f"{where}: {path!r}: {e}") from None


def _check_same_architecture(config, theirs: TransformerConfig, *, where: str) -> None:
  """ConfigError naming the first architecture field where config.model differs from
  the Hugging Face GPT-2 `theirs`."""
  ours = config_lib.model_config(config.model, vocab_size=theirs.vocab_size, max_len=theirs.max_len)
  for field in dataclasses.fields(TransformerConfig):
    name = field.name
    if name in _NOT_ARCHITECTURE:
      continue
    mine, other = getattr(ours, name), getattr(theirs, name)
    if name == "num_kv_heads":  # None = num_heads
      mine, other = mine or ours.num_heads, other or theirs.num_heads
    if mine == other:
      continue
    hf_name = f" ({_HF_NAMES[name]} in its config.json)" if name in _HF_NAMES else ""
    theirs_text = f"{where} holds a GPT-2 with {name} = {other!r}{hf_name}"
    if name not in config.model:
      raise ConfigError(
        f"the model's {name} = {mine!r}: {theirs_text}, which the model section cannot express"
      )
    given = config.model[name]
    resolved = "" if given == mine else f" (that is {mine!r})"
    raise ConfigError(
      f"config.model.{name} = {given!r}{resolved}: {theirs_text}; the model section must "
      f"match the weights it starts from (set --config.model.{name}={other})"
    )


def _checkpoint_steps(workdir: str) -> list[int]:
  directory = os.path.join(workdir, "checkpoints")
  if not os.path.isdir(directory):
    return []
  return sorted(int(d) for d in os.listdir(directory) if d.isdigit())


def _fit(theirs, ours, *, where: str):
  """`ours` with every leaf replaced by the same path's leaf of `theirs`, cast to our dtype;
  a position table with more rows is cropped; any other difference is a ConfigError."""
  ours_leaves, treedef = jax.tree_util.tree_flatten_with_path(ours)
  by_path = {jax.tree_util.keystr(p): x for p, x in jax.tree_util.tree_flatten_with_path(theirs)[0]}
  names = [jax.tree_util.keystr(p) for p, _ in ours_leaves]
  missing, unexpected = sorted(set(names) - set(by_path)), sorted(set(by_path) - set(names))
  if missing or unexpected:
    raise ConfigError(
      f"{where}: its parameters are not this model's: missing {missing[:3]}, "
      f"unexpected {unexpected[:3]}"
    )
  leaves = []
  for name, (_, x) in zip(names, ours_leaves, strict=True):
    y = by_path[name]
    if y.shape != x.shape:
      crop = "position" in name and y.ndim == 2 and y.shape[1:] == x.shape[1:]
      if not (crop and y.shape[0] > x.shape[0]):
        raise ConfigError(
          f"{where}: parameter {name} has shape {tuple(y.shape)} there, "
          f"{tuple(x.shape)} in this model"
        )
      y = y[: x.shape[0]]
    leaves.append(jnp.asarray(y, x.dtype))
  return jax.tree_util.tree_unflatten(treedef, leaves)
