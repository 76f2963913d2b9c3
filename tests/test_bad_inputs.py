"""Bad command lines, configs, work directories and corpora: one line, exit 2, nothing touched.

Each row of a table is one bad input: the command line (`{workdir}`, `{tmp}` and
`{configs}` filled in), the exit code, and a fragment of the error that names the
field or file, the value and the rule. Every CLI row also checks that stderr is one
line `tfmr-jax <command>: error: ...` without a traceback, and that the work directory
is left as it was (absent stays absent).
"""

import os

import jax
import numpy as np
import pytest

from tfmr_jax import cli
from tfmr_jax import config as config_lib
from tfmr_jax.tasks import Addition

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CONFIGS = os.path.join(REPO, "configs")
REVERSE = ["train", "--config={configs}/reverse.py", "--workdir={workdir}"]
ADDITION = ["train", "--config={configs}/addition.py", "--workdir={workdir}"]


def _snapshot(path: str):
  """What is at `path`: None, or every file and folder under it with its size and mtime."""
  if not os.path.exists(path):
    return None
  if not os.path.isdir(path):
    return os.stat(path).st_mtime_ns
  entries = {}
  for root, dirs, files in os.walk(path):
    for name in dirs + files:
      full = os.path.join(root, name)
      stat = os.stat(full)
      entries[os.path.relpath(full, path)] = (stat.st_size, stat.st_mtime_ns)
  return entries


def run_cli(argv, *, workdir: str, tmp: str, capsys):
  """cli.main(argv) with the placeholders filled in: (exit code, stderr)."""
  filled = [a.format(workdir=workdir, tmp=tmp, configs=CONFIGS) for a in argv]
  rc = cli.main(filled)
  _, err = capsys.readouterr()
  return rc, err


def assert_clean_error(rc, err, *, command: str, fragment: str) -> None:
  assert rc == 2, err
  assert "Traceback" not in err, err
  lines = err.strip().splitlines()
  assert len(lines) == 1, err
  assert lines[0].startswith(f"tfmr-jax {command}: error: "), err
  assert fragment in lines[0], err


# Floor A: config values, validated before anything is built or compiled.
CONFIG_CASES = [
  (REVERSE + ["--config.optim.eps=inf"], "config.optim.eps = inf: must be a finite number > 0"),
  (
    REVERSE + ["--config.optim.grad_clip_norm=nan"],
    "config.optim.grad_clip_norm = nan: must be a finite number >= 0",
  ),
  (
    REVERSE + ["--config.optim.learning_rate=nan"],
    "config.optim.learning_rate = nan: must be a finite number > 0",
  ),
  (
    REVERSE + ["--config.optim.learning_rate=inf"],
    "config.optim.learning_rate = inf: must be a finite number > 0",
  ),
  (
    REVERSE + ["--config.optim.weight_decay=inf"],
    "config.optim.weight_decay = inf: must be a finite number >= 0",
  ),
  (REVERSE + ["--config.model.dropout=nan"], "config.model.dropout = nan: must be a finite number"),
  (
    ADDITION + ["--config.task.num_digits=19"],
    "config.task.num_digits = 19: must be an int in [1, 18]",
  ),
  (REVERSE + ["--stop-at-step=0"], "flag --stop_at_step=0: 0 is not a positive integer"),
  (REVERSE + ["--stop-at-step=-1"], "flag --stop_at_step=-1: -1 is not a positive integer"),
]


@pytest.mark.parametrize("argv,fragment", CONFIG_CASES)
def test_bad_config_exits_2_naming_field_value_and_rule(argv, fragment, tmp_path, capsys):
  workdir = str(tmp_path / "run")
  rc, err = run_cli(argv, workdir=workdir, tmp=str(tmp_path), capsys=capsys)
  assert_clean_error(rc, err, command="train", fragment=fragment)
  assert not os.path.exists(workdir)


@pytest.mark.skipif(jax.default_backend() == "gpu", reason="cuDNN is there on a GPU")
def test_cudnn_off_gpu_is_refused_at_validation(tmp_path, capsys):
  workdir = str(tmp_path / "run")
  argv = REVERSE + ["--config.model.attention_implementation=cudnn"]
  rc, err = run_cli(argv, workdir=workdir, tmp=str(tmp_path), capsys=capsys)
  fragment = (
    f"config.model.attention_implementation = 'cudnn': cuDNN attention needs a GPU backend "
    f"and a head dim d_model / num_heads that is a multiple of 8 and at most 128; got "
    f"backend {jax.default_backend()!r}"
  )
  assert_clean_error(rc, err, command="train", fragment=fragment)
  assert not os.path.exists(workdir)


def test_addition_digits_at_the_int64_limit_are_right_and_one_past_is_refused():
  """18 digits: every label is the true sum; 19 would overflow int64 (all labels wrong)."""
  config = config_lib.validate({"task": {"name": "addition", "num_digits": 18}})
  assert config.task.num_digits == 18
  n = 18
  batch = Addition(num_digits=n, test_size=100).train_batch(seed=0, step=0, batch_size=100)
  sequence_BT = np.concatenate([batch["inputs"], batch["targets"][:, -1:]], axis=1)
  for row in sequence_BT:
    a, b = (int("".join(map(str, row[i * n : (i + 1) * n]))) for i in (0, 1))
    assert int("".join(map(str, row[2 * n :][::-1]))) == a + b
  with pytest.raises(config_lib.ConfigError, match=r"num_digits = 19: must be an int in \[1, 18\]"):
    config_lib.validate({"task": {"name": "addition", "num_digits": 19}})
  with pytest.raises(ValueError, match=r"num_digits must be in \[1, 18\]"):
    Addition(num_digits=19, test_size=100)
