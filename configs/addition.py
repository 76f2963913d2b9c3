"""Add two 2-digit numbers with a 2-layer, 4-head GPT (d_model 128), as minGPT's play_math.

COMMAND:  tfmr-jax train --config configs/addition.py --workdir runs/addition
EXPECTED: 100% exact match with greedy decoding on the 1,000 held-out sums (the other
          9,000 are for training), from step 300 of 500; measured 114 s on 2 CPU
          cores.
PUBLISHED: minGPT, same model, 9k train / 1k test, batch 512, 50 epochs, lr 6e-4: 99.9%.
"""

from tfmr_jax.config import defaults


def get_config():
  config = defaults("addition")
  config.task.update(num_digits=2, test_size=1_000)
  config.model.update(num_layers=2, num_heads=4, d_model=128, dropout=0.1)
  config.optim.update(
    name="adamw",
    learning_rate=1e-3,
    b1=0.9,
    b2=0.95,
    weight_decay=0.1,
    schedule="warmup_cosine",
    warmup_steps=50,
    grad_clip_norm=1.0,
  )
  config.train.update(
    num_steps=500,
    batch_size=512,
    eval_every=100,
    eval_batch_size=500,
    log_every=50,
    checkpoint_every=500,
  )
  return config
