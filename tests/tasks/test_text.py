"""The text task: GPT-2 token ids of a file, cached once by content and tokenizer, split by
position, random training windows pure in (seed, step), and one clear error per bad file."""

import hashlib
import os
import shutil

import numpy as np
import pytest

from tests.conftest import GPT2_BPE_GOLDEN
from tfmr_jax.tasks import CorpusError, TextLM, make_task
from tfmr_jax.tasks import text as text_lib
from tfmr_jax.tasks.tokenizer import CharTokenizer, load_tokenizer

GOLDEN_TEXT = GPT2_BPE_GOLDEN / "text.txt"


@pytest.fixture(scope="module")
def gpt2(gpt2_tokenizer_files):
  return load_tokenizer(str(gpt2_tokenizer_files))


class Counting:
  """A tokenizer that counts its encode calls."""

  def __init__(self, tokenizer):
    self.inner, self.calls = tokenizer, 0
    self.vocab_size, self.eot_id = tokenizer.vocab_size, tokenizer.eot_id
    self.fingerprint = tokenizer.fingerprint

  def encode(self, text):
    self.calls += 1
    return self.inner.encode(text)

  def decode(self, ids_T):
    return self.inner.decode(ids_T)


def _cached_files(cache_dir) -> list[str]:
  folder = os.path.join(cache_dir, "tokens")
  return sorted(os.listdir(folder)) if os.path.isdir(folder) else []


def test_ids_are_the_reference_tokenizers_and_the_cache_is_reused(gpt2, tmp_path):
  counting = Counting(gpt2)
  ids_T = text_lib.cached_token_ids(str(GOLDEN_TEXT), counting, cache_dir=str(tmp_path))
  golden_T = np.load(GPT2_BPE_GOLDEN / "reference.npz")["text_ids"]  # GPT2TokenizerFast's
  np.testing.assert_array_equal(ids_T, golden_T)
  assert ids_T.dtype == np.int32 and counting.calls == 1
  again_T = text_lib.cached_token_ids(str(GOLDEN_TEXT), counting, cache_dir=str(tmp_path))
  assert counting.calls == 1  # read back, not tokenized again
  assert isinstance(again_T, np.memmap) and again_T.mode == "r"
  np.testing.assert_array_equal(again_T, golden_T)
  [name] = _cached_files(tmp_path)
  assert name.startswith(text_lib.file_sha256(str(GOLDEN_TEXT)))


def test_the_cache_is_keyed_by_content_and_tokenizer(gpt2, tmp_path):
  path = tmp_path / "corpus.txt"
  path.write_text("the cat sat on the mat. " * 8)
  cache = str(tmp_path / "cache")
  first_T = np.array(text_lib.cached_token_ids(str(path), gpt2, cache_dir=cache))
  path.write_text("the dog sat on the log. " * 8)  # same name, other bytes
  second_T = text_lib.cached_token_ids(str(path), gpt2, cache_dir=cache)
  np.testing.assert_array_equal(second_T, gpt2.encode(path.read_text()))
  assert not np.array_equal(first_T, second_T)
  chars = CharTokenizer(sorted(set(path.read_text())))
  by_chars_T = text_lib.cached_token_ids(str(path), chars, cache_dir=cache)
  np.testing.assert_array_equal(by_chars_T, chars.encode(path.read_text()))
  assert len(_cached_files(cache)) == 3


def test_an_interrupted_cache_write_leaves_nothing_behind(gpt2, tmp_path, monkeypatch):
  cache = str(tmp_path / "cache")

  def save_half_then_fail(f, ids_T):
    f.write(b"\x93NUMPY partial")
    raise KeyboardInterrupt

  monkeypatch.setattr(text_lib.np, "save", save_half_then_fail)
  with pytest.raises(KeyboardInterrupt):
    text_lib.cached_token_ids(str(GOLDEN_TEXT), gpt2, cache_dir=cache)
  assert _cached_files(cache) == []  # no final file, no temporary one
  monkeypatch.undo()
  ids_T = text_lib.cached_token_ids(str(GOLDEN_TEXT), gpt2, cache_dir=cache)
  np.testing.assert_array_equal(ids_T, gpt2.encode(GOLDEN_TEXT.read_text()))


def test_a_damaged_cache_file_is_rebuilt(gpt2, tmp_path):
  cache = str(tmp_path / "cache")
  text_lib.cached_token_ids(str(GOLDEN_TEXT), gpt2, cache_dir=cache)
  [name] = _cached_files(cache)
  with open(os.path.join(cache, "tokens", name), "wb") as f:
    f.write(b"not an array")
  ids_T = text_lib.cached_token_ids(str(GOLDEN_TEXT), gpt2, cache_dir=cache)
  np.testing.assert_array_equal(ids_T, gpt2.encode(GOLDEN_TEXT.read_text()))


def test_split_is_disjoint_and_windows_are_pure_in_seed_and_step(gpt2):
  ids_T = np.arange(1000, 1200, dtype=np.int32)  # every id tells its position
  task = TextLM(ids_T=ids_T, tokenizer=gpt2, block_size=8, val_fraction=0.25)
  np.testing.assert_array_equal(task.train_ids, ids_T[:150])
  np.testing.assert_array_equal(task.val_ids, ids_T[150:])
  assert (task.format, task.vocab_size, task.max_len) == ("lm", 50257, 8)
  batch = task.train_batch(3, 7, 16)
  for x, y in zip(batch["inputs"], batch["targets"], strict=True):
    window = np.concatenate([x, y[-1:]])
    np.testing.assert_array_equal(window, np.arange(window[0], window[0] + 9))
    assert window[-1] < 1150  # training windows stay in the training part
    np.testing.assert_array_equal(y, x + 1)
  for key, value in task.train_batch(3, 7, 16).items():
    np.testing.assert_array_equal(value, batch[key])
  assert not np.array_equal(task.train_batch(3, 8, 16)["inputs"], batch["inputs"])
  assert not np.array_equal(task.train_batch(4, 7, 16)["inputs"], batch["inputs"])
  evals = task.eval_examples()
  np.testing.assert_array_equal(evals["inputs"].reshape(-1), ids_T[150 : 150 + 6 * 8])
  assert evals["weights"].shape == (6, 8) and (evals["weights"] == 1).all()


def test_prompts_and_samples_go_through_the_tokenizer(gpt2):
  task = TextLM(ids_T=np.zeros(40, np.int32), tokenizer=gpt2, block_size=4, val_fraction=0.5)
  assert task.encode_input("Hello world!").tolist() == [15496, 995, 0]
  assert task.decode_output(np.array([15496, 995, 0])) == "Hello world!"
  with pytest.raises(ValueError, match="prompt must not be empty"):
    task.encode_input("")


BAD_FILES = {
  "empty.txt": b"",
  "latin1.txt": "caf\xe9 au lait\n".encode("latin-1"),
  "short.txt": b"word " * 30,
}
BAD_CASES = [
  ("empty.txt", "config.task.corpus_path: corpus '{path}' is empty"),
  (
    "latin1.txt",
    "config.task.corpus_path: corpus '{path}' is not UTF-8 text: byte 0xe9 at offset 3",
  ),
  (
    "short.txt",
    # "word", 29 x " word", " ": 31 tokens, the last 4 held out
    "corpus '{path}' is too short: its held-out part (val_fraction=0.1 of 31 tokens) has 4 "
    "tokens, fewer than block_size + 1 = 17",
  ),
  ("missing.txt", "corpus_path '{path}' does not exist and no corpus_url is set"),
  (".", "corpus_path '{path}' is a directory, not a text file"),
]


@pytest.mark.parametrize("name,fragment", BAD_CASES)
def test_a_bad_file_is_one_corpus_error_naming_it(name, fragment, gpt2_tokenizer_files, tmp_path):
  for file_name, data in BAD_FILES.items():
    (tmp_path / file_name).write_bytes(data)
  path = os.path.normpath(str(tmp_path / name))
  with pytest.raises(CorpusError) as raised:
    make_task("text", **_text_fields(path, tmp_path, gpt2_tokenizer_files))
  assert fragment.format(path=path) in str(raised.value)
  if name != "short.txt":  # refused before anything is tokenized or cached
    assert _cached_files(tmp_path / "cache") == []


def test_a_missing_tokenizer_names_the_field(tmp_path):
  path = tmp_path / "corpus.txt"
  path.write_text("some text")
  with pytest.raises(CorpusError, match=r"config.task.tokenizer_dir = '.*nowhere': tokenizer"):
    make_task(
      "text",
      corpus_path=str(path),
      corpus_url="",
      corpus_sha256="",
      cache_dir=str(tmp_path),
      tokenizer_dir=str(tmp_path / "nowhere"),
      block_size=4,
      val_fraction=0.5,
    )


def _text_fields(corpus_path, tmp_path, tokenizer_dir, **extra) -> dict:
  """make_task's fields of a text task on `corpus_path`, caching under tmp_path/cache."""
  return dict(
    corpus_path=str(corpus_path),
    corpus_url="",
    corpus_sha256="",
    cache_dir=str(tmp_path / "cache"),
    tokenizer_dir=str(tokenizer_dir),
    block_size=16,
    val_fraction=0.1,
    **extra,
  )


def test_a_tokenizer_that_changed_since_the_run_began_is_refused(gpt2_tokenizer_files, tmp_path):
  folder = tmp_path / "tokenizer"
  shutil.copytree(gpt2_tokenizer_files, folder)
  recorded = hashlib.sha256(load_tokenizer(str(folder)).fingerprint.encode()).hexdigest()
  corpus = tmp_path / "corpus.txt"
  corpus.write_text("the quick brown fox jumps over the lazy dog. " * 20)
  fields = _text_fields(corpus, tmp_path, folder, tokenizer_sha256=recorded)
  make_task("text", **fields)  # unchanged
  merges = folder / "vocab.bpe"
  lines = merges.read_text(encoding="utf-8").splitlines(keepends=True)
  merges.write_text("".join(lines[:-1]), encoding="utf-8")  # one merge rule fewer
  with pytest.raises(CorpusError) as raised:
    make_task("text", **fields)
  message = str(raised.value)
  assert f"config.task.tokenizer_dir = '{folder}': its tokenizer changed" in message
  assert f"the run recorded {recorded} in config.task.tokenizer_sha256" in message
