"""A resume continues the same run: past damaged checkpoints, refusing another config,
and with the metrics an uninterrupted run writes."""

import copy
import os
import shutil

import jax
import numpy as np
import pytest

from tests.train.quick import quick_config
from tests.train.test_checkpoint import _damage
from tfmr_jax import config as C
from tfmr_jax.train import (
  CheckpointUnavailableError,
  DamagedCheckpointWarning,
  load_run,
  read_metrics,
  train,
)
from tfmr_jax.train.run_config import load_config

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


def _copy(stopped, tmp_path) -> tuple[str, bytes]:
  workdir = str(tmp_path / "run")
  shutil.copytree(stopped, workdir)
  with open(os.path.join(workdir, "config.json"), "rb") as f:
    return workdir, f.read()


def _config_json(workdir) -> bytes:
  with open(os.path.join(workdir, "config.json"), "rb") as f:
    return f.read()


def _changed(**sections):
  config = copy.deepcopy(CONFIG)
  for section, fields in sections.items():
    config[section].update(fields)
  return config


def test_a_resume_that_changes_the_run_is_refused_listing_every_difference(runs, tmp_path):
  workdir, recorded = _copy(runs[1], tmp_path)
  other = _changed(optim={"learning_rate": 0.02, "schedule": "constant"}, train={"seed": 1})
  message = (
    r"another config \(optim.learning_rate: 0.01 -> 0.02; optim.schedule: 'warmup_cosine' "
    r"-> 'constant'; train.seed: 0 -> 1\); use a new workdir, or pass allow_config_change"
  )
  with pytest.raises(C.ConfigError, match=message):
    train(other, workdir)
  with pytest.raises(C.ConfigError, match=r"num_steps = 8: .* step 10, past it"):
    train(_changed(train={"num_steps": 8}), workdir)
  assert _config_json(workdir) == recorded


def test_a_failed_resume_leaves_the_recorded_run_usable(runs, tmp_path):
  workdir, recorded = _copy(runs[1], tmp_path)
  other = _changed(model={"d_model": 16, "d_ff": 32})
  with pytest.raises(CheckpointUnavailableError):  # no checkpoint fits the other model
    train(other, workdir, allow_config_change=True)
  assert _config_json(workdir) == recorded
  assert load_run(workdir).step == 10


def test_an_allowed_change_continues_and_is_recorded(runs, tmp_path):
  workdir, _ = _copy(runs[1], tmp_path)
  other = _changed(
    optim={"learning_rate": 0.02},
    train={"num_steps": 14, "log_every": 2, "progress_bar": True},  # free to change
  )
  final = train(other, workdir, allow_config_change=True)
  assert final["step"] == 14
  assert load_config(workdir).optim.learning_rate == 0.02
  cosmetic_only = _changed(train={"num_steps": 16, "checkpoint_every": 7, "eval_every": 5})
  cosmetic_only.optim.learning_rate = 0.02
  assert train(cosmetic_only, workdir, stop_at_step=15)["step"] == 15


def _train_records(workdir):
  """The train records without steps_per_s, which is wall-clock."""
  return [
    {k: v for k, v in r.items() if k != "steps_per_s"} for r in read_metrics(workdir, "train")
  ]


def test_the_metrics_of_a_run_resumed_between_log_records_are_the_uninterrupted_ones(
  runs, tmp_path
):
  whole, stopped = runs  # stopped at step 10, halfway between the records of 8 and 12
  workdir, _ = _copy(stopped, tmp_path)
  train(CONFIG, workdir)
  assert [r["step"] for r in _train_records(workdir)] == [4, 8, 12]
  assert _train_records(workdir) == _train_records(whole)
  assert read_metrics(workdir, "test") == read_metrics(whole, "test")
