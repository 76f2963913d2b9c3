"""tfmr-jax export: a short GPT run becomes a Hugging Face folder holding its weights exactly.

Refusals (an encoder run, a step never saved, no --out) are rows of tests/test_bad_inputs.py.
"""

import json
import os

import jax
import numpy as np
import pytest
from flax import nnx

from tests.train.quick import grammar_text, quick_config
from tfmr_jax import cli, train
from tfmr_jax.models import load_hf_dir


@pytest.fixture(scope="module")
def gpt_run(tmp_path_factory):
  """A 4-step character-LM run (a GPT) with checkpoints at steps 2 and 4 (a few seconds)."""
  root = tmp_path_factory.mktemp("gpt")
  corpus = root / "corpus.txt"
  corpus.write_text(grammar_text(3000))
  config = quick_config(
    "char_lm",
    task={"corpus_path": str(corpus)},
    optim={"warmup_steps": 1},
    train={"num_steps": 4, "checkpoint_every": 2, "batch_size": 8},
  )
  train.train(config, str(root / "run"))
  return str(root / "run")


def _params(model):
  return jax.tree.map(np.asarray, nnx.state(model, nnx.Param))


def _export(capsys, *argv):
  rc = cli.main(["export", *argv])
  out, err = capsys.readouterr()
  return rc, out, err


def test_export_writes_the_runs_weights_and_refuses_to_overwrite(gpt_run, tmp_path, capsys):
  out_dir = str(tmp_path / "hf")
  rc, out, err = _export(capsys, "--workdir", gpt_run, "--out", out_dir)
  assert (rc, out, err) == (0, out_dir + "\n", "")
  run = train.load_run(gpt_run)
  assert run.step == 4
  jax.tree.map(np.testing.assert_array_equal, _params(load_hf_dir(out_dir)), _params(run.model))
  with open(os.path.join(out_dir, "config.json")) as f:
    config = json.load(f)
  assert config["vocab_size"] == run.task.vocab_size and config["n_layer"] == 2

  rc, _, err = _export(capsys, "--workdir", gpt_run, "--out", out_dir, "--step", "2")
  assert rc == 2 and "exists and is not empty" in err and len(err.splitlines()) == 1
  rc, _, _ = _export(capsys, "--workdir", gpt_run, "--out", out_dir, "--step", "2", "--overwrite")
  assert rc == 0
  at_2 = _params(load_hf_dir(out_dir))
  jax.tree.map(np.testing.assert_array_equal, at_2, _params(train.load_run(gpt_run, step=2).model))
  wte = at_2["token_embedding"]["embed"]["embedding"]
  assert not np.array_equal(wte, _params(run.model)["token_embedding"]["embed"]["embedding"])
