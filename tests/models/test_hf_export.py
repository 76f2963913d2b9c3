"""to_hf: the exported folder is Hugging Face's GPT-2, holds the model bit for bit, or is refused.

The golden folder tests/golden/gpt2_tiny was written by transformers' `save_pretrained`
(tests/golden/README.md): importing it and exporting again must give its tensors back,
name for name and bit for bit.
"""

import json
import os
import pathlib

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx
from safetensors.numpy import load_file

from tests.models.numpy_gpt2 import gpt2_logits
from tfmr_jax.models import (
  GPT2,
  ModelConfigError,
  TransformerConfig,
  TransformerEncoder,
  from_hf,
  hf_files,
  hf_gpt2,
  load_hf_dir,
  to_hf,
)

GOLDEN = pathlib.Path(__file__).parents[1] / "golden" / "gpt2_tiny"
# Prime-ish sizes, d_ff not 4 D (so n_inner is written), dropout recorded in config.json.
RANDOM = TransformerConfig.gpt(
  vocab_size=29, max_len=13, num_layers=2, num_heads=2, d_model=10, d_ff=22, dropout=0.1
)


@pytest.fixture(scope="module")
def golden():
  state_dict = load_file(GOLDEN / "model.safetensors")
  hf_config = json.loads((GOLDEN / "config.json").read_text())
  return state_dict, hf_config, from_hf(state_dict, hf_config)


def trained_ish(config: TransformerConfig, seed: int = 0) -> GPT2:
  """A GPT2 with every parameter drawn at random, biases and LayerNorms too, as after
  training (not its init, where biases are 0 and LayerNorm scales 1). NumPy draws them:
  no JAX random op to compile."""
  model = nnx.eval_shape(lambda: GPT2(config, rngs=nnx.Rngs(seed)))
  rng = np.random.default_rng(seed)
  for _, variable in nnx.iter_graph(model):
    if isinstance(variable, nnx.Param):
      shape, dtype = variable.get_value().shape, variable.get_value().dtype
      variable.set_value(jnp.asarray(rng.normal(0.0, 0.5, shape), dtype))
  model.eval()
  return model


def params_of(model) -> dict[str, np.ndarray]:
  return {
    jax.tree_util.keystr(path): np.asarray(leaf)
    for path, leaf in jax.tree_util.tree_leaves_with_path(nnx.state(model, nnx.Param))
  }


def assert_same_params(a, b):
  pa, pb = params_of(a), params_of(b)
  assert sorted(pa) == sorted(pb)
  for name in pa:
    assert pa[name].dtype == pb[name].dtype, name
    np.testing.assert_array_equal(pa[name], pb[name], err_msg=name)


@pytest.mark.parametrize("name", ["gpt2_tiny", "gpt2_bpe_tiny"])
def test_golden_round_trip_writes_the_golden_tensors_and_config(name, tmp_path):
  """Both golden folders, as `save_pretrained` wrote them; gpt2_bpe_tiny has GPT-2's real
  vocabulary of 50,257 tokens, so its config has bos and eos 50256."""
  folder = GOLDEN.parent / name
  state_dict = load_file(folder / "model.safetensors")
  hf_config = json.loads((folder / "config.json").read_text())
  model = load_hf_dir(folder)
  out = to_hf(model, tmp_path / name)
  assert sorted(os.listdir(out)) == ["config.json", "model.safetensors"]
  written = load_file(out / "model.safetensors")
  assert sorted(written) == sorted(state_dict)  # transformer.* names; no lm_head.weight
  for key, want in state_dict.items():
    assert written[key].dtype == want.dtype, key
    np.testing.assert_array_equal(written[key], want, err_msg=key)
  config = json.loads((out / "config.json").read_text())
  differs = {k: (config[k], hf_config.get(k)) for k in config if config[k] != hf_config.get(k)}
  P = hf_config["n_positions"]
  assert differs == {"n_ctx": (P, None)}  # transformers 5 no longer writes n_ctx
  assert_same_params(load_hf_dir(out), model)


@pytest.mark.parametrize("param_dtype", ["float32", "bfloat16"])
def test_random_gpt_round_trips_bit_for_bit_with_identical_logits(param_dtype, tmp_path):
  model = trained_ish(
    TransformerConfig.gpt(**{**_sizes(RANDOM), "dropout": 0.1, "param_dtype": param_dtype})
  )
  out = to_hf(model, tmp_path / "out")
  config = json.loads((out / "config.json").read_text())
  assert (config["n_inner"], config["resid_pdrop"], config["embd_pdrop"]) == (22, 0.1, 0.1)
  assert config["dtype"] == param_dtype
  assert {a.dtype for a in load_file(out / "model.safetensors").values()} == {
    np.dtype(jnp.dtype(param_dtype))
  }
  back = load_hf_dir(out, param_dtype=param_dtype)
  assert_same_params(back, model)
  tokens = jnp.asarray(np.random.default_rng(0).integers(0, 29, (2, 13)))
  if param_dtype == "float32":  # the same parameters give the same logits; once is enough
    logits = [np.asarray(jax.jit(lambda t, m=m: m(t))(tokens)) for m in (back, model)]
    np.testing.assert_array_equal(logits[0], logits[1])
    # The written tensors, read by a NumPy GPT-2 that shares no code with the importer.
    want = gpt2_logits(load_file(out / "model.safetensors"), np.asarray(tokens), num_heads=2)
    np.testing.assert_allclose(logits[1], want, atol=1e-4, rtol=1e-5)


def _sizes(c: TransformerConfig) -> dict:
  names = ("vocab_size", "max_len", "num_layers", "num_heads", "d_model", "d_ff")
  return {name: getattr(c, name) for name in names}


def test_config_json_holds_gpt2s_fields():
  c = TransformerConfig.gpt2_124m()
  config = hf_gpt2.config_to_hf(c)
  assert config["architectures"] == ["GPT2LMHeadModel"] and config["model_type"] == "gpt2"
  assert (config["bos_token_id"], config["eos_token_id"]) == (50256, 50256)
  assert (config["n_embd"], config["n_head"], config["n_layer"]) == (768, 12, 12)
  assert (config["n_positions"], config["n_ctx"], config["vocab_size"]) == (1024, 1024, 50257)
  assert (config["n_inner"], config["activation_function"]) == (None, "gelu_new")
  assert (config["layer_norm_epsilon"], config["tie_word_embeddings"]) == (1e-5, True)
  assert hf_gpt2.config_from_hf(config) == c  # and back


@pytest.mark.parametrize(
  "field,value",
  [
    ("norm", "post"),
    ("positions", "sinusoidal"),
    ("positions", "none"),
    ("activation", "relu"),
    ("tie_output", False),
    ("scale_embeddings", True),
    ("use_bias", False),
    ("num_kv_heads", 1),
    ("window", 4),
  ],
)
def test_refuses_what_gpt2s_format_cannot_hold(field, value, tmp_path):
  config = TransformerConfig.gpt(**{**_sizes(RANDOM), field: value})
  model = nnx.eval_shape(lambda: GPT2(config, rngs=nnx.Rngs(0)))
  with pytest.raises(ModelConfigError, match="Hugging Face's GPT-2 format holds only") as error:
    to_hf(model, tmp_path / "out")
  assert (error.value.field, error.value.value) == (field, value)
  assert f"{field}={value!r}: " in str(error.value)
  assert not os.listdir(tmp_path)


def test_dropout_rates_go_to_their_pdrop_keys():
  config = TransformerConfig.gpt(**_sizes(RANDOM), dropout=0.1, attention_dropout=0.2)
  hf = hf_gpt2.config_to_hf(config)
  assert (hf["resid_pdrop"], hf["embd_pdrop"], hf["attn_pdrop"]) == (0.1, 0.1, 0.2)


def test_refuses_a_model_of_another_family(tmp_path):
  config = TransformerConfig(vocab_size=7, max_len=5, num_layers=1, num_heads=1, d_model=4)
  model = nnx.eval_shape(lambda: TransformerEncoder(config, rngs=nnx.Rngs(0)))
  with pytest.raises(TypeError, match="model is a TransformerEncoder: .* holds only a GPT2"):
    to_hf(model, tmp_path / "out")


def test_refuses_to_overwrite_unless_asked(golden, tmp_path):
  model = golden[2]
  out = tmp_path / "out"
  out.mkdir()
  to_hf(model, out)  # an empty folder is fine
  (out / "tokenizer.json").write_text("{}")
  with pytest.raises(FileExistsError, match="exists and is not empty; .* overwrite=True"):
    to_hf(model, out)
  assert sorted(os.listdir(out)) == ["config.json", "model.safetensors", "tokenizer.json"]
  to_hf(model, out, overwrite=True)  # replaced whole
  assert sorted(os.listdir(out)) == ["config.json", "model.safetensors"]
  (tmp_path / "file").write_text("")
  with pytest.raises(FileExistsError, match="is a file"):
    to_hf(model, tmp_path / "file")
  assert sorted(os.listdir(tmp_path)) == ["file", "out"]  # no temporary folder left


def test_a_failed_write_leaves_nothing(golden, tmp_path, monkeypatch):
  def fail_half_way(tensors, path, metadata=None):
    pathlib.Path(path).write_bytes(b"half a file")
    raise OSError("No space left on device")

  monkeypatch.setattr(hf_files, "save_file", fail_half_way)
  with pytest.raises(OSError, match="No space left"):
    to_hf(golden[2], tmp_path / "new")
  old = tmp_path / "old"
  old.mkdir()
  (old / "config.json").write_text("{}")
  with pytest.raises(OSError, match="No space left"):
    to_hf(golden[2], old, overwrite=True)
  assert sorted(os.listdir(tmp_path)) == ["old"] and os.listdir(old) == ["config.json"]
