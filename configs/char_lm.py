"""Character-level language model on tiny shakespeare (nanoGPT's shakespeare_char).

COMMAND:  tfmr-jax train --config configs/char_lm.py --workdir runs/char_lm
EXPECTED: val loss 1.808 (target <= 1.85) after 2,000 steps of batch 12, block 64, with
          a 4-layer, 4-head, 128-wide GPT; measured 217 s on 2 CPU cores.
PUBLISHED: nanoGPT at its CPU settings (the same, with lr 1e-3): val loss about 1.88.
          Our run of exactly those settings (preset nanogpt_cpu) gives 1.913.

Presets (tfmr-jax train --config configs/char_lm.py:<preset> ...):
  cpu          the default above: nanoGPT's CPU settings with learning rate 2e-3
  nanogpt_cpu  nanoGPT's CPU settings exactly (lr 1e-3)
  baby         nanoGPT's "baby GPT": 6 layers, 6 heads, 384 wide, block 256, dropout 0.2,
               batch 64, 5,000 steps. A GPU recipe: published best val loss 1.4697 (about
               3 minutes on one A100); target <= 1.47.

The corpus is read from task.corpus_path; if that file does not exist it is downloaded
once from task.corpus_url, checked against task.corpus_sha256 and cached in
task.cache_dir (override any of them, e.g. --config.task.corpus_path=input.txt).
"""

from tfmr_jax.config import defaults


def get_config(preset: str = "cpu"):
  presets = ("cpu", "nanogpt_cpu", "baby")
  if preset not in presets:
    raise ValueError(f"unknown preset {preset!r} for configs/char_lm.py; choose from {presets}")
  config = defaults("char_lm")
  config.task.update(block_size=64, val_fraction=0.1)
  config.model.update(num_layers=4, num_heads=4, d_model=128, dropout=0.0)
  config.optim.update(
    name="adamw",
    learning_rate=2e-3,
    b1=0.9,
    b2=0.99,
    weight_decay=0.1,
    schedule="warmup_cosine",
    warmup_steps=100,
    min_lr_ratio=0.1,
    grad_clip_norm=1.0,
  )
  config.train.update(
    num_steps=2000,
    batch_size=12,
    eval_every=500,
    eval_batch_size=500,
    log_every=50,
    checkpoint_every=500,
  )
  if preset == "nanogpt_cpu":
    config.optim.learning_rate = 1e-3
  if preset == "baby":
    config.task.block_size = 256
    config.model.update(num_layers=6, num_heads=6, d_model=384, dropout=0.2)
    config.optim.learning_rate = 1e-3
    config.train.update(
      num_steps=5000, batch_size=64, eval_every=250, eval_batch_size=64, checkpoint_every=1000
    )
  return config
