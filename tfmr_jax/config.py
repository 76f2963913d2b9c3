"""The one config schema: its fields, their defaults, and the validation every entry point runs.

A config is an `ml_collections.ConfigDict` with four sections:

  task   which data and its sizes; the fields depend on `task.name` (TASK_FIELDS)
  model  the architecture; `model.kind` must suit the task's data format
  optim  optimizer, learning-rate schedule, gradient clipping, label smoothing
  train  seed, steps, batch size, and how often to evaluate, log and checkpoint

Recipes in configs/ start from `defaults(task_name)` and change what they need;
command-line overrides (`--config.model.num_heads=4`) and notebooks change the same
fields. `validate(config)` fills a possibly partial config in from the defaults of
its task, checks every field and every rule between fields, and returns the
resolved config, or raises `ConfigError` naming the field, the value and the rule,
before anything is built or compiled.
"""

import dataclasses
import difflib
from typing import Any

import ml_collections
from ml_collections import config_dict

from tfmr_jax.ops.implementations import IMPLEMENTATIONS
from tfmr_jax.tasks import FORMATS, TINY_SHAKESPEARE_SHA256, TINY_SHAKESPEARE_URL, max_test_size

MODEL_KIND_FOR_FORMAT = {"tagging": "encoder", "seq2seq": "encoder_decoder", "lm": "gpt"}
# GPT follows GPT-2: pre-LN, learned positions, GELU. The other kinds choose.
GPT_ARCHITECTURE = {"norm": "pre", "positions": "learned", "activation": "gelu"}


class ConfigError(ValueError):
  """A config field broke a rule. The message names the field, its value and the rule."""


@dataclasses.dataclass(frozen=True)
class Rule:
  """What one field accepts: a type, optional None, choices, or bounds [low, high)."""

  type: type
  optional: bool = False
  choices: tuple = ()
  low: float | None = None
  high: float | None = None
  low_exclusive: bool = False
  high_inclusive: bool = False
  what: str = ""  # noun for unknown choices, e.g. "optimizer"

  def describe(self) -> str:
    if self.choices:
      return f"one of {', '.join(map(repr, self.choices))}" + (" or None" if self.optional else "")
    kind = {int: "an int", float: "a number", str: "a string", bool: "a bool"}[self.type]
    if self.type is int and self.low == 1 and self.high is None:
      kind = "a positive int"
    elif self.type is int and self.low == 0 and self.high is None:
      kind = "a non-negative int"
    elif self.low is not None and self.high is not None:
      left = "(" if self.low_exclusive else "["
      right = "]" if self.high_inclusive else ")"
      kind = f"{kind} in {left}{self.low:g}, {self.high:g}{right}"
    elif self.low is not None:
      kind = f"{kind} {'>' if self.low_exclusive else '>='} {self.low:g}"
    return kind + (" or None" if self.optional else "")


def _positive_int(optional: bool = False) -> Rule:
  return Rule(int, optional=optional, low=1)


def _non_negative_int() -> Rule:
  return Rule(int, low=0)


def _positive_float() -> Rule:
  return Rule(float, low=0.0, low_exclusive=True)


def _fraction(high_inclusive: bool = False) -> Rule:
  return Rule(float, low=0.0, high=1.0, high_inclusive=high_inclusive)


def _choice(*choices: str, what: str = "", optional: bool = False) -> Rule:
  return Rule(str, choices=choices, what=what, optional=optional)


def _toy(num_symbols: int, length: int, test_size: int) -> dict:
  return {
    "num_symbols": (num_symbols, Rule(int, low=2)),
    "length": (length, _positive_int()),
    "test_size": (test_size, _positive_int()),
  }


# task.name -> {field: (default, rule)}; defaults are those of each task's reference setup.
TASK_FIELDS: dict[str, dict[str, tuple[Any, Rule]]] = {
  "reverse": _toy(num_symbols=10, length=16, test_size=10_000),
  "copy": _toy(num_symbols=10, length=10, test_size=1_000),
  "sort": _toy(num_symbols=3, length=6, test_size=200),
  "addition": {"num_digits": (2, _positive_int()), "test_size": (1_000, _positive_int())},
  "char_lm": {
    "corpus_path": ("../shared/data/tinyshakespeare.txt", Rule(str)),
    "corpus_url": (TINY_SHAKESPEARE_URL, Rule(str)),
    "corpus_sha256": (TINY_SHAKESPEARE_SHA256, Rule(str)),
    "cache_dir": ("~/.cache/tfmr_jax", Rule(str)),
    "block_size": (64, _positive_int()),
    "val_fraction": (0.1, Rule(float, low=0.0, high=1.0, low_exclusive=True)),
  },
}

# section -> {field: (default, rule)}; model defaults for a GPT are GPT_ARCHITECTURE's.
SECTION_FIELDS: dict[str, dict[str, tuple[Any, Rule]]] = {
  "model": {
    "kind": ("encoder", _choice(*MODEL_KIND_FOR_FORMAT.values(), what="model kind")),
    "num_layers": (2, _positive_int()),
    "d_model": (64, _positive_int()),
    "num_heads": (4, _positive_int()),
    "num_kv_heads": (None, _positive_int(optional=True)),  # None = num_heads
    "d_ff": (None, _positive_int(optional=True)),  # None = 4 * d_model
    "dropout": (0.0, _fraction()),
    "norm": ("post", _choice("post", "pre", what="norm placement")),
    "positions": ("sinusoidal", _choice("sinusoidal", "learned", "none", what="position encoding")),
    "activation": ("relu", _choice("relu", "gelu", what="activation")),
    "share_embeddings": (False, Rule(bool)),  # encoder_decoder: one table for src and tgt
    # None = tj.attention's own choice for the backend and shapes.
    "attention_implementation": (
      None,
      _choice(*IMPLEMENTATIONS, what="attention implementation", optional=True),
    ),
  },
  "optim": {
    "name": ("adamw", _choice("adamw", "adam", what="optimizer")),
    "learning_rate": (1e-3, _positive_float()),
    "schedule": ("warmup_cosine", _choice("constant", "warmup_cosine", "noam", what="schedule")),
    "warmup_steps": (0, _non_negative_int()),
    "min_lr_ratio": (0.0, _fraction(high_inclusive=True)),  # cosine ends at lr * min_lr_ratio
    "weight_decay": (0.0, Rule(float, low=0.0)),
    "b1": (0.9, _fraction()),
    "b2": (0.999, _fraction()),
    "eps": (1e-8, _positive_float()),
    "grad_clip_norm": (0.0, Rule(float, low=0.0)),  # 0 = no clipping
    "label_smoothing": (0.0, _fraction()),
  },
  "train": {
    "seed": (0, _non_negative_int()),
    "num_steps": (1000, _positive_int()),
    "batch_size": (64, _positive_int()),
    "eval_every": (500, _positive_int()),
    "eval_batch_size": (500, _positive_int()),
    "log_every": (50, _positive_int()),
    "checkpoint_every": (500, _positive_int()),
    "keep_checkpoints": (2, _positive_int()),
    "progress_bar": (True, Rule(bool)),
    "tensorboard": (True, Rule(bool)),
    # Check inside the compiled step that loss, gradients and parameters stay finite
    # (chex.chexify), naming the step and the leaves; one host sync per step.
    "debug_checks": (False, Rule(bool)),
  },
}
SECTIONS = ("task", "model", "optim", "train")


def defaults(task: str) -> ml_collections.ConfigDict:
  """The full config of `task` with every field at its default."""
  _check_task_name(task)
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


def validate(config) -> ml_collections.ConfigDict:
  """The resolved config (defaults filled in, numbers coerced), or ConfigError.

  Accepts a ConfigDict or a nested dict, complete or partial; only `task.name` is
  required. Checks, in order: section and field names (with "did you mean"), each
  value's type and range, then the rules that tie fields together.
  """
  given = config.to_dict() if isinstance(config, ml_collections.ConfigDict) else dict(config)
  _check_keys("", given, SECTIONS)
  task = given.get("task", {})
  if not isinstance(task, dict) or "name" not in task:
    raise ConfigError("config.task.name is required: the task to train on")
  _check_task_name(task["name"])
  resolved = defaults(task["name"]).to_dict()
  schemas = {"task": {"name": ("", Rule(str)), **TASK_FIELDS[task["name"]]}, **SECTION_FIELDS}
  for section, fields in given.items():
    if not isinstance(fields, dict):
      raise ConfigError(f"config.{section} = {fields!r}: must be a section (a ConfigDict)")
    _check_keys(f"{section}.", fields, schemas[section])
    for field, value in fields.items():
      resolved[section][field] = _checked(f"{section}.{field}", value, schemas[section][field][1])
  _check_relations(resolved)
  return ml_collections.ConfigDict(resolved)


def _check_task_name(name) -> None:
  if name not in FORMATS:
    raise ConfigError(
      f"config.task.name = {name!r}: unknown task{_suggest(name, FORMATS)}; "
      f"choose from {', '.join(sorted(FORMATS))}"
    )


def _suggest(name, known) -> str:
  close = difflib.get_close_matches(str(name), list(known), n=1, cutoff=0.6)
  return f" (did you mean {close[0]!r}?)" if close else ""


def _check_keys(prefix: str, given: dict, known) -> None:
  for key, value in given.items():
    if key not in known:
      raise ConfigError(
        f"config.{prefix}{key} = {value!r}: unknown key{_suggest(key, known)}; "
        f"known keys of config{'.' + prefix.rstrip('.') if prefix else ''}: {', '.join(known)}"
      )


def _checked(path: str, value, rule: Rule):
  """`value` converted to the rule's type (ints widen to float), or ConfigError."""
  if value is None:
    if rule.optional:
      return None
    raise ConfigError(f"config.{path} = None: must be {rule.describe()}")
  if rule.type is float and isinstance(value, int) and not isinstance(value, bool):
    value = float(value)
  if type(value) is not rule.type:
    raise ConfigError(f"config.{path} = {value!r}: must be {rule.describe()}")
  if rule.choices and value not in rule.choices:
    what = rule.what or "value"
    raise ConfigError(
      f"config.{path} = {value!r}: unknown {what}{_suggest(value, rule.choices)}; "
      f"must be {rule.describe()}"
    )
  too_low = rule.low is not None and (value <= rule.low if rule.low_exclusive else value < rule.low)
  too_high = rule.high is not None and (
    value > rule.high if rule.high_inclusive else value >= rule.high
  )
  if too_low or too_high:
    raise ConfigError(f"config.{path} = {value!r}: must be {rule.describe()}")
  return value


def _check_relations(c: dict) -> None:
  """Rules between fields: the model suits the task, heads divide widths, sizes fit."""
  task, model, optim, train = c["task"], c["model"], c["optim"], c["train"]
  needed = MODEL_KIND_FOR_FORMAT[FORMATS[task["name"]]]
  if model["kind"] != needed:
    raise ConfigError(
      f"config.model.kind = {model['kind']!r}: task {task['name']!r} has "
      f"{FORMATS[task['name']]!r} data, which needs model.kind = {needed!r}"
    )
  if model["d_model"] % model["num_heads"]:
    raise ConfigError(
      f"config.model.num_heads = {model['num_heads']}: must divide "
      f"config.model.d_model = {model['d_model']}"
    )
  kv = model["num_kv_heads"]
  if kv is not None and model["num_heads"] % kv:
    raise ConfigError(
      f"config.model.num_kv_heads = {kv}: must divide config.model.num_heads = "
      f"{model['num_heads']} (grouped-query attention)"
    )
  if model["kind"] == "gpt":
    for field, value in GPT_ARCHITECTURE.items():
      if model[field] != value:
        raise ConfigError(
          f"config.model.{field} = {model[field]!r}: model.kind 'gpt' is the GPT-2 "
          f"architecture, which has {field} = {value!r}"
        )
  if optim["schedule"] == "noam" and optim["warmup_steps"] == 0:
    raise ConfigError("config.optim.warmup_steps = 0: the 'noam' schedule needs warmup_steps >= 1")
  if optim["schedule"] == "warmup_cosine" and optim["warmup_steps"] >= train["num_steps"]:
    raise ConfigError(
      f"config.optim.warmup_steps = {optim['warmup_steps']}: must be less than "
      f"config.train.num_steps = {train['num_steps']} for the 'warmup_cosine' schedule"
    )
  if task["name"] in ("reverse", "copy", "sort", "addition"):
    symbols, length = (
      (10, 2 * task["num_digits"])
      if task["name"] == "addition"
      else (task["num_symbols"], task["length"])
    )
    limit = max_test_size(symbols**length)
    if task["test_size"] > limit:
      raise ConfigError(
        f"config.task.test_size = {task['test_size']}: must be at most {limit} for "
        f"{symbols**length} possible sequences"
      )
  if task["name"] == "char_lm" and task["corpus_url"] and not task["corpus_sha256"]:
    raise ConfigError(
      f"config.task.corpus_sha256 = '': required with config.task.corpus_url = "
      f"{task['corpus_url']!r}, to check the download"
    )


def check_devices(config, num_devices: int) -> None:
  """Batch sizes must split evenly over the data-parallel devices."""
  for field in ("batch_size", "eval_batch_size"):
    value = config.train[field]
    if value % num_devices:
      raise ConfigError(
        f"config.train.{field} = {value}: must be a multiple of the {num_devices} "
        "devices the batch is split over"
      )
