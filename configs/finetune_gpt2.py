"""Fine-tune GPT-2 (124M) on tiny shakespeare: nanoGPT's finetune_shakespeare settings.

COMMAND:  tfmr-jax train --config configs/finetune_gpt2.py --workdir runs/finetune_gpt2 \\
            --config.train.init_from=hf:PATH/TO/gpt2
EXPECTED: the held-out loss falls from step 0 (the published weights, evaluated before the
          first update) over the 20 steps. Not run here with the real 124M weights, so no
          figure is claimed; the same recipe is tested end to end through the CLI on a tiny
          random GPT-2 with the real vocabulary (tests/train/test_finetune.py).
TIME:     not measured. An estimate from the FLOP count: 20 steps of 32 x 1024 tokens
          (6 x 124M x 655,360 = 4.9e14 FLOPs) and 5 evaluations of 33,792 held-out tokens
          (8.4e12 each): minutes on one GPU; roughly 2 to 5 hours on 2 CPU cores.

The weights: the Hugging Face folder of `openai-community/gpt2` holding config.json,
model.safetensors, vocab.json and merges.txt, e.g.

  huggingface-cli download openai-community/gpt2 config.json model.safetensors \\
    vocab.json merges.txt --local-dir gpt2

then `--config.train.init_from=hf:gpt2`. The tokenizer is read from the same folder
(task.tokenizer_dir, "" = init_from's folder), and so is the architecture check: the
model section must match its config.json (12 layers, 12 heads, 768 wide), or training
is refused before anything compiles, naming the field. The larger GPT-2s are presets:
`configs/finetune_gpt2.py:gpt2-xl` is nanoGPT's own choice (1.5B parameters).

nanoGPT's config/finetune_shakespeare.py, and what we do differently:
  init_from gpt2-xl               preset gpt2 (124M) by default; the others as presets
  eval_interval 5, eval_iters 40  eval_every 5 over the whole held-out part (33 windows of
                                  1024 tokens), plus once before the first step
  batch_size 1, grad accum 32     batch_size 32 in grad_accum_steps 32 micro-batches of 1
  max_iters 20                    num_steps 20
  learning_rate 3e-5, no decay    learning_rate 3e-5, schedule constant, no warmup
  train.py's defaults: AdamW b2 0.95, weight decay 0.1, grad clip 1.0, dropout 0.0,
                                  block_size 1024 (kept)
  always_save_checkpoint False    checkpoint_every 5 (the last 2 kept)
  prepare.py: 90/10 split of the characters, then tokenized (301,966 + 36,059 tokens)
                                  the whole text tokenized once (338,025 tokens, the same
                                  total), then split 90/10 by token (304,222 + 33,803)

The corpus is read from task.corpus_path; if that file does not exist it is downloaded
once from task.corpus_url, checked against task.corpus_sha256 and cached in
task.cache_dir, as is its tokenization (keyed by the file's SHA-256 and the tokenizer).
"""

from tfmr_jax.config import defaults

# preset -> (num_layers, num_heads, d_model) of the published GPT-2s (nanoGPT's table).
GPT2_SIZES = {
  "gpt2": (12, 12, 768),
  "gpt2-medium": (24, 16, 1024),
  "gpt2-large": (36, 20, 1280),
  "gpt2-xl": (48, 25, 1600),
}


def get_config(preset: str = "gpt2"):
  if preset not in GPT2_SIZES:
    raise ValueError(
      f"unknown preset {preset!r} for configs/finetune_gpt2.py; choose from {tuple(GPT2_SIZES)}"
    )
  num_layers, num_heads, d_model = GPT2_SIZES[preset]
  config = defaults("text")
  config.task.update(block_size=1024, val_fraction=0.1)
  config.model.update(num_layers=num_layers, num_heads=num_heads, d_model=d_model, dropout=0.0)
  config.optim.update(
    name="adamw",
    learning_rate=3e-5,
    schedule="constant",
    warmup_steps=0,
    b1=0.9,
    b2=0.95,
    weight_decay=0.1,
    grad_clip_norm=1.0,
  )
  config.train.update(
    init_from=f"hf:{preset}",  # a folder named like the preset; override with hf:PATH
    eval_at_start=True,
    num_steps=20,
    batch_size=32,
    grad_accum_steps=32,
    eval_every=5,
    eval_batch_size=8,
    log_every=1,
    checkpoint_every=5,
  )
  return config
