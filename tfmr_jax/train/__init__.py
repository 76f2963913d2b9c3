"""Training from a config: the loop, checkpoints, metrics, the device mesh, many processes.

from tfmr_jax import train
metrics = train.train(config, "runs/reverse")    # dict of final held-out metrics
train.evaluate("runs/reverse")                   # reload the latest checkpoint, evaluate
train.sample("runs/char_lm", "ROMEO:")           # generate with the KV cache
train.export("runs/sort", "exported/sort")       # a GPT run as a Hugging Face folder
train.sample_pretrained("gpt2/", ["Hello,"])       # a Hugging Face GPT-2 folder
train.evaluate_text("gpt2/", "wiki.txt")          # its perplexity on a text file
"""

from tfmr_jax.train.checkpoint import (
  CheckpointUnavailableError,
  CheckpointWriteError,
  DamagedCheckpointWarning,
)
from tfmr_jax.train.distributed import join
from tfmr_jax.train.hf_export import ExportError, export
from tfmr_jax.train.loop import NonFiniteLossError, preflight, train
from tfmr_jax.train.metrics_log import read_metrics
from tfmr_jax.train.pretrained import (
  Pretrained,
  PretrainedError,
  evaluate_text,
  load_pretrained,
  sample_pretrained,
)
from tfmr_jax.train.run import Run, evaluate, load_run, sample
from tfmr_jax.train.run_config import has_config, load_config, save_config

__all__ = [
  "CheckpointUnavailableError",
  "CheckpointWriteError",
  "DamagedCheckpointWarning",
  "ExportError",
  "NonFiniteLossError",
  "Pretrained",
  "PretrainedError",
  "Run",
  "evaluate",
  "export",
  "evaluate_text",
  "has_config",
  "join",
  "load_config",
  "load_pretrained",
  "load_run",
  "preflight",
  "read_metrics",
  "sample",
  "sample_pretrained",
  "save_config",
  "train",
]
