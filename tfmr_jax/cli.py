"""tfmr-jax: train, evaluate and sample from the command line.

  tfmr-jax train --config configs/reverse.py --workdir runs/reverse [--config.model.num_heads=4 ...]
  tfmr-jax train --config configs/char_lm.py:baby --workdir runs/baby    # a preset of the recipe
  tfmr-jax train --workdir runs/reverse           # resume with the run's saved config.json
  tfmr-jax train --config configs/finetune_gpt2.py --workdir runs/ft --config.train.init_from=hf:DIR
  tfmr-jax evaluate --workdir runs/reverse        # held-out metrics of the latest checkpoint, JSON
  tfmr-jax sample --workdir runs/char_lm --prompt "ROMEO:" --max-new-tokens 200
  tfmr-jax sample --workdir runs/copy --prompt "3 1 4 1 5 9 2 6 5 3"    # seq2seq: decode an input
  tfmr-jax export --workdir runs/char_lm --out exported/char_lm   # a Hugging Face GPT-2 folder
  tfmr-jax sample --hf-dir gpt2 --prompt "Hello," --prompt "The" --top-p 0.9  # a GPT-2 folder
  tfmr-jax evaluate --hf-dir gpt2 --text wiki.txt  # perplexity: {"mean_loss", "perplexity", ...}

train options:   --config FILE[:ARG]  --workdir DIR  --config.<section>.<field>=VALUE
                 --stop-at-step N (stop and checkpoint after N steps; rerun to continue)
                 --allow-config-change (resume although the config changes the run)
                 devices: --config.mesh.data=2 --config.mesh.fsdp=4 --config.mesh.model=1
                 (FSDP, tensor parallel; one axis may be -1); many processes: each with
                 --config.distributed.coordinator_address=HOST:PORT
                 --config.distributed.num_processes=N --config.distributed.process_id=I
                 (or --config.distributed.auto=True on SLURM, Kubernetes, Cloud TPU)
evaluate:        --workdir DIR  [--step N]
sample:          --workdir DIR  --prompt TEXT  [--max-new-tokens 200] [--temperature 0.8]
                 [--top-k K] [--top-p P] [--seed 0]
export:          --workdir DIR  --out DIR  [--step N] [--overwrite]   (GPT runs only)
Hugging Face GPT-2 folder (config.json, model.safetensors, vocab.json + merges.txt):
  sample:        --hf-dir DIR  --prompt TEXT [--prompt TEXT ...] and the options above;
                 one batch, each text printed whole, stopping at end-of-text; texts are
                 separated by a line '---'; a prompt that does not fit the context with
                 --max-new-tokens is refused
  evaluate:      --hf-dir DIR  --text FILE  [--stride S (default: context / 2)]

Exit status: 0 done; 1 training failed (e.g. a non-finite loss); 2 bad command line or
config; 130 / 143 stopped by Ctrl-C / SIGTERM after saving a checkpoint.
"""

import difflib
import json
import os
import signal
import sys

from absl import flags
from ml_collections import config_flags

from tfmr_jax import config as config_lib
from tfmr_jax.tasks import CorpusError

COMMANDS = ("train", "evaluate", "sample", "export")


def _flags(argv: list[str], recipe) -> flags.FlagValues:
  """The command's flags; `--config.<field>=VALUE` overrides apply to `recipe` (if any)."""
  fv = flags.FlagValues()
  if recipe is not None:
    config_flags.DEFINE_config_dict(
      "config", recipe, "the recipe's config", flag_values=fv, lock_config=True, sys_argv=argv
    )
  flags.DEFINE_string("workdir", None, "the run's directory", flag_values=fv)
  flags.DEFINE_integer(
    "stop_at_step", None, "train: stop after this many steps", lower_bound=1, flag_values=fv
  )
  flags.DEFINE_boolean(
    "allow_config_change", False, "train: resume with a changed config", flag_values=fv
  )
  flags.DEFINE_integer(
    "step", None, "evaluate, export: checkpoint (default latest)", lower_bound=0, flag_values=fv
  )
  flags.DEFINE_string("out", None, "export: the Hugging Face folder to write", flag_values=fv)
  flags.DEFINE_boolean("overwrite", False, "export: replace a non-empty --out", flag_values=fv)
  flags.DEFINE_multi_string("prompt", None, "sample: prompt text or task input", flag_values=fv)
  flags.DEFINE_string("hf_dir", None, "sample, evaluate: a Hugging Face GPT-2", flag_values=fv)
  flags.DEFINE_string("text", None, "evaluate --hf-dir: the text file to score", flag_values=fv)
  flags.DEFINE_integer("stride", None, "evaluate --hf-dir: window stride", flag_values=fv)
  flags.DEFINE_float("top_p", 1.0, "sample: nucleus sampling, in (0, 1]", flag_values=fv)
  flags.DEFINE_integer("max_new_tokens", 200, "sample: tokens to generate", flag_values=fv)
  flags.DEFINE_float("temperature", 0.8, "sample: 0 = greedy", flag_values=fv)
  flags.DEFINE_integer("top_k", None, "sample: keep the k most likely tokens", flag_values=fv)
  flags.DEFINE_integer("seed", 0, "sample: random seed", flag_values=fv)
  return fv


def _normalize(argv: list[str]) -> list[str]:
  """Flag names take '-' or '_': --max-new-tokens = --max_new_tokens, likewise config fields."""
  out = []
  for arg in argv:
    if arg.startswith("--"):
      name, eq, value = arg[2:].partition("=")
      arg = "--" + name.replace("-", "_") + eq + value
    out.append(arg)
  return out


def _take_recipe(argv: list[str]) -> tuple[str | None, list[str]]:
  """(the FILE[:ARG] of `--config FILE` or `--config=FILE`, or None; argv without it).

  The recipe is loaded here (`config.load_recipe`), not by ml_collections, so that a
  missing file, a syntax error or a failing get_config is one clear error.
  """
  rest, spec = [], None
  i = 0
  while i < len(argv):
    arg = argv[i]
    if arg == "--config":
      if i + 1 == len(argv) or argv[i + 1].startswith("--"):
        raise flags.Error("--config needs a value: FILE[:ARG]")
      spec, i = argv[i + 1], i + 2
      continue
    if arg.startswith("--config="):
      spec = arg.removeprefix("--config=")
    else:
      rest.append(arg)
    i += 1
  return spec, rest


def main(argv: list[str] | None = None) -> int:
  """Run one command; `argv` excludes the program name (default: sys.argv[1:])."""
  argv = sys.argv[1:] if argv is None else list(argv)
  asked_help = not argv or "-h" in argv or "--help" in argv or argv[0] == "help"
  if asked_help:
    print(__doc__.strip())
    return 0
  if argv[0] not in COMMANDS:
    close = difflib.get_close_matches(argv[0], COMMANDS, n=1)
    hint = f" (did you mean {close[0]!r}?)" if close else ""
    print(
      f"tfmr-jax: unknown command {argv[0]!r}{hint}; commands: {', '.join(COMMANDS)}\n",
      file=sys.stderr,
    )
    print(__doc__.strip(), file=sys.stderr)
    return 2
  command, full_argv = argv[0], ["tfmr-jax", *_normalize(argv[1:])]
  try:
    spec, full_argv = _take_recipe(full_argv)
    recipe = None if spec is None else config_lib.load_recipe(spec)
    fv = _flags(full_argv, recipe)
    rest = fv(full_argv)
  except (flags.Error, config_lib.ConfigError, config_lib.RecipeError) as e:
    return _fail(command, e)
  except (AttributeError, KeyError, ValueError) as e:  # the locked config refused an override
    overrides = [a.split("=")[0] for a in full_argv if a.startswith("--config.")]
    return _fail(command, f"cannot apply the overrides {' '.join(overrides)}: {_reason(e)}")
  try:
    if len(rest) > 1:
      raise flags.Error(f"unexpected arguments: {' '.join(rest[1:])}")
    if fv.hf_dir is not None:
      return _run_hf_dir(command, fv)
    if not fv.workdir:
      raise flags.Error("--workdir is required")
    return _run(command, fv)
  except (flags.Error, config_lib.ConfigError, CorpusError, FileNotFoundError) as e:
    return _fail(command, e)
  except OSError as e:  # the machine failed the run (a full disk writing logs, say): one line
    print(f"tfmr-jax {command}: {e}", file=sys.stderr)
    return 1
  except KeyboardInterrupt:  # a second Ctrl-C: stop now, keeping only complete checkpoints
    print(
      f"tfmr-jax {command}: interrupted; a checkpoint being written was discarded, the "
      "complete ones are kept: rerun the same command to resume",
      file=sys.stderr,
    )
    return 128 + signal.SIGINT.value


def _reason(error: Exception) -> str:
  """The innermost message of an error that may wrap a KeyError, on one line."""
  while error.args and isinstance(error.args[0], Exception):
    error = error.args[0]
  return " ".join(str(error.args[0] if error.args else error).split())


def _fail(command: str, error) -> int:
  print(f"tfmr-jax {command}: error: {error}", file=sys.stderr)
  return 2


def _run(command: str, fv: flags.FlagValues) -> int:
  from tfmr_jax import train as train_lib  # loads JAX and Flax

  _check_workdir(command, fv.workdir, step=fv.step)
  if command == "train":
    given = _train_config(fv, train_lib)
    train_lib.join(given)  # a multi-process run: first, before JAX starts a backend
    config = config_lib.validate(given)
    train_lib.preflight(config, fv.workdir)  # a bad corpus or init_from: nothing written
    try:
      metrics = train_lib.train(
        config,
        fv.workdir,
        stop_at_step=fv.stop_at_step,
        allow_config_change=fv.allow_config_change,
      )
    except (train_lib.NonFiniteLossError, train_lib.CheckpointWriteError) as e:
      print(f"tfmr-jax train: {e}", file=sys.stderr)  # earlier checkpoints are kept
      return 1
    print(json.dumps(metrics))
    if metrics.get("stopped") in ("SIGINT", "SIGTERM"):
      print(
        f"stopped by {metrics['stopped']} at step {metrics['step']}; checkpoint saved in "
        f"{fv.workdir}; rerun the same command to resume",
        file=sys.stderr,
      )
      return 128 + signal.Signals[metrics["stopped"]].value
    return 0
  if command == "evaluate":
    print(json.dumps(train_lib.evaluate(fv.workdir, step=fv.step)))
    return 0
  if command == "export":
    return _export(fv, train_lib)
  if fv.prompt is None or len(fv.prompt) != 1:
    raise flags.Error("sample --workdir needs one --prompt")
  try:
    text = train_lib.sample(
      fv.workdir,
      fv.prompt[0],
      max_new_tokens=fv.max_new_tokens,
      temperature=fv.temperature,
      top_k=fv.top_k,
      top_p=fv.top_p,
      seed=fv.seed,
    )
  except ValueError as e:  # a prompt the task cannot read, or bad sampling options
    return _fail(command, e)
  print(text)
  return 0


def _run_hf_dir(command: str, fv: flags.FlagValues) -> int:
  """sample or evaluate a Hugging Face GPT-2 folder (tfmr_jax.train.pretrained)."""
  if command not in ("sample", "evaluate") or fv.workdir:
    raise flags.Error("--hf-dir goes with sample or evaluate, without --workdir")
  if command == "sample" and not fv.prompt:
    raise flags.Error("sample --hf-dir needs at least one --prompt")
  if command == "evaluate" and fv.text is None:
    raise flags.Error("evaluate --hf-dir needs --text FILE, the text to score")
  from tfmr_jax.train import pretrained  # loads JAX and Flax

  try:
    if command == "evaluate":
      print(json.dumps(pretrained.evaluate_text(fv.hf_dir, fv.text, stride=fv.stride)))
      return 0
    texts = pretrained.sample_pretrained(
      fv.hf_dir,
      fv.prompt,
      max_new_tokens=fv.max_new_tokens,
      temperature=fv.temperature,
      top_k=fv.top_k,
      top_p=fv.top_p,
      seed=fv.seed,
    )
  except ValueError as e:  # the folder, a prompt, the text file or an option: named in e
    return _fail(command, e)
  print("\n---\n".join(texts))
  return 0


def _check_workdir(command: str, workdir: str, *, step: int | None) -> None:
  """flags.Error unless `workdir` can serve `command`: a directory (train: a writable one,
  or one that can be created), its config.json valid JSON, evaluate's --step saved."""
  if os.path.exists(workdir) and not os.path.isdir(workdir):
    raise flags.Error(f"--workdir {workdir!r} is a file, not a directory")
  if command == "train":
    existing = os.path.abspath(workdir)
    while not os.path.exists(existing):
      existing = os.path.dirname(existing)
    if not os.path.isdir(existing):
      raise flags.Error(f"--workdir {workdir!r} cannot be created: {existing!r} is a file")
    if not os.access(existing, os.W_OK | os.X_OK):
      raise flags.Error(
        f"--workdir {workdir!r}: {existing!r} is not writable (train writes its config, "
        "metrics and checkpoints there)"
      )
  path = os.path.join(workdir, "config.json")
  if os.path.isfile(path):
    try:
      with open(path, encoding="utf-8") as f:
        json.load(f)
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
      raise flags.Error(f"{path!r} is not a valid config.json: {e}") from None
  if command in ("evaluate", "export") and step is not None:
    directory = os.path.join(workdir, "checkpoints")
    saved = (
      sorted(int(d) for d in os.listdir(directory) if d.isdigit())
      if os.path.isdir(directory)
      else []
    )
    if step not in saved:
      have = ", ".join(map(str, saved)) if saved else "none"
      raise flags.Error(
        f"--step {step}: no checkpoint of that step in {directory!r}; saved: {have}"
      )


def _export(fv: flags.FlagValues, train_lib) -> int:
  """Write the run's model as a Hugging Face folder; print the folder."""
  if not fv.out:
    raise flags.Error("export needs --out DIR")
  try:
    out = train_lib.export(fv.workdir, fv.out, step=fv.step, overwrite=fv.overwrite)
  except (train_lib.ExportError, FileExistsError) as e:  # nothing was written
    return _fail("export", e)
  print(out)
  return 0


def _train_config(fv: flags.FlagValues, train_lib):
  """The --config recipe with its overrides, or the saved config of the run in --workdir."""
  if "config" in fv:
    return fv.config
  if train_lib.has_config(fv.workdir):
    return train_lib.load_config(fv.workdir)
  raise flags.Error("train needs --config FILE (or a --workdir holding a run's config.json)")
