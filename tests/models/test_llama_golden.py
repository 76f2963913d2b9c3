"""Imported Hugging Face Llama weights reproduce the reference logits and greedy tokens.

Golden files: tests/golden/llama_tiny (made by tests/golden/make_llama_golden.py with
transformers' LlamaForCausalLM: GQA, RoPE base 500, RMSNorm eps 1e-5, SwiGLU, untied head;
see tests/golden/README.md).
"""

import json
import pathlib

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from safetensors.numpy import load_file

from tfmr_jax import decode
from tfmr_jax.models import from_hf, load_hf_dir

GOLDEN = pathlib.Path(__file__).parents[1] / "golden" / "llama_tiny"


@pytest.fixture(scope="module")
def golden():
  """The golden folder through the one entry point for every family (model_type "llama")."""
  return load_hf_dir(GOLDEN), dict(np.load(GOLDEN / "logits.npz"))


def test_bfloat16_weights_load(golden):
  """Llama checkpoints are stored in bfloat16: they load, each weight exactly its bf16 value."""
  model, _ = golden
  state_dict = {
    k: v.astype(jnp.bfloat16) for k, v in load_file(GOLDEN / "model.safetensors").items()
  }
  config = json.loads((GOLDEN / "config.json").read_text())
  bf16 = from_hf(state_dict, config)
  got = np.asarray(bf16.layers[0].feed_forward.out.kernel.get_value())
  want = np.asarray(state_dict["model.layers.0.mlp.down_proj.weight"], np.float32).T
  np.testing.assert_array_equal(got, want)
  assert not np.array_equal(got, np.asarray(model.layers[0].feed_forward.out.kernel.get_value()))


def test_logits_match_reference(golden):
  model, ref = golden
  logits = jax.jit(lambda t: model(t))(jnp.asarray(ref["tokens"]))
  error = np.abs(np.asarray(logits) - ref["logits"]).max()
  assert error <= 1e-4, f"max abs logit error {error:.3g}"  # measured 9.9e-6; eps 1e-6: 3e-3


def test_greedy_tokens_match_reference(golden):
  model, ref = golden
  prompt = ref["prompt"]
  new = ref["greedy"].shape[1] - prompt.shape[1]
  out = decode.generate(model, prompt, max_new_tokens=new, temperature=0.0)
  np.testing.assert_array_equal(np.asarray(out), ref["greedy"])


def test_left_padded_batch_decodes_each_row_as_alone(golden):
  """RoPE positions and pad keys in a left-padded batch: each row continues as it would
  alone (the pad row must not shift its rotations or be attended to)."""
  model, ref = golden
  long_T, short_T = ref["prompt"][0], ref["prompt"][1][-3:]
  alone = [
    np.asarray(decode.generate(model, p[None], max_new_tokens=6))[0, len(p) :]
    for p in (long_T, short_T)
  ]
  T = len(long_T)
  ids_BT = np.zeros((2, T), np.int32)
  ids_BT[0], ids_BT[1, T - 3 :] = long_T, short_T
  valid_BT = np.ones((2, T), bool)
  valid_BT[1, : T - 3] = False
  out_BT = decode.generate(model, ids_BT, max_new_tokens=6, prompt_valid_BT=valid_BT)
  np.testing.assert_array_equal(np.asarray(out_BT)[:, T:], np.stack(alone))
