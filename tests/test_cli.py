"""tfmr-jax: train with overrides, resume, evaluate, sample; bad input; SIGTERM."""

import json
import os
import signal
import subprocess
import sys
import time

import pytest

from tfmr_jax import cli
from tfmr_jax.train import read_metrics

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
REVERSE = os.path.join(REPO, "configs", "reverse.py")
SMALL = [  # configs/reverse.py, made small
  "--config.task.num_symbols=8",
  "--config.task.length=8",
  "--config.task.test_size=1000",
  "--config.optim.learning_rate=0.01",
  "--config.optim.warmup_steps=5",
  "--config.train.eval_every=10000",
  "--config.train.progress_bar=false",
  "--config.train.tensorboard=false",
]


def _main(capsys, *argv):
  rc = cli.main(list(argv))
  out, err = capsys.readouterr()
  return rc, out, err


def test_train_stop_resume_evaluate_sample(tmp_path, capsys):
  workdir = str(tmp_path / "run")
  rc, out, _ = _main(
    capsys,
    "train",
    "--config",
    REVERSE,
    "--workdir",
    workdir,
    *SMALL,
    "--config.train.num_steps=40",
    "--config.train.log-every=10",
    "--stop-at-step",
    "20",
  )
  assert rc == 0 and json.loads(out) == {**json.loads(out), "step": 20, "stopped": "stop_at_step"}
  with open(os.path.join(workdir, "config.json")) as f:
    saved = json.load(f)
  assert saved["task"]["length"] == 8 and saved["optim"]["learning_rate"] == 0.01
  assert saved["train"]["log_every"] == 10 and saved["model"]["num_heads"] == 1  # from the recipe

  rc, out, _ = _main(capsys, "train", "--workdir", workdir)  # resumes with the saved config
  assert rc == 0 and json.loads(out)["step"] == 40
  assert [r["step"] for r in read_metrics(workdir, "train")] == [10, 20, 30, 40]

  rc, out, _ = _main(capsys, "evaluate", "--workdir", workdir)
  metrics = json.loads(out)
  assert rc == 0 and metrics["step"] == 40 and metrics["split"] == "test"
  assert set(metrics) == {"step", "split", "loss", "token_accuracy", "exact_match"}

  rc, out, _ = _main(
    capsys, "sample", "--workdir", workdir, "--prompt", "1 2 3 4 5 6 7 0", "--max-new-tokens", "5"
  )
  assert rc == 0 and len(out.split()) == 8 and set(out.split()) <= set("01234567")

  rc, _, err = _main(capsys, "sample", "--workdir", workdir, "--prompt", "1 2 3")
  assert rc == 2 and "expected 8 symbols in 0..7" in err


@pytest.mark.parametrize(
  "argv,message",
  [
    (
      ["--config.model.num_head=2"],
      """--config.model.num_head: 'num_head' Did you mean "num_heads" instead of "num_head"?""",
    ),
    (
      ["--config.modle.num_heads=2"],
      """--config.modle.num_heads: 'modle' Did you mean "model" instead of "modle"?""",
    ),
    (
      ["--config.model.num_heads=3", "--config.model.d_model=32"],
      "config.model.num_heads = 3: must divide d_model=32",
    ),
    (["--config.model.num_heads=two"], "--config.model.num_heads=two"),
    (["--config.optim.name=sgd"], "config.optim.name = 'sgd': unknown optimizer"),
    (["--config.train.batch_size=-4"], "config.train.batch_size = -4: must be a positive int"),
  ],
)
def test_bad_overrides_exit_2_with_the_message(argv, message, tmp_path, capsys):
  rc, _, err = _main(capsys, "train", "--config", REVERSE, "--workdir", str(tmp_path), *argv)
  assert rc == 2 and message in err
  assert not os.path.exists(tmp_path / "checkpoints")


def test_preset_argument_selects_the_gpu_recipe(tmp_path, capsys):
  """configs/char_lm.py:baby is d_model 384: 5 heads cannot divide it (nothing is built)."""
  rc, _, err = _main(
    capsys,
    "train",
    f"--config={REPO}/configs/char_lm.py:baby",
    "--workdir",
    str(tmp_path),
    "--config.model.num_heads=5",
  )
  assert rc == 2 and "config.model.num_heads = 5: must divide d_model=384" in err


def test_usage_errors(tmp_path, capsys):
  rc, _, err = _main(capsys, "trian")
  assert rc == 2 and "unknown command 'trian' (did you mean 'train'?)" in err
  rc, _, err = _main(capsys, "evaluate", "--workdir", str(tmp_path / "nothing"))
  assert rc == 2 and "no config.json" in err
  rc, _, err = _main(capsys, "train", "--workdir", str(tmp_path / "nothing"))
  assert rc == 2 and "train needs --config" in err
  rc, out, _ = _main(capsys, "--help")
  assert rc == 0 and "tfmr-jax train --config" in out


def test_python_dash_m_runs_the_same_cli():
  out = subprocess.run(
    [sys.executable, "-m", "tfmr_jax", "--help"],
    capture_output=True,
    text=True,
    check=True,
    cwd=REPO,
  )
  assert "tfmr-jax evaluate --workdir" in out.stdout


def test_sigterm_saves_a_checkpoint_and_exits_cleanly(tmp_path):
  workdir = str(tmp_path / "run")
  argv = [
    sys.executable,
    "-m",
    "tfmr_jax",
    "train",
    "--config",
    REVERSE,
    "--workdir",
    workdir,
    *SMALL,
    "--config.train.num_steps=1000000",
    "--config.train.log_every=1",
  ]
  process = subprocess.Popen(
    argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=REPO
  )
  deadline = time.time() + 240
  while not read_metrics(workdir, "train") and time.time() < deadline:
    assert process.poll() is None, process.communicate()[1][-2000:]
    time.sleep(0.2)
  process.send_signal(signal.SIGTERM)
  out, err = process.communicate(timeout=120)
  assert process.returncode == 128 + signal.SIGTERM, err[-2000:]
  result = json.loads(out.strip().splitlines()[-1])
  assert result["stopped"] == "SIGTERM" and result["step"] >= 1
  assert "checkpoint saved" in err and "Traceback" not in err
  assert sorted(os.listdir(os.path.join(workdir, "checkpoints"))) == [str(result["step"])]
