"""Training runs for the claims, through the project's trainer, and their learning curves."""

import importlib.util
import os
import shutil

from tfmr_jax import train as trainer

CONFIGS = os.path.join(os.path.dirname(__file__), os.pardir, os.pardir, "configs")


def quiet(config):
  """`config` with the progress bar and TensorBoard off (the claims read metrics.jsonl)."""
  config.train.update(progress_bar=False, tensorboard=False)
  return config


def fresh_run(config, workdir: str) -> dict:
  """Train `config` from scratch in `workdir` (emptied first); the trainer's final metrics."""
  shutil.rmtree(workdir, ignore_errors=True)
  os.makedirs(workdir)
  return trainer.train(quiet(config), workdir)


def curve(workdir: str, split: str, metric: str) -> tuple[list[int], list[float]]:
  """(steps, values) of `metric` in the `split` records of a run's metrics.jsonl."""
  records = [r for r in trainer.read_metrics(workdir, split) if metric in r]
  return [r["step"] for r in records], [float(r[metric]) for r in records]


def recipe(name: str):
  """`configs/<name>.py`'s get_config(): the recipe the claims start from."""
  spec = importlib.util.spec_from_file_location(
    f"configs_{name}", os.path.join(CONFIGS, f"{name}.py")
  )
  module = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(module)
  return module.get_config()


def reverse_config(*, num_steps: int, test_size: int = 2_000, **model):
  """configs/reverse.py (1 layer, 1 head, d_model 32) for `num_steps`, with `model` fields changed.

  Evaluates 12 times per run on `test_size` held-out sequences; checkpoints at the end only.
  """
  config = recipe("reverse")
  config.model.update(model)
  config.task.update(test_size=test_size)
  config.optim.update(warmup_steps=min(config.optim.warmup_steps, num_steps // 2))
  config.train.update(
    num_steps=num_steps,
    eval_every=max(num_steps // 12, 1),
    log_every=max(num_steps // 24, 1),
    checkpoint_every=num_steps,
  )
  return config
