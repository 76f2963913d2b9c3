"""load_hf_dir and the from_hf dispatch: a good folder loads, each bad one gets its own error.

Every error names the file (or the folder), and where it applies the field and the rule.
"""

import json
import pathlib
import shutil

import jax
import numpy as np
import pytest
from flax import nnx
from safetensors.numpy import load_file, save_file

from tfmr_jax.models import HFConfigError, HFWeightsError, from_hf, load_hf_dir
from tfmr_jax.models.hf import IMPORTERS

GOLDEN = pathlib.Path(__file__).parents[1] / "golden" / "gpt2_tiny"
REFERENCE = dict(np.load(GOLDEN / "logits.npz"))


@pytest.fixture
def folder(tmp_path):
  """A copy of the golden Hugging Face folder, to break."""
  return pathlib.Path(shutil.copytree(GOLDEN, tmp_path / "gpt2_tiny"))


def test_the_golden_folder_loads_with_the_reference_logits():
  model = load_hf_dir(GOLDEN)
  logits = jax.jit(lambda t: model(t))(REFERENCE["tokens"])
  error = np.abs(np.asarray(logits) - REFERENCE["logits"]).max()
  assert error <= 1e-4, error


def test_a_sharded_folder_loads_the_same_model(folder):
  weights = load_file(folder / "model.safetensors")
  names = sorted(weights)
  shards = {"model-00001-of-00002.safetensors": names[:10], "model-00002-of-00002.safetensors": []}
  shards["model-00002-of-00002.safetensors"] = names[10:]
  for shard, shard_names in shards.items():
    save_file({k: weights[k] for k in shard_names}, folder / shard, metadata={"format": "pt"})
  weight_map = {name: shard for shard, shard_names in shards.items() for name in shard_names}
  (folder / "model.safetensors.index.json").write_text(json.dumps({"weight_map": weight_map}))
  (folder / "model.safetensors").unlink()
  sharded, single = (nnx.state(load_hf_dir(f), nnx.Param) for f in (folder, GOLDEN))
  jax.tree.map(np.testing.assert_array_equal, sharded, single)
  (folder / "model-00002-of-00002.safetensors").unlink()
  with pytest.raises(FileNotFoundError, match="00002.safetensors', a shard named in"):
    load_hf_dir(folder)


def _write_config(folder, **changes):
  config = json.loads((folder / "config.json").read_text())
  config = {k: v for k, v in {**config, **changes}.items() if v is not ...}
  (folder / "config.json").write_text(json.dumps(config))


def _write_weights(folder, **changes):
  weights = {**load_file(folder / "model.safetensors"), **changes}
  save_file(weights, folder / "model.safetensors")


def _break(folder, how):
  if how == "no folder":
    shutil.rmtree(folder)
  elif how == "a file":
    shutil.rmtree(folder)
    folder.write_text("")
  elif how == "no config.json":
    (folder / "config.json").unlink()
  elif how == "invalid JSON":
    (folder / "config.json").write_text('{"n_embd": 36,')
  elif how == "a JSON list":
    (folder / "config.json").write_text("[1, 2]")
  elif how == "mistral":
    _write_config(folder, model_type="mistral")
  elif how == "no model_type, not GPT-2":
    _write_config(folder, model_type=..., n_embd=..., hidden_size=36)
  elif how == "exact GELU":
    _write_config(folder, activation_function="gelu")
  elif how == "untied":
    _write_config(folder, tie_word_embeddings=False)
  elif how == "bad size":
    _write_config(folder, n_head=5)
  elif how == "eps not a number":
    _write_config(folder, layer_norm_epsilon="1e-5")
  elif how == "no weights":
    (folder / "model.safetensors").unlink()
  elif how == "torch only":
    (folder / "model.safetensors").rename(folder / "pytorch_model.bin")
  elif how == "not safetensors":
    (folder / "model.safetensors").write_bytes(b"\x00" * 64)
  elif how == "wrong shape":
    _write_weights(folder, **{"transformer.wpe.weight": np.zeros((31, 36), np.float32)})
  elif how == "integer weights":
    _write_weights(folder, **{"transformer.h.1.ln_2.bias": np.zeros((36,), np.int32)})
  elif how == "missing tensor":
    weights = load_file(folder / "model.safetensors")
    del weights["transformer.h.0.mlp.c_fc.bias"]
    save_file(weights, folder / "model.safetensors")


BAD_FOLDERS = [
  ("no folder", FileNotFoundError, r"gpt2_tiny' does not exist: expected a Hugging Face model"),
  ("a file", FileNotFoundError, r"gpt2_tiny' is a file, not a folder"),
  ("no config.json", FileNotFoundError, r"config.json' does not exist"),
  ("invalid JSON", HFConfigError, r"config.json' is not valid JSON"),
  ("a JSON list", HFConfigError, r"config.json' holds a list; it must be a JSON object"),
  (
    "mistral",
    HFConfigError,
    r"config.json': model_type='mistral' is not supported: must be one of \('gpt2', 'llama'\)",
  ),
  ("no model_type, not GPT-2", HFConfigError, r"config.json': .*no model_type and lacks 'n_embd'"),
  ("exact GELU", HFConfigError, r"config.json': activation_function='gelu' is not supported"),
  ("untied", HFConfigError, r"config.json': .*tie_word_embeddings=False is not supported"),
  ("bad size", HFConfigError, r"config.json': .*num_heads=5: must divide d_model=36"),
  ("eps not a number", HFConfigError, r"json': .*layer_norm_epsilon='1e-5' must be a number"),
  ("no weights", FileNotFoundError, r"model.safetensors' does not exist"),
  ("torch only", FileNotFoundError, r"holds pytorch_model.bin .* convert the folder to safetens"),
  ("not safetensors", HFWeightsError, r"model.safetensors' is not a readable safetensors file"),
  (
    "wrong shape",
    HFWeightsError,
    r"model.safetensors': state_dict\['wpe.weight'\] has shape \(31, 36\), expected \(32, 36\)",
  ),
  (
    "integer weights",
    HFWeightsError,
    r"model.safetensors': state_dict\['h.1.ln_2.bias'\] has dtype int32; .* floating point",
  ),
  ("missing tensor", HFWeightsError, r"missing 1 key\(s\), first 'h.0.mlp.c_fc.bias'"),
]


@pytest.mark.parametrize("how,error,message", BAD_FOLDERS, ids=[b[0] for b in BAD_FOLDERS])
def test_each_bad_folder_gets_its_error(folder, how, error, message):
  _break(folder, how)
  with pytest.raises(error, match=message):
    load_hf_dir(folder)


def test_from_hf_dispatches_on_model_type():
  weights = load_file(GOLDEN / "model.safetensors")
  config = json.loads((GOLDEN / "config.json").read_text())
  assert set(IMPORTERS) == {"gpt2", "llama"}
  without_type = {k: v for k, v in config.items() if k != "model_type"}
  guessed, typed = (nnx.state(from_hf(weights, c), nnx.Param) for c in (without_type, config))
  jax.tree.map(np.testing.assert_array_equal, guessed, typed)  # GPT-2's keys, no model_type
  with pytest.raises(ValueError, match=r"model_type='bert' is not supported: must be one of"):
    from_hf(weights, {**config, "model_type": "bert"})
  with pytest.raises(TypeError, match="hf_config must be a dict"):
    from_hf(weights, "config.json")
