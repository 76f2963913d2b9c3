"""A resume continues the same run: past damaged checkpoints, refusing another config,
and with the metrics an uninterrupted run writes."""

import os
import shutil

import jax
import numpy as np
import pytest

from tests.train.quick import quick_config
from tests.train.test_checkpoint import _damage
from tfmr_jax.train import (
  CheckpointUnavailableError,
  DamagedCheckpointWarning,
  load_run,
  train,
)

CONFIG = quick_config(
  "reverse",
  model={"dropout": 0.1},
  optim={"warmup_steps": 3},
  train={"num_steps": 12, "log_every": 4, "checkpoint_every": 3, "keep_checkpoints": 3},
)


def _state_arrays(workdir):
  def raw(x):
    return jax.random.key_data(x) if jax.dtypes.issubdtype(x.dtype, jax.dtypes.prng_key) else x

  return [np.asarray(raw(x)) for x in jax.tree.leaves(load_run(workdir).state)]


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
  """(uninterrupted workdir, workdir stopped at step 10 with checkpoints 6, 9 and 10)."""
  whole = str(tmp_path_factory.mktemp("whole"))
  stopped = str(tmp_path_factory.mktemp("stopped"))
  train(CONFIG, whole)
  train(CONFIG, stopped, stop_at_step=10)
  return whole, stopped


@pytest.mark.parametrize(
  "kind",
  [
    "truncate a data file",
    "flip 64 bytes of a data file",
    "remove default/ocdbt.process_0",  # where a training state's arrays are
    # The same fall-back path; test_checkpoint covers each of these quickly.
    pytest.param("remove default/manifest.ocdbt", marks=pytest.mark.slow),
    pytest.param("remove default/_METADATA", marks=pytest.mark.slow),
    pytest.param("remove default", marks=pytest.mark.slow),
    pytest.param("remove _CHECKPOINT_METADATA", marks=pytest.mark.slow),
  ],
)
def test_resume_past_a_damaged_newest_checkpoint_is_the_same_run(runs, tmp_path, kind):
  whole, stopped = runs
  workdir = str(tmp_path / "run")
  shutil.copytree(stopped, workdir)
  _damage(os.path.join(workdir, "checkpoints", "10"), kind)
  with pytest.warns(DamagedCheckpointWarning, match=r"step 10 .*; restored step 9 instead"):
    final = train(CONFIG, workdir)
  assert final["step"] == 12
  assert os.path.isdir(os.path.join(workdir, "checkpoints", "10.damaged"))
  for a, b in zip(_state_arrays(whole), _state_arrays(workdir), strict=True):
    np.testing.assert_array_equal(a, b)


def test_no_intact_checkpoint_is_an_error_not_a_fresh_start(runs, tmp_path):
  _, stopped = runs
  workdir = str(tmp_path / "run")
  shutil.copytree(stopped, workdir)
  for step in (6, 9, 10):
    _damage(os.path.join(workdir, "checkpoints", str(step)), "remove default")
  with pytest.raises(CheckpointUnavailableError, match=r"no intact checkpoint .*step 10 .*step 6"):
    train(CONFIG, workdir)
  with pytest.raises(CheckpointUnavailableError, match=r"no intact checkpoint"):
    load_run(workdir)


def test_evaluate_falls_back_but_an_explicit_damaged_step_is_an_error(runs, tmp_path):
  _, stopped = runs
  workdir = str(tmp_path / "run")
  shutil.copytree(stopped, workdir)
  _damage(os.path.join(workdir, "checkpoints", "10"), "truncate a data file")
  with pytest.warns(DamagedCheckpointWarning, match=r"step 10 .*restored step 9"):
    assert load_run(workdir).step == 9
  with pytest.raises(CheckpointUnavailableError, match=r"step 10 .*damaged.*\[6, 9, 10\]"):
    load_run(workdir, step=10)
  with pytest.raises(CheckpointUnavailableError, match=r"no checkpoint of step 7 .*\[6, 9, 10\]"):
    load_run(workdir, step=7)
