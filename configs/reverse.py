"""Reverse a sequence of 16 symbols with a 1-layer, 1-head encoder (UvA DL tutorial 6).

COMMAND:  tfmr-jax train --config configs/reverse.py --workdir runs/reverse
EXPECTED: 100% test accuracy (token and whole-sequence) on 10,000 held-out sequences,
          from step 400 of 1,500; measured 18 s on 2 CPU cores.
PUBLISHED: 100.00% test accuracy, same model and data, Adam 5e-4 for about 3,900 steps.
"""

from tfmr_jax.config import defaults


def get_config():
  config = defaults("reverse")
  config.task.update(num_symbols=10, length=16, test_size=10_000)
  config.model.update(num_layers=1, num_heads=1, d_model=32, d_ff=64, dropout=0.0)
  config.optim.update(
    name="adam", learning_rate=3e-3, schedule="warmup_cosine", warmup_steps=50, grad_clip_norm=1.0
  )
  config.train.update(
    num_steps=1500,
    batch_size=128,
    eval_every=100,
    eval_batch_size=1000,
    log_every=50,
    checkpoint_every=500,
  )
  return config
