"""Decoding the tiny GPT-2 with the real vocabulary: greedy against the reference's tokens,
a left-padded batch against each prompt alone, top-p at its limits, end-of-text.

Golden files: tests/golden/gpt2_bpe_tiny (Hugging Face transformers' greedy continuations
of three prompts of 3, 10 and 8 tokens, each decoded on its own; see tests/golden/README.md).
The calls share shapes (B = 3, T = 10, M = 12 batched; B = 1 alone) to share compilations.
"""

import json
import pathlib

import jax
import numpy as np
import pytest
from safetensors.numpy import load_file

from tfmr_jax import decode
from tfmr_jax.models import from_hf

GOLDEN = pathlib.Path(__file__).parent / "golden" / "gpt2_bpe_tiny"
NEW = 12  # new tokens in the golden greedy_{i}


@pytest.fixture(scope="module")
def golden():
  config = json.loads((GOLDEN / "config.json").read_text())
  model = from_hf(load_file(GOLDEN / "model.safetensors"), config)
  return model, dict(np.load(GOLDEN / "reference.npz"))


def left_padded(ref, pad_id=50256):
  """The three golden prompts left-padded into ids_BT [3, 10] and valid_BT."""
  prompts = [ref[f"prompt_{i}"] for i in range(3)]
  T = max(len(p) for p in prompts)
  ids_BT = np.full((3, T), pad_id, np.int32)
  valid_BT = np.zeros((3, T), bool)
  for b, prompt in enumerate(prompts):
    ids_BT[b, T - len(prompt) :], valid_BT[b, T - len(prompt) :] = prompt, True
  return ids_BT, valid_BT


def new_tokens(ref, b):
  return ref[f"greedy_{b}"][len(ref[f"prompt_{b}"]) :]


def test_batched_left_padded_greedy_equals_the_reference_alone(golden):
  """Prompts of 3, 10 and 8 tokens in one batch give each prompt's own greedy tokens; pad ids
  that are real tokens (0 and eos) must not change a thing."""
  model, ref = golden
  ids_BT, valid_BT = left_padded(ref)
  for pad_id in (50256, 0):
    ids_BT[~valid_BT] = pad_id
    out = np.asarray(decode.generate(model, ids_BT, max_new_tokens=NEW, prompt_valid_BT=valid_BT))
    np.testing.assert_array_equal(out[:, :10], ids_BT)
    for b in range(3):
      np.testing.assert_array_equal(out[b, 10:], new_tokens(ref, b), err_msg=f"row {b}")


def test_without_the_valid_mask_padding_is_seen(golden):
  """The same batch with the pad tokens taken as real: the short rows change (so the mask
  is what makes the test above pass)."""
  model, ref = golden
  ids_BT, _ = left_padded(ref)
  out = np.asarray(decode.generate(model, ids_BT, max_new_tokens=NEW))
  assert not np.array_equal(out[0, 10:], new_tokens(ref, 0))


ALONE = (0, 2)  # the padded rows (row 1 is the longest prompt, unpadded in the batch)


@pytest.fixture(scope="module")
def sampled(golden):
  """Row b of a left-padded batch sampled at temperature 1, and the padded rows' prompts
  alone with row b's key; top_p = 1 and a tiny top_p, both batched and alone."""
  model, ref = golden
  ids_BT, valid_BT = left_padded(ref)
  keys_B = jax.random.split(jax.random.key(7), 3)
  out = {}
  for top_p in (1.0, 1e-6):
    options = dict(max_new_tokens=NEW, temperature=1.0, top_p=top_p)
    batch = decode.generate(model, ids_BT, rng=keys_B, prompt_valid_BT=valid_BT, **options)
    out["batch", top_p] = np.asarray(batch)[:, 10:]
    for b in ALONE:
      alone = decode.generate(model, ref[f"prompt_{b}"][None], rng=keys_B[b : b + 1], **options)
      out["alone", top_p, b] = np.asarray(alone)[0, len(ref[f"prompt_{b}"]) :]
  out["one key"] = np.asarray(
    decode.generate(
      model,
      ids_BT,
      rng=jax.random.key(7),
      prompt_valid_BT=valid_BT,
      max_new_tokens=NEW,
      temperature=1.0,
    )
  )[:, 10:]
  return out


def test_batched_sampling_equals_each_row_alone_with_its_key(sampled, golden):
  _, ref = golden
  for b in ALONE:
    np.testing.assert_array_equal(sampled["batch", 1.0][b], sampled["alone", 1.0, b])
  for b in range(3):  # sampling at temperature 1 from a random model leaves the greedy path
    assert not np.array_equal(sampled["batch", 1.0][b], new_tokens(ref, b))
  # One key is split into the row keys: the same draws.
  np.testing.assert_array_equal(sampled["one key"], sampled["batch", 1.0])


def test_tiny_top_p_is_greedy(sampled, golden):
  _, ref = golden
  for b in range(3):
    np.testing.assert_array_equal(sampled["batch", 1e-6][b], new_tokens(ref, b))
  for b in ALONE:
    np.testing.assert_array_equal(sampled["alone", 1e-6, b], new_tokens(ref, b))


def test_sampling_is_deterministic_for_a_key(golden, sampled):
  model, ref = golden
  ids_BT, valid_BT = left_padded(ref)
  options = dict(max_new_tokens=NEW, temperature=1.0, prompt_valid_BT=valid_BT)
  again = decode.generate(model, ids_BT, rng=jax.random.split(jax.random.key(7), 3), **options)
  np.testing.assert_array_equal(np.asarray(again)[:, 10:], sampled["batch", 1.0])
  other = decode.generate(model, ids_BT, rng=jax.random.split(jax.random.key(8), 3), **options)
  assert not np.array_equal(np.asarray(other)[:, 10:], sampled["batch", 1.0])


@pytest.mark.parametrize("eos_id", [13411, 3465])
def test_eos_ends_a_row(golden, eos_id):
  """eos = a token the greedy continuations produce: each row is its golden tokens up to
  and including the first eos, then eos only. 13411 ends all three rows (the last at new
  token 11, so the loop stops one step early); 3465 ends rows 1 and 2 only."""
  model, ref = golden
  ids_BT, valid_BT = left_padded(ref)
  out = np.asarray(
    decode.generate(model, ids_BT, max_new_tokens=NEW, prompt_valid_BT=valid_BT, eos_id=eos_id)
  )[:, 10:]
  lengths = decode.lengths_to_eos(out, eos_id)
  for b in range(3):
    want = new_tokens(ref, b).copy()
    hits = np.flatnonzero(want == eos_id)
    end = hits[0] if len(hits) else NEW
    want[end:] = eos_id
    np.testing.assert_array_equal(out[b], want, err_msg=f"row {b}")
    assert lengths[b] == end
  if eos_id == 3465:
    assert lengths[0] == NEW  # row 0 never produces it


def test_bad_valid_masks_and_options_are_refused_before_compiling(golden):
  model, ref = golden
  ids_BT, valid_BT = left_padded(ref)
  cases = [
    (dict(prompt_valid_BT=valid_BT[:, 1:]), "prompt_valid_BT must be bool of the prompt's shape"),
    (dict(prompt_valid_BT=valid_BT.astype(int)), r"must be bool .* got int64 \(3, 10\)"),
    (dict(prompt_valid_BT=valid_BT & (np.arange(3) != 1)[:, None]), "row 1 has no real token"),
    (dict(prompt_valid_BT=valid_BT[:, ::-1].copy()), "row 0 = .* is not left-padded"),
    (dict(eos_id=50257), r"eos_id must be None or an int in \[0, vocab_size=50257\), got 50257"),
    (dict(eos_id=-1), r"eos_id must be None or an int in \[0, vocab_size=50257\), got -1"),
    (dict(top_p=0.0, temperature=1.0), r"top_p must be a number in \(0, 1\] .* got 0.0"),
    (dict(top_p=1.5, temperature=1.0), r"top_p must be a number in \(0, 1\] .* got 1.5"),
    (dict(top_p=float("nan")), r"top_p must be a number in \(0, 1\] .* got nan"),
    (dict(max_new_tokens=55), r"T=10 \+ max_new_tokens=55 exceeds the model's max_len=64"),
    (
      dict(temperature=1.0, rng=jax.random.split(jax.random.key(0), 2)),
      r"rng must be one key or one key per row, shape \(B=3,\), got \(2,\)",
    ),
  ]
  before = decode._generate._cache_size()
  for kwargs, message in cases:
    kwargs = {"max_new_tokens": 2, "rng": jax.random.key(0), **kwargs}
    with pytest.raises(ValueError, match=message):
      decode.generate(model, ids_BT, **kwargs)
  assert decode._generate._cache_size() == before
