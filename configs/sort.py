"""Sort 6 symbols from {0, 1, 2} with minGPT's 3-layer, 3-head GPT (d_model 48).

COMMAND:  tfmr-jax train --config configs/sort.py --workdir runs/sort
EXPECTED: 100% exact match with greedy decoding on the 200 held-out sequences (never
          seen in training; 529 remain for it), from step 600 of 2,000; measured 47 s on
          2 CPU cores.
PUBLISHED: minGPT demo, same model, batch 64, 2,000 iterations, AdamW 5e-4: 100% train
          and test (its test draws overlap its training draws).
"""

from tfmr_jax.config import defaults


def get_config():
  config = defaults("sort")
  config.task.update(num_symbols=3, length=6, test_size=200)
  config.model.update(num_layers=3, num_heads=3, d_model=48, dropout=0.1)
  config.optim.update(
    name="adamw",
    learning_rate=5e-4,
    b1=0.9,
    b2=0.95,
    weight_decay=0.1,
    schedule="constant",
    warmup_steps=0,
    grad_clip_norm=1.0,
  )
  config.train.update(
    num_steps=2000,
    batch_size=64,
    eval_every=100,
    eval_batch_size=100,
    log_every=50,
    checkpoint_every=500,
  )
  return config
