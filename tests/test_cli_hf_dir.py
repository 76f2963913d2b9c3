"""tfmr-jax sample / evaluate --hf-dir: the tiny GPT-2 with GPT-2's real tokenizer, end to end.

The references are Hugging Face transformers' (tests/golden/gpt2_bpe_tiny): greedy tokens of
three prompts decoded alone, and the per-token loss of text.txt by the strided windows.
"""

import json
import pathlib

import numpy as np
import pytest

from tfmr_jax import cli
from tfmr_jax.tasks.tokenizer import load_tokenizer

GOLDEN = pathlib.Path(__file__).parent / "golden" / "gpt2_bpe_tiny"
PROMPTS = ["Hello world!", "The mean of that surprise, in nats,", "東京駅 🙂"]  # the golden's


@pytest.fixture(scope="module")
def ref():
  return dict(np.load(GOLDEN / "reference.npz"))


def run(capsys, *argv):
  rc = cli.main(list(argv))
  out, err = capsys.readouterr()
  assert rc == 0, err
  return out


def sample(capsys, hf_dir, *options):
  prompts = [f"--prompt={p}" for p in PROMPTS]
  out = run(capsys, "sample", f"--hf-dir={hf_dir}", *prompts, "--max-new-tokens=12", *options)
  assert out.endswith("\n")
  return out[:-1].split("\n---\n")


def test_greedy_texts_are_the_reference_tokens_decoded(gpt2_hf_dir, ref, capsys):
  texts = sample(capsys, gpt2_hf_dir, "--temperature=0")
  tokenizer = load_tokenizer(str(gpt2_hf_dir))
  want = [tokenizer.decode(ref[f"greedy_{i}"]) for i in range(3)]
  assert texts == want
  assert all(text.startswith(prompt) for text, prompt in zip(texts, PROMPTS, strict=True))


def test_sampling_is_deterministic_for_a_seed(gpt2_hf_dir, capsys):
  options = ("--temperature=1", "--top-p=0.95")
  first = sample(capsys, gpt2_hf_dir, *options, "--seed=3")
  assert sample(capsys, gpt2_hf_dir, *options, "--seed=3") == first
  assert sample(capsys, gpt2_hf_dir, *options, "--seed=4") != first


def test_perplexity_equals_the_reference(gpt2_hf_dir, ref, capsys):
  """Windows of the model's context (64), stride 32 by default: the reference's scheme."""
  text = str(GOLDEN / "text.txt")
  metrics = json.loads(run(capsys, "evaluate", f"--hf-dir={gpt2_hf_dir}", f"--text={text}"))
  want = float(ref["nll"].mean())
  assert metrics["tokens"] == len(ref["nll"]) == 166
  np.testing.assert_allclose(metrics["mean_loss"], want, rtol=1e-5)
  np.testing.assert_allclose(metrics["perplexity"], np.exp(want), rtol=1e-5)
  # Overlapping by one token, the later windows' first tokens lose their context.
  other = json.loads(
    run(capsys, "evaluate", f"--hf-dir={gpt2_hf_dir}", f"--text={text}", "--stride=63")
  )
  assert other["tokens"] == 166 and abs(other["mean_loss"] - want) > 1e-3 * want


@pytest.mark.parametrize("as_list", [False, True], ids=["int", "list"])
def test_a_row_ends_at_the_folders_eos_token_id(gpt2_hf_dir, ref, capsys, as_list):
  """config.json's eos_token_id ends a row, whatever the tokenizer calls end of text (a
  Llama folder's is not <|endoftext|>); a list (Llama 3's) ends it at its first id."""
  tokenizer = load_tokenizer(str(gpt2_hf_dir))
  P = len(tokenizer.encode(PROMPTS[0]))
  greedy = ref["greedy_0"]
  eos = int(greedy[P + 2])  # the third new token becomes the end of text
  assert eos not in greedy[P : P + 2]
  config = json.loads((gpt2_hf_dir / "config.json").read_text())
  config["eos_token_id"] = [eos, tokenizer.eot_id] if as_list else eos
  (gpt2_hf_dir / "config.json").write_text(json.dumps(config))
  texts = sample(capsys, gpt2_hf_dir, "--temperature=0")
  assert texts[0] == tokenizer.decode(greedy[: P + 2])


@pytest.mark.parametrize("eos", ["x", -1, True, 10**6, ["x"]])
def test_a_bad_eos_token_id_is_one_error_naming_the_field(gpt2_hf_dir, capsys, eos):
  config = json.loads((gpt2_hf_dir / "config.json").read_text())
  config["eos_token_id"] = eos
  (gpt2_hf_dir / "config.json").write_text(json.dumps(config))
  assert cli.main(["sample", f"--hf-dir={gpt2_hf_dir}", "--prompt=Hi"]) == 2
  err = capsys.readouterr().err.strip()
  assert err.count("\n") == 0, err
  assert f"config.json eos_token_id = {eos!r}: must be a token id in [0, vocab_size=" in err
