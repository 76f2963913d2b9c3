"""The schema: every section's fields, their defaults and rules, and `defaults(task)`.

A config is an `ml_collections.ConfigDict` with four sections:

  task   which data and its sizes; the fields depend on `task.name` (TASK_FIELDS)
  model  the architecture; `model.kind` must suit the task's data format
  optim  optimizer, learning-rate schedule, gradient clipping, label smoothing
  train  seed, steps, batch size, and how often to evaluate, log and checkpoint
  mesh   how the devices are laid out: data parallel, FSDP and tensor-parallel axes
  distributed  how this process joins a multi-process run (jax.distributed)
"""

from typing import Any

import ml_collections
from ml_collections import config_dict

from tfmr_jax.config.rules import (
  ConfigError,
  Rule,
  choice,
  fraction,
  non_negative_int,
  positive_float,
  positive_int,
  suggest,
)
from tfmr_jax.tasks import FORMATS, TINY_SHAKESPEARE_SHA256, TINY_SHAKESPEARE_URL
from tfmr_jax.tasks.addition import MAX_DIGITS as ADDITION_MAX_DIGITS

HF_PREFIX = "hf:"  # train.init_from = "hf:DIR": a Hugging Face folder
MODEL_KIND_FOR_FORMAT = {"tagging": "encoder", "seq2seq": "encoder_decoder", "lm": "gpt"}
# A GPT starts from GPT-2: pre-LN, learned positions, GELU; every field may be overridden
# (e.g. Llama's choices: norm_kind=rmsnorm, positions=rope, activation=swiglu, use_bias=False,
# tie_output=False).
GPT_ARCHITECTURE = {"norm": "pre", "positions": "learned", "activation": "gelu"}


def _toy(num_symbols: int, length: int, test_size: int) -> dict:
  return {
    "num_symbols": (num_symbols, Rule(int, low=2)),
    "length": (length, positive_int()),
    "test_size": (test_size, positive_int()),
  }


# The corpus of the tasks that read a text file (char_lm, text).
_CORPUS: dict[str, tuple[Any, Rule]] = {
  "corpus_path": ("../shared/data/tinyshakespeare.txt", Rule(str)),
  "corpus_url": (TINY_SHAKESPEARE_URL, Rule(str)),
  "corpus_sha256": (TINY_SHAKESPEARE_SHA256, Rule(str)),
  "cache_dir": ("~/.cache/tfmr_jax", Rule(str)),
  # SHA-256 of the corpus bytes a run read: recorded at its first run (with
  # corpus_path made absolute) and checked at every later read; "" = not yet recorded.
  "corpus_content_sha256": ("", Rule(str)),
}

# task.name -> {field: (default, rule)}; defaults are those of each task's reference setup.
TASK_FIELDS: dict[str, dict[str, tuple[Any, Rule]]] = {
  "reverse": _toy(num_symbols=10, length=16, test_size=10_000),
  "copy": _toy(num_symbols=10, length=10, test_size=1_000),
  "sort": _toy(num_symbols=3, length=6, test_size=200),
  "addition": {
    # The sums are computed in int64 (tfmr_jax.tasks.addition): at most 18 digits.
    "num_digits": (2, Rule(int, low=1, high=ADDITION_MAX_DIGITS, high_inclusive=True)),
    "test_size": (1_000, positive_int()),
  },
  "char_lm": {
    **_CORPUS,
    "block_size": (64, positive_int()),
    "val_fraction": (0.1, Rule(float, low=0.0, high=1.0, low_exclusive=True)),
  },
  # Any UTF-8 text file, tokenized once with the tokenizer in tokenizer_dir (GPT-2's BPE:
  # tokenizer.json, or vocab.json + merges.txt); "" = the folder of train.init_from "hf:DIR".
  "text": {
    **_CORPUS,
    "tokenizer_dir": ("", Rule(str)),
    # SHA-256 of the tokenizer's fingerprint (its files), recorded at the first run and
    # checked at every later load: a resume never re-tokenizes with changed files.
    "tokenizer_sha256": ("", Rule(str)),
    "block_size": (1024, positive_int()),
    "val_fraction": (0.1, Rule(float, low=0.0, high=1.0, low_exclusive=True)),
  },
}

# section -> {field: (default, rule)}; model defaults for a GPT are GPT_ARCHITECTURE's.
SECTION_FIELDS: dict[str, dict[str, tuple[Any, Rule]]] = {
  # Types only: the architecture's rules are TransformerConfig's (tfmr_jax.config.model).
  "model": {
    "kind": ("encoder", choice(*MODEL_KIND_FOR_FORMAT.values(), what="model kind")),
    "num_layers": (2, Rule(int)),
    "d_model": (64, Rule(int)),
    "num_heads": (4, Rule(int)),
    "num_kv_heads": (None, Rule(int, optional=True)),  # None = num_heads
    "d_ff": (None, Rule(int, optional=True)),  # None = 4 * d_model
    "dropout": (0.0, Rule(float)),
    "attention_dropout": (0.0, Rule(float)),  # on the attention probabilities (attn_pdrop)
    # Sliding-window self-attention: None = none; W = a causal query sees the last W
    # positions. window_pattern: "local" / "global" per layer, comma-separated, repeated
    # over the layers ("local" = all; "local,global" alternates, as Gemma 2).
    "window": (None, Rule(int, optional=True)),
    "window_pattern": ("local", Rule(str)),
    "norm": ("post", Rule(str)),  # "post" | "pre": where the norms sit
    "norm_kind": ("layernorm", Rule(str)),  # "layernorm" | "rmsnorm": what they compute
    "positions": ("sinusoidal", Rule(str)),  # "sinusoidal" | "learned" | "rope" | "none"
    "rope_base": (10000.0, Rule(float)),  # RoPE's base, read with positions = "rope"
    # "relu" | "gelu" | "swiglu" | "geglu"; gated ones take d_ff None = 2/3 of 4 * d_model
    "activation": ("relu", Rule(str)),
    "qk_norm": (False, Rule(bool)),  # a norm (norm_kind) on each query and key head
    "use_bias": (True, Rule(bool)),  # biases in every projection and the untied head
    # None = the kind's own: a gpt ties its head to the token embedding; an
    # encoder_decoder ties when it shares embeddings; an encoder's head is never tied.
    "tie_output": (None, Rule(bool, optional=True)),
    "share_embeddings": (False, Rule(bool)),  # encoder_decoder: one table for src and tgt
    # None = tj.attention's own choice for the backend and shapes.
    "attention_implementation": (None, Rule(str, optional=True)),
    # Mixed precision: compute in dtype, parameters (and optimizer state) in param_dtype;
    # "float32" | "bfloat16". Norm statistics, softmax, logits and the loss stay float32.
    "dtype": ("float32", Rule(str)),
    "param_dtype": ("float32", Rule(str)),
  },
  "optim": {
    "name": ("adamw", choice("adamw", "adam", what="optimizer")),
    "learning_rate": (1e-3, positive_float()),
    "schedule": ("warmup_cosine", choice("constant", "warmup_cosine", "noam", what="schedule")),
    "warmup_steps": (0, non_negative_int()),
    "min_lr_ratio": (0.0, fraction(high_inclusive=True)),  # cosine ends at lr * min_lr_ratio
    "weight_decay": (0.0, Rule(float, low=0.0)),
    "b1": (0.9, fraction()),
    "b2": (0.999, fraction()),
    "eps": (1e-8, positive_float()),
    "grad_clip_norm": (0.0, Rule(float, low=0.0)),  # 0 = no clipping
    "label_smoothing": (0.0, fraction()),
  },
  "train": {
    "seed": (0, non_negative_int()),
    "num_steps": (1000, positive_int()),
    "batch_size": (64, positive_int()),
    # Split each batch into this many micro-batches, accumulate their gradients, update
    # once: the same step as the whole batch (up to round-off) in less activation memory.
    "grad_accum_steps": (1, positive_int()),
    "eval_every": (500, positive_int()),
    "eval_batch_size": (500, positive_int()),
    "log_every": (50, positive_int()),
    "checkpoint_every": (500, positive_int()),
    "keep_checkpoints": (2, positive_int()),
    "progress_bar": (True, Rule(bool)),
    "tensorboard": (True, Rule(bool)),
    # Check inside the compiled step that loss, gradients and parameters stay finite
    # (chex.chexify), naming the step and the leaves; one host sync per step.
    "debug_checks": (False, Rule(bool)),
    # The weights step 0 starts from: "" = a fresh init; "hf:DIR" = the Hugging Face GPT-2
    # in the folder DIR (config.json + model.safetensors; the model section must match
    # it); any other value = a tfmr_jax work directory, its latest checkpoint's parameters.
    # Read once, before step 0: a resume restores the run's own checkpoint.
    "init_from": ("", Rule(str)),
    # Evaluate once before the first step too (the starting point of a fine-tuning run).
    "eval_at_start": (False, Rule(bool)),
  },
  # The device mesh, axes ("data", "fsdp", "model"): the batch is split over data x fsdp,
  # parameters and optimizer state over fsdp (ZeRO-3 style), attention heads and the
  # feed-forward width over model (Megatron style). One axis may be -1: "the rest of the
  # devices". The default is plain data parallelism over every device.
  "mesh": {
    "data": (-1, Rule(int, low=-1)),
    "fsdp": (1, Rule(int, low=-1)),
    "model": (1, Rule(int, low=-1)),
  },
  # Multi-process runs (one process per host, or per GPU): jax.distributed.initialize.
  # coordinator_address "" and auto False = one process, as without this section.
  "distributed": {
    "coordinator_address": ("", Rule(str)),  # "HOST:PORT" of process 0
    "num_processes": (None, Rule(int, optional=True, low=1)),
    "process_id": (None, Rule(int, optional=True, low=0)),
    # True: let JAX detect the cluster (SLURM, Kubernetes, Cloud TPU, Open MPI)
    "auto": (False, Rule(bool)),
    # A process that stops answering for this long fails the others, naming it.
    "heartbeat_timeout_s": (30, positive_int()),
    "initialization_timeout_s": (300, positive_int()),
  },
}
SECTIONS = ("task", "model", "optim", "train", "mesh", "distributed")


def defaults(task: str) -> ml_collections.ConfigDict:
  """The full config of `task` with every field at its default."""
  check_task_name(task)
  config = ml_collections.ConfigDict()
  config.task = ml_collections.ConfigDict({"name": task})
  for field, (default, rule) in TASK_FIELDS[task].items():
    config.task[field] = _field_value(default, rule)
  for section, fields in SECTION_FIELDS.items():
    config[section] = ml_collections.ConfigDict()
    for field, (default, rule) in fields.items():
      config[section][field] = _field_value(default, rule)
  config.model.kind = MODEL_KIND_FOR_FORMAT[FORMATS[task]]
  if config.model.kind == "gpt":
    config.model.update(GPT_ARCHITECTURE)
  config.lock()  # a misspelt field fails where it is set, with ml_collections' "did you mean"
  return config


def _field_value(default, rule: Rule):
  # A typed placeholder keeps a None default overridable from the command line.
  if default is None:
    return config_dict.placeholder(rule.type)
  return default


def check_task_name(name) -> None:
  if name not in FORMATS:
    raise ConfigError(
      f"config.task.name = {name!r}: unknown task{suggest(name, FORMATS)}; "
      f"choose from {', '.join(sorted(FORMATS))}"
    )
