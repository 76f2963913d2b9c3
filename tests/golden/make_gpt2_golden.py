"""Make the GPT-2 golden files: a tiny random GPT-2 and its logits from Hugging Face transformers.

COMMAND:  python tests/golden/make_gpt2_golden.py   (in an environment with torch + transformers,
          kept apart from the project's own; see tests/golden/README.md)
EXPECTED: rewrites tests/golden/gpt2_tiny/ (about 170 KB) bit for bit; a few seconds on CPU.

Committed files were made with torch 2.13.0+cpu, transformers 5.23.0, safetensors 0.8.0,
numpy 2.4.6, Python 3.11.7 (also recorded in gpt2_tiny/versions.json).

What it writes to tests/golden/gpt2_tiny/:
  config.json, generation_config.json, model.safetensors  `GPT2LMHeadModel.save_pretrained`
      output. The tensor names carry the `transformer.` prefix; `lm_head.weight` is tied to
      `transformer.wte.weight` and is NOT in the file (HF drops tied copies on save).
      Conv1D weights are stored [in, out]; `c_attn` packs q, k, v along the output axis.
  logits.npz
      tokens  int32 [2, 17]        random token ids, seeded NumPy RNG
      logits  float32 [2, 17, 101] eval-mode forward pass on `tokens`, no padding
      prompt  int32 [2, 5]         = tokens[:, :5]
      greedy  int32 [2, 17]        prompt + 12 greedy tokens from `generate(do_sample=False)`;
                                   no eos token, so no row stops early
  versions.json  library versions and the settings above.

Beyond HF's own init (normal with std `initializer_range`, LayerNorm at 1 / 0, biases at 0) every
LayerNorm weight is redrawn from N(1, 0.2) and every bias from N(0, 0.2), so an importer that maps
any tensor to the wrong place, transposes it, or drops it gives different logits.
"""

import json
import platform
from pathlib import Path

import numpy as np
import safetensors
import torch
import transformers
from transformers import GPT2Config, GPT2LMHeadModel

OUT_DIR = Path(__file__).resolve().parent / "gpt2_tiny"
# Seed 12 is the first of 0..39 whose greedy continuations are varied (7 distinct tokens in each
# row, not one token repeated) with a top-1 / top-2 logit margin above 0.05 at every step, so a
# correct port reproduces `greedy` exactly and a broken KV cache cannot hide behind a repeat.
SEED = 12
MIN_MARGIN, MIN_DISTINCT = 0.05, 6
BATCH, SEQ_LEN, PROMPT_LEN, NEW_TOKENS = 2, 17, 5, 12
PERTURB_STD = 0.2


def make_config():
  """The tiny config: all sizes distinct (V=101 D=36 N=3 H=12 F=144 P=32) so swapped axes fail."""
  return GPT2Config(
    vocab_size=101,
    n_positions=32,
    n_embd=36,
    n_layer=2,
    n_head=3,
    activation_function="gelu_new",
    resid_pdrop=0.0,
    embd_pdrop=0.0,
    attn_pdrop=0.0,
    initializer_range=0.2,
    bos_token_id=None,
    eos_token_id=None,
    pad_token_id=None,
    attn_implementation="eager",
  )


def randomize_norms_and_biases(model, *, std):
  """Redraw LayerNorm weights from N(1, std) and every bias from N(0, std), in place."""
  with torch.no_grad():
    for name, param in model.named_parameters():
      is_norm = ".ln_" in name or name.startswith("ln_")
      if name.endswith(".bias"):
        param.normal_(0.0, std)
      elif is_norm and name.endswith(".weight"):
        param.normal_(1.0, std)


def main():
  torch.manual_seed(SEED)
  config = make_config()
  model = GPT2LMHeadModel(config).to(torch.float32)
  randomize_norms_and_biases(model, std=PERTURB_STD)
  model.eval()
  assert model.config._attn_implementation == "eager", model.config._attn_implementation
  assert model.lm_head.weight.data_ptr() == model.transformer.wte.weight.data_ptr()

  rng = np.random.default_rng(SEED)
  tokens_BT = rng.integers(0, config.vocab_size, size=(BATCH, SEQ_LEN)).astype(np.int32)
  prompt_BT = tokens_BT[:, :PROMPT_LEN].copy()

  with torch.no_grad():
    logits_BTV = model(torch.from_numpy(tokens_BT).long()).logits.numpy().astype(np.float32)
    prompt = torch.from_numpy(prompt_BT).long()
    out = model.generate(
      prompt,
      attention_mask=torch.ones_like(prompt),
      max_new_tokens=NEW_TOKENS,
      min_new_tokens=NEW_TOKENS,
      do_sample=False,
      num_beams=1,
      eos_token_id=None,
      pad_token_id=config.vocab_size - 1,
      output_scores=True,
      return_dict_in_generate=True,
    )
  greedy_BT = out.sequences.numpy().astype(np.int32)
  top2 = torch.stack(out.scores, dim=1).topk(2, dim=-1).values
  margin = float((top2[..., 0] - top2[..., 1]).min())
  distinct = min(len(set(row.tolist())) for row in greedy_BT[:, PROMPT_LEN:])

  assert greedy_BT.shape == (BATCH, PROMPT_LEN + NEW_TOKENS), greedy_BT.shape
  assert (greedy_BT[:, :PROMPT_LEN] == prompt_BT).all()
  # The first generated token is the argmax of the full forward pass at the prompt's last step.
  first_V = logits_BTV[:, PROMPT_LEN - 1].argmax(-1)
  assert (greedy_BT[:, PROMPT_LEN] == first_V).all(), (greedy_BT, first_V)
  assert margin > MIN_MARGIN and distinct >= MIN_DISTINCT, (margin, distinct, greedy_BT)

  OUT_DIR.mkdir(parents=True, exist_ok=True)
  model.save_pretrained(OUT_DIR, safe_serialization=True)
  np.savez(
    OUT_DIR / "logits.npz", tokens=tokens_BT, logits=logits_BTV, prompt=prompt_BT, greedy=greedy_BT
  )
  versions = {
    "python": platform.python_version(),
    "torch": torch.__version__,
    "transformers": transformers.__version__,
    "safetensors": safetensors.__version__,
    "numpy": np.__version__,
    "attn_implementation": "eager",
    "seed": SEED,
    "perturb_std": PERTURB_STD,
    "max_new_tokens": NEW_TOKENS,
    "greedy_min_top2_margin": round(margin, 4),
  }
  (OUT_DIR / "versions.json").write_text(json.dumps(versions, indent=2) + "\n")
  for path in sorted(OUT_DIR.iterdir()):
    print(f"{path.name:24s} {path.stat().st_size:8d} bytes")


if __name__ == "__main__":
  main()
