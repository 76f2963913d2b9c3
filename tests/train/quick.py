"""Tiny configs that train in seconds on 2 CPU cores yet must reach a real result."""

import numpy as np

from tfmr_jax import config as C
from tfmr_jax.tasks import make_task


def quick_config(task_name: str, **sections):
  """A small recipe for `task_name`; `sections` ({"train": {...}}) override fields on top."""
  task = task_name
  config = C.defaults(task)
  config.train.update(
    progress_bar=False, tensorboard=False, log_every=25, eval_every=10_000, checkpoint_every=10_000
  )
  if task == "reverse":
    config.task.update(num_symbols=8, length=8, test_size=1000)
    config.model.update(num_layers=1, num_heads=1, d_model=32, d_ff=64)
    config.optim.update(name="adam", learning_rate=1e-2, warmup_steps=20, grad_clip_norm=1.0)
    config.train.update(num_steps=300, batch_size=64, eval_batch_size=500)
  elif task == "copy":
    config.task.update(num_symbols=6, length=6, test_size=500)
    config.model.update(num_layers=1, num_heads=2, d_model=32, d_ff=64, share_embeddings=True)
    config.optim.update(name="adam", learning_rate=5e-3, warmup_steps=20)
    config.train.update(num_steps=300, batch_size=64, eval_batch_size=250)
  elif task == "sort":
    config.task.update(num_symbols=3, length=5, test_size=60)
    config.model.update(num_layers=2, num_heads=2, d_model=32)
    config.optim.update(learning_rate=3e-3, warmup_steps=20, grad_clip_norm=1.0)
    config.train.update(num_steps=300, batch_size=64, eval_batch_size=60)
  elif task == "addition":
    config.task.update(num_digits=2, test_size=500)
    config.model.update(num_layers=2, num_heads=4, d_model=64)
    config.optim.update(learning_rate=3e-3, warmup_steps=20, grad_clip_norm=1.0)
    config.train.update(num_steps=400, batch_size=128, eval_batch_size=250)
  elif task == "char_lm":
    config.task.update(block_size=16, val_fraction=0.2)
    config.model.update(num_layers=2, num_heads=2, d_model=32)
    config.optim.update(learning_rate=1e-2, warmup_steps=20)
    config.train.update(num_steps=200, batch_size=32, eval_batch_size=64)
  for section, fields in sections.items():
    config[section].update(fields)
  return config


def grammar_text(num_chars: int = 6000, seed: int = 0) -> str:
  """Sentences from a small grammar: the next character is predictable from context."""
  rng = np.random.default_rng(seed)
  subjects, verbs, objects = ["the cat", "a dog", "my bird"], ["sees", "eats"], ["fish", "corn"]
  out = []
  while sum(map(len, out)) < num_chars:
    s, v, o = subjects[rng.integers(3)], verbs[rng.integers(2)], objects[rng.integers(2)]
    out.append(f"{s} {v} {o}. ")
  return "".join(out)


def unigram_entropy(text: str) -> float:
  """Cross-entropy (nats per character) of the best context-free model of `text`."""
  _, counts = np.unique(list(text), return_counts=True)
  p = counts / counts.sum()
  return float(-(p * np.log(p)).sum())


def poisoned_make_task(nan_at_step: int):
  """`make_task`, but the batch of update `nan_at_step + 1` has NaN loss weights."""

  def make_poisoned_task(**fields):
    task = make_task(**fields)
    clean = task.train_batch

    def train_batch(seed, step, batch_size):
      batch = clean(seed, step, batch_size)
      if step == nan_at_step:
        batch["weights"] = batch["weights"] * np.float32("nan")
      return batch

    task.train_batch = train_batch
    return task

  return make_poisoned_task
