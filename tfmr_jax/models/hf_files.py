"""A Hugging Face model folder on disk: `config.json` and safetensors weights, read and written.

Reading takes `model.safetensors` or a sharded `model.safetensors.index.json`; a folder
with only torch pickles (`pytorch_model.bin`) is refused, since reading those needs
torch. Writing is atomic: the files go to a temporary folder beside the target, which
is renamed into place only once everything is written, so a failure leaves nothing
half-written. Every error names the file (and where it applies the field and the rule).
"""

import json
import os
import pathlib
import secrets
import shutil

import numpy as np
from safetensors import SafetensorError
from safetensors.numpy import load_file, save_file

from tfmr_jax.models.hf_checks import HFConfigError, HFWeightsError

CONFIG = "config.json"
WEIGHTS = "model.safetensors"
WEIGHTS_INDEX = "model.safetensors.index.json"
TORCH_WEIGHTS = ("pytorch_model.bin", "pytorch_model.bin.index.json")


def check_folder(path) -> pathlib.Path:
  """`path` as a Path; FileNotFoundError unless it is an existing folder."""
  folder = pathlib.Path(path)
  if not folder.is_dir():
    what = "is a file, not a folder" if folder.exists() else "does not exist"
    raise FileNotFoundError(
      f"{str(folder)!r} {what}: expected a Hugging Face model folder holding {CONFIG} and {WEIGHTS}"
    )
  return folder


def read_config(folder: pathlib.Path) -> dict:
  """The `config.json` of `folder` as a dict.

  FileNotFoundError if it is missing; HFConfigError if it is not a JSON object.
  """
  path = folder / CONFIG
  if not path.is_file():
    raise FileNotFoundError(f"{str(path)!r} does not exist: a Hugging Face model folder needs one")
  try:
    config = json.loads(path.read_text(encoding="utf-8"))
  except (UnicodeDecodeError, json.JSONDecodeError) as e:
    raise HFConfigError(f"{str(path)!r} is not valid JSON: {e}") from None
  if not isinstance(config, dict):
    raise HFConfigError(f"{str(path)!r} holds a {type(config).__name__}; it must be a JSON object")
  return config


def read_weights(folder: pathlib.Path) -> tuple[dict[str, np.ndarray], pathlib.Path]:
  """(name -> array, the file read): `model.safetensors`, else the shards of its index.

  FileNotFoundError if neither exists (saying to convert a torch-only folder to
  safetensors); HFWeightsError if a file cannot be read as safetensors.
  """
  single, index = folder / WEIGHTS, folder / WEIGHTS_INDEX
  if single.is_file():
    return _load(single), single
  if index.is_file():
    return _load_shards(index), index
  torch_files = [name for name in TORCH_WEIGHTS if (folder / name).is_file()]
  if torch_files:
    raise FileNotFoundError(
      f"{str(folder)!r} holds {torch_files[0]} but no {WEIGHTS}: torch pickles cannot be read "
      "without torch; convert the folder to safetensors first (in an environment with torch "
      "and transformers: from_pretrained(folder).save_pretrained(out, safe_serialization=True))"
    )
  raise FileNotFoundError(f"{str(single)!r} does not exist (nor {WEIGHTS_INDEX})")


def _load(path: pathlib.Path) -> dict[str, np.ndarray]:
  try:
    return load_file(path)
  except (SafetensorError, OSError, ValueError, TypeError) as e:
    raise HFWeightsError(f"{str(path)!r} is not a readable safetensors file: {e}") from None


def _load_shards(index: pathlib.Path) -> dict[str, np.ndarray]:
  """Every tensor the index's `weight_map` names, read from its shard."""
  try:
    weight_map = json.loads(index.read_text(encoding="utf-8"))["weight_map"]
  except (UnicodeDecodeError, json.JSONDecodeError, KeyError, TypeError) as e:
    raise HFWeightsError(
      f"{str(index)!r} is not a safetensors index (JSON with a 'weight_map'): {e!r}"
    ) from None
  weights = {}
  for shard in sorted(set(weight_map.values())):
    path = index.parent / shard
    if not path.is_file():
      raise FileNotFoundError(f"{str(path)!r}, a shard named in {str(index)!r}, does not exist")
    weights.update(_load(path))
  missing = sorted(set(weight_map) - set(weights))
  if missing:
    raise HFWeightsError(f"{str(index)!r} names {missing[0]!r}, which no shard holds")
  return weights


def write_folder(
  out_dir, hf_config: dict, state_dict: dict[str, np.ndarray], *, overwrite: bool = False
) -> pathlib.Path:
  """Write `config.json` and `model.safetensors` into `out_dir`, atomically.

  FileExistsError if `out_dir` is a file, or a non-empty folder and not `overwrite`.
  With `overwrite`, the old folder is replaced whole (its other files go with it).
  """
  out = pathlib.Path(out_dir)
  if out.exists() and not out.is_dir():
    raise FileExistsError(f"{str(out)!r} is a file; the export writes a folder there")
  if out.is_dir() and any(out.iterdir()) and not overwrite:
    raise FileExistsError(
      f"{str(out)!r} exists and is not empty; choose another folder or pass overwrite=True"
    )
  out.parent.mkdir(parents=True, exist_ok=True)
  tmp = out.parent / f".{out.name}.tmp-{os.getpid()}-{secrets.token_hex(4)}"
  tmp.mkdir()  # mkdir, unlike mkdtemp, gives the umask's permissions to the final folder
  try:
    save_file(state_dict, tmp / WEIGHTS, metadata={"format": "pt"})  # what transformers expects
    (tmp / CONFIG).write_text(json.dumps(hf_config, indent=2, sort_keys=True) + "\n")
    for name in (WEIGHTS, CONFIG):
      with open(tmp / name, "rb") as f:
        os.fsync(f.fileno())
    _move_into_place(tmp, out)
  except BaseException:
    shutil.rmtree(tmp, ignore_errors=True)
    raise
  return out


def _move_into_place(tmp: pathlib.Path, out: pathlib.Path) -> None:
  """Rename `tmp` to `out`; a non-empty `out` is first moved aside, then deleted."""
  if not out.exists() or not any(out.iterdir()):
    os.replace(tmp, out)  # rename(2) replaces an empty folder
    return
  old = out.parent / f".{out.name}.old-{os.getpid()}-{secrets.token_hex(4)}"
  os.rename(out, old)
  try:
    os.rename(tmp, out)
  except BaseException:
    os.rename(old, out)
    raise
  shutil.rmtree(old, ignore_errors=True)
