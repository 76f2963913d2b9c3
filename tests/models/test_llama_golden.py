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
from tfmr_jax.models.hf_llama import from_hf_llama

GOLDEN = pathlib.Path(__file__).parents[1] / "golden" / "llama_tiny"


@pytest.fixture(scope="module")
def golden():
  state_dict = load_file(GOLDEN / "model.safetensors")
  config = json.loads((GOLDEN / "config.json").read_text())
  return from_hf_llama(state_dict, config), dict(np.load(GOLDEN / "logits.npz"))


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
