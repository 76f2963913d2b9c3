"""Make the Llama golden files: a tiny random Llama and its logits from Hugging Face transformers.

COMMAND:  python tests/golden/make_llama_golden.py   (in an environment with torch + transformers,
          kept apart from the project's own; see tests/golden/README.md)
EXPECTED: rewrites tests/golden/llama_tiny/ (about 200 KB) bit for bit; under a minute on CPU.

Committed files were made with torch 2.13.0+cpu, transformers 5.23.0, safetensors 0.8.0,
numpy 2.4.6, Python 3.11.7 (also recorded in llama_tiny/versions.json).

What it writes to tests/golden/llama_tiny/:
  config.json, generation_config.json, model.safetensors  `LlamaForCausalLM.save_pretrained`
      output. Tensor names `model.*` and `lm_head.weight` (untied). torch Linear weights are
      stored [out, in]; q_proj / k_proj rows are head-major, each head's dims in the
      "rotate_half" layout (RoPE pairs dim i with dim i + H/2).
  logits.npz
      tokens  int32 [2, 33]        random token ids, seeded NumPy RNG
      logits  float32 [2, 33, 97]  eval-mode forward pass on `tokens`, no padding
      prompt  int32 [2, 6]         = tokens[:, :6]
      greedy  int32 [2, 26]        prompt + 20 greedy tokens from `generate(do_sample=False)`
                                   (HF's KV cache); no eos token, so no row stops early
  versions.json  library versions, the seed and the settings above.

Sizes are all distinct (V=97 D=48 N=4 K=2 H=12 F=88 P=64) so swapped axes fail. Beyond HF's
own init (normal with std `initializer_range`, RMSNorm weights at 1) every RMSNorm weight is
redrawn from N(1, 0.2), so a norm mapped to the wrong place changes the logits. rope_theta is
500 rather than 10000 and rms_norm_eps 1e-5 rather than 1e-6, so an importer that ignores
either is caught.
"""

import json
import platform
from pathlib import Path

import numpy as np
import safetensors
import torch
import transformers
from transformers import LlamaConfig, LlamaForCausalLM

OUT_DIR = Path(__file__).resolve().parent / "llama_tiny"
# The first seed of 0..39 whose greedy continuations are varied (MIN_DISTINCT distinct tokens in
# each row) with a top-1 / top-2 logit margin above MIN_MARGIN at every step, so a correct port
# reproduces `greedy` exactly and a broken KV cache cannot hide behind a repeated token.
SEEDS = range(40)
MIN_MARGIN, MIN_DISTINCT = 0.02, 8  # our float32 port differs by ~1e-5
BATCH, SEQ_LEN, PROMPT_LEN, NEW_TOKENS = 2, 33, 6, 20
PERTURB_STD = 0.2


def make_config():
  return LlamaConfig(
    vocab_size=97,
    hidden_size=48,
    intermediate_size=88,
    num_hidden_layers=2,
    num_attention_heads=4,
    num_key_value_heads=2,
    max_position_embeddings=64,
    rope_theta=500.0,
    rms_norm_eps=1e-5,
    hidden_act="silu",
    attention_bias=False,
    mlp_bias=False,
    tie_word_embeddings=False,
    initializer_range=0.2,
    bos_token_id=None,
    eos_token_id=None,
    pad_token_id=None,
    attn_implementation="eager",
  )


def randomize_norms(model, *, std):
  """Redraw every RMSNorm weight from N(1, std), in place."""
  with torch.no_grad():
    for name, param in model.named_parameters():
      if name.endswith("norm.weight"):
        param.normal_(1.0, std)


def run(seed):
  """(model, config, tokens, logits, prompt, greedy, margin, distinct) for one seed."""
  torch.manual_seed(seed)
  config = make_config()
  model = LlamaForCausalLM(config).to(torch.float32)
  randomize_norms(model, std=PERTURB_STD)
  model.eval()
  assert model.config._attn_implementation == "eager", model.config._attn_implementation
  assert model.lm_head.weight.data_ptr() != model.model.embed_tokens.weight.data_ptr()

  rng = np.random.default_rng(seed)
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
  return model, config, tokens_BT, logits_BTV, prompt_BT, greedy_BT, margin, distinct


def main():
  for seed in SEEDS:
    model, config, tokens_BT, logits_BTV, prompt_BT, greedy_BT, margin, distinct = run(seed)
    if margin > MIN_MARGIN and distinct >= MIN_DISTINCT:
      break
  else:
    raise RuntimeError(f"no seed in {SEEDS} gives margin > {MIN_MARGIN}, {MIN_DISTINCT} distinct")

  assert greedy_BT.shape == (BATCH, PROMPT_LEN + NEW_TOKENS), greedy_BT.shape
  assert (greedy_BT[:, :PROMPT_LEN] == prompt_BT).all()
  # The first generated token is the argmax of the full forward pass at the prompt's last step.
  first_V = logits_BTV[:, PROMPT_LEN - 1].argmax(-1)
  assert (greedy_BT[:, PROMPT_LEN] == first_V).all(), (greedy_BT, first_V)

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
    "seed": seed,
    "perturb_std": PERTURB_STD,
    "max_new_tokens": NEW_TOKENS,
    "greedy_min_top2_margin": round(margin, 4),
    "greedy_min_distinct_tokens": distinct,
  }
  (OUT_DIR / "versions.json").write_text(json.dumps(versions, indent=2) + "\n")
  for path in sorted(OUT_DIR.iterdir()):
    print(f"{path.name:24s} {path.stat().st_size:8d} bytes")


if __name__ == "__main__":
  main()
