"""kill -9 at random moments, during steps and during saves: the resumed run is the same run.

Each run is a separate process killed with SIGKILL (no handler runs, a save may be cut
half-way); rerunning the same command resumes from the newest intact checkpoint. The
final state must equal an uninterrupted run's bit for bit.
"""

import os
import signal
import subprocess
import sys
import time

import numpy as np
import pytest

from tests.train.quick import quick_config
from tests.train.test_train import REPO, _state_arrays
from tfmr_jax.train import train

TRAIN = """
import sys
sys.path.insert(0, {repo!r})
from tests.train.quick import quick_config
from tfmr_jax.train import train
train(quick_config("reverse", **{sections!r}), {workdir!r})
"""


def _sections(num_steps: int) -> dict:
  """Dropout on, so the RNG streams must be restored too; a checkpoint after every step,
  so a random kill often lands inside a save."""
  return {
    "model": {"dropout": 0.1},
    "optim": {"warmup_steps": 3},
    "train": {
      "num_steps": num_steps,
      "log_every": 5,
      "checkpoint_every": 1,
      "keep_checkpoints": 2,
    },
  }


def _newest_step(workdir: str) -> int:
  """The newest complete checkpoint's step on disk (-1 if none)."""
  directory = os.path.join(workdir, "checkpoints")
  names = os.listdir(directory) if os.path.isdir(directory) else []
  return max((int(name) for name in names if name.isdigit()), default=-1)


def _train_killed(workdir: str, sections: dict, *, kills: int, seed: int) -> list[int]:
  """Run the training in a subprocess and SIGKILL it `kills` times, each a random moment
  after that process has saved a new checkpoint (so it is mid-training, often mid-save);
  then let it finish. Returns the newest checkpoint step seen at each kill."""
  rng = np.random.default_rng(seed)
  script = TRAIN.format(repo=REPO, sections=sections, workdir=workdir)
  env = {**os.environ, "JAX_PLATFORMS": "cpu"}
  killed_at = []
  for _ in range(kills):
    start = _newest_step(workdir)
    with subprocess.Popen([sys.executable, "-c", script], env=env, stderr=subprocess.PIPE) as run:
      deadline = time.monotonic() + 300
      while _newest_step(workdir) <= start and run.poll() is None:
        assert time.monotonic() < deadline, "no checkpoint after 300 s"
        time.sleep(0.05)
      time.sleep(float(rng.uniform(0.0, 0.6)))
      if run.poll() is None:
        os.kill(run.pid, signal.SIGKILL)
        killed_at.append(_newest_step(workdir))
      _, stderr = run.communicate()
    if run.returncode == 0:
      return killed_at  # it finished before the kill
    assert run.returncode == -signal.SIGKILL, stderr.decode()[-3000:]
  final = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True, timeout=600)
  assert final.returncode == 0, final.stderr.decode()[-3000:]
  return killed_at


def _assert_same_as_uninterrupted(tmp_path, *, kills: int, seed: int, num_steps: int) -> None:
  sections = _sections(num_steps)
  reference = str(tmp_path / "uninterrupted")
  train(quick_config("reverse", **sections), reference)
  killed = str(tmp_path / "killed")
  start = time.perf_counter()
  killed_at = _train_killed(killed, sections, kills=kills, seed=seed)
  assert len(killed_at) == kills, (
    f"killed at steps {killed_at} in {time.perf_counter() - start:.1f} s"
  )
  assert max(killed_at) < num_steps
  assert not [name for name in os.listdir(os.path.join(killed, "checkpoints")) if "tmp" in name]
  for got, want in zip(_state_arrays(killed), _state_arrays(reference), strict=True):
    np.testing.assert_array_equal(got, want)


def test_killed_then_resumed_is_bitwise_the_uninterrupted_run(tmp_path):
  _assert_same_as_uninterrupted(tmp_path, kills=1, seed=0, num_steps=30)


@pytest.mark.slow
def test_killed_ten_times_then_resumed_is_bitwise_the_uninterrupted_run(tmp_path):
  _assert_same_as_uninterrupted(tmp_path, kills=10, seed=1, num_steps=60)
