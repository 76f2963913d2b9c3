"""`validate(config)`: the check every entry point runs before anything is built.

It fills a possibly partial config in from the defaults of its task, checks every
field and every rule between fields, and returns the resolved config, or raises
`ConfigError` naming the field, the value and the rule.
"""

import re

import jax
import ml_collections

from tfmr_jax.config.model import check_model
from tfmr_jax.config.rules import ConfigError, Rule, check_keys, checked
from tfmr_jax.config.schema import (
  HF_PREFIX,
  MODEL_KIND_FOR_FORMAT,
  SECTION_FIELDS,
  SECTIONS,
  TASK_FIELDS,
  check_task_name,
  defaults,
)
from tfmr_jax.tasks import FORMATS, max_test_size


def validate(config) -> ml_collections.ConfigDict:
  """The resolved config (defaults filled in, numbers coerced), or ConfigError.

  Accepts a ConfigDict or a nested dict, complete or partial; only `task.name` is
  required. Checks, in order: section and field names (with "did you mean"), each
  value's type and range, then the rules that tie fields together.
  """
  given = config.to_dict() if isinstance(config, ml_collections.ConfigDict) else dict(config)
  check_keys("", given, SECTIONS)
  task = given.get("task", {})
  if not isinstance(task, dict) or "name" not in task:
    raise ConfigError("config.task.name is required: the task to train on")
  check_task_name(task["name"])
  resolved = defaults(task["name"]).to_dict()
  schemas = {"task": {"name": ("", Rule(str)), **TASK_FIELDS[task["name"]]}, **SECTION_FIELDS}
  for section, fields in given.items():
    if not isinstance(fields, dict):
      raise ConfigError(f"config.{section} = {fields!r}: must be a section (a ConfigDict)")
    check_keys(f"{section}.", fields, schemas[section])
    for field, value in fields.items():
      resolved[section][field] = checked(f"{section}.{field}", value, schemas[section][field][1])
  _check_relations(resolved)
  _check_mesh(resolved["mesh"])
  _check_distributed(resolved["distributed"])
  _check_init_from(resolved)
  return ml_collections.ConfigDict(resolved)


def validate_distributed(config) -> dict:
  """The checked `distributed` section of a (possibly partial) config, defaults filled in.

  Touches no JAX backend, so it can run before `jax.distributed.initialize`, which must
  come before anything else initialises one (`validate` may: see `_check_cudnn`).
  """
  given = config.to_dict() if isinstance(config, ml_collections.ConfigDict) else dict(config)
  fields = given.get("distributed", {})
  if not isinstance(fields, dict):
    raise ConfigError(f"config.distributed = {fields!r}: must be a section (a ConfigDict)")
  schema = SECTION_FIELDS["distributed"]
  check_keys("distributed.", fields, schema)
  section = {field: default for field, (default, _) in schema.items()}
  for field, value in fields.items():
    section[field] = checked(f"distributed.{field}", value, schema[field][1])
  _check_distributed(section)
  return section


def _check_mesh(mesh: dict) -> None:
  """Each mesh axis is a positive size or -1 ("the rest"), and at most one is -1."""
  for axis, size in mesh.items():
    if size == 0 or size < -1:
      raise ConfigError(
        f"config.mesh.{axis} = {size}: must be a positive number of devices, or -1 for "
        "the devices the other axes leave"
      )
  rest = [axis for axis, size in mesh.items() if size == -1]
  if len(rest) > 1:
    raise ConfigError(
      f"config.mesh.{rest[1]} = -1: only one mesh axis may be -1 (config.mesh.{rest[0]} already is)"
    )


def _check_distributed(d: dict) -> None:
  """An explicit multi-process run names its coordinator, size and rank, consistently."""
  explicit = d["coordinator_address"] or d["num_processes"] is not None
  if d["auto"] or not explicit:
    return
  for field in ("coordinator_address", "num_processes", "process_id"):
    if d[field] in ("", None):
      raise ConfigError(
        f"config.distributed.{field} = {d[field]!r}: a multi-process run needs "
        "coordinator_address ('HOST:PORT' of process 0), num_processes and process_id "
        "(or distributed.auto = True on SLURM, Kubernetes or Cloud TPU)"
      )
  if not re.fullmatch(r"\[?[\w.:-]+\]?:\d+", d["coordinator_address"]):
    raise ConfigError(
      f"config.distributed.coordinator_address = {d['coordinator_address']!r}: must be "
      "'HOST:PORT', e.g. '10.0.0.1:1234'"
    )
  if d["process_id"] >= d["num_processes"]:
    raise ConfigError(
      f"config.distributed.process_id = {d['process_id']}: must be less than "
      f"config.distributed.num_processes = {d['num_processes']}"
    )


def _check_relations(c: dict) -> None:
  """Rules between fields: the model suits the task and is well formed, sizes fit."""
  task, model, optim, train = c["task"], c["model"], c["optim"], c["train"]
  needed = MODEL_KIND_FOR_FORMAT[FORMATS[task["name"]]]
  if model["kind"] != needed:
    raise ConfigError(
      f"config.model.kind = {model['kind']!r}: task {task['name']!r} has "
      f"{FORMATS[task['name']]!r} data, which needs model.kind = {needed!r}"
    )
  check_model(model)
  _check_cudnn(model, backend=jax.default_backend())
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
  if train["batch_size"] % train["grad_accum_steps"]:
    raise ConfigError(
      f"config.train.batch_size = {train['batch_size']}: must be a multiple of "
      f"config.train.grad_accum_steps = {train['grad_accum_steps']} (the batch is split "
      "into that many equal micro-batches)"
    )
  for field in ("corpus_content_sha256", "tokenizer_sha256"):
    recorded_sha256 = task.get(field, "")
    if not re.fullmatch(r"|[0-9a-f]{64}", recorded_sha256):
      raise ConfigError(
        f"config.task.{field} = {recorded_sha256!r}: must be '' (not yet recorded) or 64 "
        "lowercase hex digits"
      )
  if task["name"] in ("char_lm", "text") and task["corpus_url"] and not task["corpus_sha256"]:
    raise ConfigError(
      f"config.task.corpus_sha256 = '': required with config.task.corpus_url = "
      f"{task['corpus_url']!r}, to check the download"
    )


def _check_init_from(c: dict) -> None:
  """train.init_from is "", "hf:DIR" (a GPT) or a work directory; the text task's
  tokenizer_dir, when "", becomes the DIR of "hf:DIR" (filled in here, so the run's
  config.json names it). Files are not read here: see tfmr_jax.train.init_from."""
  task, init_from = c["task"], c["train"]["init_from"]
  hf_dir = init_from.removeprefix(HF_PREFIX) if init_from.startswith(HF_PREFIX) else None
  if hf_dir == "":
    raise ConfigError(
      f"config.train.init_from = {init_from!r}: 'hf:' needs the Hugging Face GPT-2 folder "
      "after it, e.g. 'hf:gpt2'"
    )
  if hf_dir is not None and c["model"]["kind"] != "gpt":
    raise ConfigError(
      f"config.train.init_from = {init_from!r}: Hugging Face GPT-2 weights need "
      f"model.kind = 'gpt', not {c['model']['kind']!r}"
    )
  if task["name"] == "text" and not task["tokenizer_dir"]:
    if hf_dir is None:
      raise ConfigError(
        "config.task.tokenizer_dir = '': the text task needs a tokenizer folder (tokenizer.json, "
        "or vocab.json + merges.txt); set it, or set config.train.init_from = 'hf:DIR' to "
        "use that folder's"
      )
    task["tokenizer_dir"] = hf_dir


def _check_cudnn(model: dict, *, backend: str) -> None:
  """attention_implementation 'cudnn' needs a GPU and a head dim cuDNN takes; say so now,
  not when the first step is traced."""
  if model["attention_implementation"] != "cudnn":
    return
  H = model["d_model"] // model["num_heads"]
  if backend != "gpu" or H % 8 or H > 128:
    raise ConfigError(
      f"config.model.attention_implementation = 'cudnn': cuDNN attention needs a GPU backend "
      f"and a head dim d_model / num_heads that is a multiple of 8 and at most 128; got "
      f"backend {backend!r}, head dim {H}; choose None, 'tiled', 'xla' or 'reference'"
    )


def check_devices(config, num_devices: int) -> None:
  """Batch sizes must split evenly over the data-parallel devices (each micro-batch too)."""
  accum = config.train.grad_accum_steps
  if accum > 1 and config.train.batch_size % (accum * num_devices):
    raise ConfigError(
      f"config.train.batch_size = {config.train.batch_size}: must be a multiple of "
      f"config.train.grad_accum_steps = {accum} times the {num_devices} devices each "
      "micro-batch is split over"
    )
  for field in ("batch_size", "eval_batch_size"):
    value = config.train[field]
    if value % num_devices:
      raise ConfigError(
        f"config.train.{field} = {value}: must be a multiple of the {num_devices} "
        "devices the batch is split over"
      )
