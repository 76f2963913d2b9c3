"""A run's identity: a resume continues the recorded run, or it is refused.

The work directory's config.json records the run. Resuming with a config that
differs in anything that changes the run (task, model, optimizer, schedule, seed,
batch size, ...) would silently mix two runs in one directory, so it is refused
with a ConfigError listing every difference, unless the caller passes
`allow_config_change=True` (`--allow-config-change`). Fields that only change how
the run is watched, or how it is laid out over devices and processes (the `mesh` and
`distributed` sections: a run may resume on another layout), are free: those in
COSMETIC. `train.num_steps` may change
(extending a run is the usual case) but not to below the checkpoint's step.

The corpus of char_lm and text is pinned at the first run (`pin_corpus`): its path
made absolute and its SHA-256 recorded, so evaluate, sample and a resume read the same
file from any directory, and refuse it if its content changed. text's tokenizer is
pinned the same way (tokenizer_dir made absolute, tokenizer_sha256 recorded), and
train.init_from's folder is made absolute too.
"""

import os

from tfmr_jax import config as config_lib
from tfmr_jax.config.schema import HF_PREFIX
from tfmr_jax.tasks import corpus_sha256
from tfmr_jax.tasks.tokenizer import TokenizerError, fingerprint_sha256, load_tokenizer

# section -> fields that do not change the training trajectory.
COSMETIC = {
  "task": {"cache_dir"},  # where downloads are cached: the content is checked by hash
  "train": {
    "progress_bar",
    "tensorboard",
    "log_every",
    "eval_every",
    "eval_batch_size",
    "checkpoint_every",
    "keep_checkpoints",
    "debug_checks",
    "eval_at_start",
  },
  # The layout: the same arithmetic on other devices, equal up to float round-off.
  "mesh": {"data", "fsdp", "model"},
  "distributed": set(config_lib.SECTION_FIELDS["distributed"]),
}


def config_changes(recorded, config) -> list[str]:
  """["section.field: old -> new", ...]: the fields of `config` that change the run
  recorded in `recorded` (COSMETIC fields and train.num_steps excluded)."""
  changes = []
  for section in config_lib.SECTIONS:
    old, new = recorded[section].to_dict(), config[section].to_dict()
    for field in sorted(old.keys() | new.keys()):
      if field in COSMETIC.get(section, ()) or (section, field) == ("train", "num_steps"):
        continue
      if old.get(field) != new.get(field):
        changes.append(f"{section}.{field}: {old.get(field)!r} -> {new.get(field)!r}")
  return changes


def check_resume(
  config, recorded, *, workdir: str, checkpoint_step: int, allow_config_change: bool
) -> None:
  """ConfigError unless `config` may continue the run `recorded` at `checkpoint_step`."""
  num_steps = config.train.num_steps
  if num_steps < checkpoint_step:
    raise config_lib.ConfigError(
      f"config.train.num_steps = {num_steps}: workdir {workdir!r} holds a checkpoint of "
      f"step {checkpoint_step}, past it; use num_steps >= {checkpoint_step}, or a new workdir"
    )
  changes = config_changes(recorded, config)
  if changes and not allow_config_change:
    raise config_lib.ConfigError(
      f"workdir {workdir!r} holds a run with another config ({'; '.join(changes)}); "
      "use a new workdir, or pass allow_config_change=True (--allow-config-change) to "
      "continue this run with the new config"
    )


def pin_corpus(config, *, recorded=None):
  """`config` with its files pinned: train.init_from's folder made absolute; for char_lm
  and text, corpus_path, cache_dir (and text's tokenizer_dir) made absolute (against the
  current directory) and corpus_content_sha256 filled in, from the `recorded` run if it
  has it, else from the file now at corpus_path; text's tokenizer_sha256 likewise, from
  the recorded run or the tokenizer now in tokenizer_dir."""
  config = config.copy_and_resolve_references()
  init_from = config.train.init_from
  if init_from:
    prefix = HF_PREFIX if init_from.startswith(HF_PREFIX) else ""
    config.train.init_from = prefix + _absolute(init_from.removeprefix(prefix))
  if config.task.name not in ("char_lm", "text"):
    return config
  task = config.task
  task.corpus_path = _absolute(task.corpus_path)
  task.cache_dir = _absolute(task.cache_dir)
  if task.name == "text":
    task.tokenizer_dir = _absolute(task.tokenizer_dir)
    if not task.tokenizer_sha256 and recorded is not None:
      task.tokenizer_sha256 = recorded.task.get("tokenizer_sha256", "")
    if not task.tokenizer_sha256:
      task.tokenizer_sha256 = _tokenizer_sha256(task.tokenizer_dir)
  if not task.corpus_content_sha256 and recorded is not None:
    task.corpus_content_sha256 = recorded.task.get("corpus_content_sha256", "")
  if not task.corpus_content_sha256:
    url_sha256 = task.corpus_sha256 if task.corpus_url else ""
    task.corpus_content_sha256 = corpus_sha256(task.corpus_path, url_sha256=url_sha256)
  return config


def _tokenizer_sha256(tokenizer_dir: str) -> str:
  """The fingerprint digest of the tokenizer in `tokenizer_dir`, or "" if it does not load
  (make_task then names the folder and the reason)."""
  try:
    return fingerprint_sha256(load_tokenizer(tokenizer_dir))
  except TokenizerError:
    return ""


def _absolute(path: str) -> str:
  return os.path.abspath(os.path.expanduser(path))
