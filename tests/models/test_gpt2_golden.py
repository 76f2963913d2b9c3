"""Imported Hugging Face GPT-2 weights reproduce the reference logits and greedy tokens.

Golden files: tests/golden/gpt2_tiny (made by tests/golden/make_gpt2_golden.py with
transformers' GPT2LMHeadModel; see tests/golden/README.md).
"""

import json
import pathlib

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from safetensors.numpy import load_file

from tfmr_jax import decode
from tfmr_jax.models import from_hf

GOLDEN = pathlib.Path(__file__).parents[1] / "golden" / "gpt2_tiny"


@pytest.fixture(scope="module")
def golden():
  state_dict = load_file(GOLDEN / "model.safetensors")
  config = json.loads((GOLDEN / "config.json").read_text())
  return from_hf(state_dict, config), dict(np.load(GOLDEN / "logits.npz"))


def test_logits_match_reference(golden):
  model, ref = golden
  logits = jax.jit(lambda t: model(t))(jnp.asarray(ref["tokens"]))
  error = np.abs(np.asarray(logits) - ref["logits"]).max()
  assert error <= 1e-4, f"max abs logit error {error:.3g}"  # measured 4.9e-6


def test_greedy_tokens_match_reference(golden):
  model, ref = golden
  prompt = ref["prompt"]
  new = ref["greedy"].shape[1] - prompt.shape[1]
  out = decode.generate(model, prompt, max_new_tokens=new, temperature=0.0)
  np.testing.assert_array_equal(np.asarray(out), ref["greedy"])
