"""Training from a config: the loop, checkpoints, metrics, data parallelism.

from tfmr_jax import train
metrics = train.train(config, "runs/reverse")    # dict of final held-out metrics
train.evaluate("runs/reverse")                   # reload the latest checkpoint, evaluate
train.sample("runs/char_lm", "ROMEO:")           # generate with the KV cache
train.export("runs/sort", "exported/sort")       # a GPT run as a Hugging Face folder
"""

from tfmr_jax.train.checkpoint import (
  CheckpointUnavailableError,
  CheckpointWriteError,
  DamagedCheckpointWarning,
)
from tfmr_jax.train.hf_export import ExportError, export
from tfmr_jax.train.loop import NonFiniteLossError, preflight, train
from tfmr_jax.train.metrics_log import read_metrics
from tfmr_jax.train.run import Run, evaluate, load_run, sample
from tfmr_jax.train.run_config import has_config, load_config, save_config

__all__ = [
  "CheckpointUnavailableError",
  "CheckpointWriteError",
  "DamagedCheckpointWarning",
  "ExportError",
  "NonFiniteLossError",
  "Run",
  "evaluate",
  "export",
  "has_config",
  "load_config",
  "load_run",
  "preflight",
  "read_metrics",
  "sample",
  "save_config",
  "train",
]
