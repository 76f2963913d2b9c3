"""Every training path reaches a real result; runs reload, resume exactly, and fail loudly."""

import importlib.util
import json
import os
import re
import struct

import jax
import numpy as np
import pytest

from tests.train.quick import grammar_text, poisoned_make_task, quick_config, unigram_entropy
from tfmr_jax import config as C
from tfmr_jax.train import NonFiniteLossError, evaluate, load_run, read_metrics, sample, train
from tfmr_jax.train import loop as loop_lib
from tfmr_jax.train.checkpoint import Checkpointer
from tfmr_jax.train.run_config import load_config

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def _char_lm_config(tmp_path, **sections):
  text = grammar_text()
  path = tmp_path / "corpus.txt"
  path.write_text(text)
  task = {"corpus_path": str(path), "corpus_url": "", **sections.pop("task", {})}
  return quick_config("char_lm", task=task, **sections), text


@pytest.fixture(scope="module")
def reverse_run(tmp_path_factory):
  workdir = str(tmp_path_factory.mktemp("reverse"))
  config = quick_config("reverse", train={"tensorboard": True})
  return workdir, train(config, workdir)


@pytest.fixture(scope="module")
def char_lm_run(tmp_path_factory):
  tmp = tmp_path_factory.mktemp("char_lm")
  config, text = _char_lm_config(tmp)
  workdir = str(tmp / "run")
  return workdir, train(config, workdir), text


def test_reverse_reaches_100_percent_on_held_out_sequences(reverse_run):
  workdir, final = reverse_run
  assert final["step"] == 300 and final["split"] == "test"
  assert final["exact_match"] == 1.0 and final["token_accuracy"] == 1.0
  train_steps = [r["step"] for r in read_metrics(workdir, "train")]
  assert train_steps == list(range(25, 301, 25))
  assert read_metrics(workdir, "test")[-1]["exact_match"] == 1.0
  assert (
    load_config(workdir).to_dict()
    == C.validate(quick_config("reverse", train={"tensorboard": True})).to_dict()
  )


@pytest.mark.parametrize(
  "task,threshold",
  [
    ("copy", 0.99),
    ("sort", 1.0),
    pytest.param("addition", 0.85, marks=pytest.mark.slow),  # the same path as sort
  ],
)
def test_decoding_tasks_reach_their_threshold_with_greedy_decoding(task, threshold, tmp_path):
  final = train(quick_config(task), str(tmp_path))
  assert final["greedy_exact_match"] >= threshold
  # Teacher-forced argmax all right <=> greedy decoding reproduces the answer.
  assert final["greedy_exact_match"] == final["exact_match"]


def test_char_lm_learns_far_beyond_character_frequencies(char_lm_run):
  workdir, final, text = char_lm_run
  held_out = text[int(len(text) * 0.8) :]
  assert final["split"] == "val"
  assert final["loss"] < unigram_entropy(held_out) / 4
  assert final["perplexity"] == pytest.approx(np.exp(final["loss"]))


def test_evaluate_reloads_the_latest_checkpoint(reverse_run):
  workdir, final = reverse_run
  again = evaluate(workdir)
  assert again["step"] == 300 and again["exact_match"] == final["exact_match"]
  assert again["loss"] == pytest.approx(final["loss"], rel=1e-6)


def test_sample_reverses_an_input(reverse_run):
  assert sample(reverse_run[0], "1 2 3 4 5 6 7 0") == "0 7 6 5 4 3 2 1"


def test_sample_continues_a_prompt_past_the_context_window(char_lm_run):
  workdir, _, _ = char_lm_run
  text = sample(workdir, "the cat ", max_new_tokens=50, temperature=0.0)  # block_size is 16
  assert len(text) == 58 and text.startswith("the cat ")
  sentence = r"(the cat|a dog|my bird) (sees|eats) (fish|corn)\. "
  assert re.match(rf"({sentence}){{2}}", text), text


def _tensorboard_scalars(workdir):
  """{(tag, step): value} from the TFRecord event files, parsed by hand."""
  from tensorboardX.proto import event_pb2

  scalars = {}
  folder = os.path.join(workdir, "tensorboard")
  for name in os.listdir(folder):
    with open(os.path.join(folder, name), "rb") as f:
      data = f.read()
    at = 0
    while at < len(data):
      (length,) = struct.unpack("<Q", data[at : at + 8])
      event = event_pb2.Event.FromString(data[at + 12 : at + 12 + length])
      at += 12 + length + 4
      for value in event.summary.value:
        scalars[(value.tag, event.step)] = value.simple_value
  return scalars


def test_tensorboard_events_hold_the_same_numbers_as_metrics_jsonl(reverse_run):
  workdir, _ = reverse_run
  scalars = _tensorboard_scalars(workdir)
  for record in read_metrics(workdir):
    for name, value in record.items():
      if name not in ("step", "split"):
        assert scalars[(f"{record['split']}/{name}", record["step"])] == pytest.approx(value)


def _state_arrays(workdir):
  """Every array of the run's latest TrainState (PRNG keys as their key data)."""

  def raw(x):
    return jax.random.key_data(x) if jax.dtypes.issubdtype(x.dtype, jax.dtypes.prng_key) else x

  return [np.asarray(raw(x)) for x in jax.tree.leaves(load_run(workdir).state)]


def test_resume_is_bitwise_the_same_run(tmp_path):
  """Dropout on, so the resumed run must also restore the RNG streams to match."""
  config = quick_config(
    "reverse",
    model={"dropout": 0.1},
    optim={"warmup_steps": 3},
    train={"num_steps": 12, "log_every": 1, "checkpoint_every": 100},
  )
  whole, parts = str(tmp_path / "whole"), str(tmp_path / "parts")
  train(config, whole)
  stopped = train(config, parts, stop_at_step=5)
  assert stopped["stopped"] == "stop_at_step" and stopped["step"] == 5
  with open(os.path.join(parts, "metrics.jsonl"), "a") as f:  # as if it died after step 5
    f.write(json.dumps({"step": 6, "split": "train", "loss": 9.0}) + "\n")
  train(config, parts)
  losses_whole = [r["loss"] for r in read_metrics(whole, "train")]
  losses_parts = [r["loss"] for r in read_metrics(parts, "train")]
  assert len(losses_whole) == 12 and losses_parts == losses_whole
  for a, b in zip(_state_arrays(whole), _state_arrays(parts), strict=True):
    np.testing.assert_array_equal(a, b)


def test_non_finite_loss_names_the_step_and_keeps_the_last_good_checkpoint(tmp_path, monkeypatch):
  monkeypatch.setattr(loop_lib, "make_task", poisoned_make_task(nan_at_step=6))  # 7th update
  config = quick_config(
    "reverse", optim={"warmup_steps": 3}, train={"num_steps": 20, "checkpoint_every": 5}
  )
  with pytest.raises(NonFiniteLossError, match=r"training loss is nan at step 7.*\(step 5\)"):
    train(config, str(tmp_path))
  checkpoints = Checkpointer(str(tmp_path / "checkpoints"), keep=2)
  assert checkpoints.latest_step() == 5
  checkpoints.close()


def test_resuming_with_another_model_is_refused(reverse_run):
  workdir, _ = reverse_run
  other = quick_config("reverse", model={"d_model": 64})
  with pytest.raises(C.ConfigError, match=r"model\.d_model: 32 -> 64\); use a new workdir"):
    train(other, workdir)


def test_reproduce_draws_the_curve_and_every_attention_head(reverse_run, tmp_path):
  spec = importlib.util.spec_from_file_location(
    "reproduce", os.path.join(REPO, "experiments", "reproduce.py")
  )
  reproduce = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(reproduce)
  workdir, _ = reverse_run
  ((title, weights_NTS, queries, keys),) = reproduce.attention_maps(workdir)  # 1 layer
  assert title == "layer 1" and weights_NTS.shape == (1, 8, 8) and len(queries) == 8
  np.testing.assert_allclose(weights_NTS.sum(-1), 1.0, rtol=1e-5)
  # A model that reverses attends from position t to position T - 1 - t.
  assert (weights_NTS[0].argmax(-1) == np.arange(7, -1, -1)).all()
  for name, draw in (
    ("curve.png", reproduce.plot_learning_curve),
    ("attention.png", reproduce.plot_attention),
  ):
    draw(workdir, "reverse", str(tmp_path / name))
    assert (tmp_path / name).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
