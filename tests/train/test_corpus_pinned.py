"""A char_lm run reads the corpus of its first run, from any directory, or says it changed;
a text run records its tokenizer the same way."""

import hashlib
import os

import pytest

from tests.train.quick import grammar_text, quick_config
from tfmr_jax import config as C
from tfmr_jax.tasks import corpus as corpus_lib
from tfmr_jax.tasks.tokenizer import load_tokenizer
from tfmr_jax.train import evaluate, sample, train
from tfmr_jax.train.run_config import load_config
from tfmr_jax.train.run_identity import pin_corpus


def test_evaluate_from_another_directory_reads_the_first_runs_corpus(tmp_path, monkeypatch):
  first, other = tmp_path / "first", tmp_path / "other"
  first.mkdir()
  other.mkdir()
  text = grammar_text()
  (first / "corpus.txt").write_text(text)
  (other / "corpus.txt").write_text(text.replace("cat", "cow"))  # same name, other text
  workdir = str(tmp_path / "run")
  config = quick_config(
    "char_lm",
    task={"corpus_path": "corpus.txt", "corpus_url": ""},  # relative to the first run's cwd
    optim={"warmup_steps": 2},
    train={"num_steps": 10},
  )
  monkeypatch.chdir(first)
  final = train(config, workdir)
  recorded = load_config(workdir).task
  assert recorded.corpus_path == str(first / "corpus.txt")
  assert recorded.corpus_content_sha256 == corpus_lib.sha256_hex(text.encode())

  monkeypatch.chdir(other)
  again = evaluate(workdir)
  assert again["loss"] == pytest.approx(final["loss"], rel=1e-6)
  assert sample(workdir, "the ", max_new_tokens=4, temperature=0.0).startswith("the ")
  # A resume with the same relative path from here names another file: refused.
  with pytest.raises(C.ConfigError, match=r"task.corpus_path: '.*first/corpus.txt' -> '.*other"):
    train({**config.to_dict(), "train": {**config.train.to_dict(), "num_steps": 12}}, workdir)

  (first / "corpus.txt").write_text(text + "the end. ")
  changed = corpus_lib.sha256_hex((text + "the end. ").encode())
  message = (
    rf"corpus_path '{first / 'corpus.txt'}' has changed .*SHA-256 is {changed}, the run "
    rf"recorded {recorded.corpus_content_sha256}"
  )
  for read in (lambda: evaluate(workdir), lambda: train(load_config(workdir), workdir)):
    with pytest.raises(ValueError, match=message):
      read()
  assert os.path.exists(os.path.join(workdir, "config.json"))


def test_a_recorded_hash_must_be_hex(tmp_path):
  with pytest.raises(C.ConfigError, match=r"corpus_content_sha256 = 'abc': must be '' .*64"):
    C.validate({"task": {"name": "char_lm", "corpus_content_sha256": "abc"}})


def test_a_text_run_records_its_tokenizer_and_a_resume_keeps_the_record(
  gpt2_tokenizer_files, tmp_path
):
  (tmp_path / "corpus.txt").write_text("some text to train on. " * 50)
  given = {
    "task": {
      "name": "text",
      "corpus_path": str(tmp_path / "corpus.txt"),
      "corpus_url": "",
      "tokenizer_dir": str(gpt2_tokenizer_files),
    },
    "model": {"kind": "gpt"},
  }
  pinned = pin_corpus(C.validate(given))
  fingerprint = load_tokenizer(str(gpt2_tokenizer_files)).fingerprint
  assert pinned.task.tokenizer_sha256 == hashlib.sha256(fingerprint.encode()).hexdigest()
  # A resume takes the recorded digest, not the files' current one, so make_task can
  # compare the two.
  recorded = pin_corpus(C.validate(given))
  recorded.task.tokenizer_sha256 = "0" * 64
  assert pin_corpus(C.validate(given), recorded=recorded).task.tokenizer_sha256 == "0" * 64
