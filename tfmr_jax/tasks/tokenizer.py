"""Text <-> token ids: GPT-2's byte-level BPE, or a character vocabulary, behind one protocol.

Dimension key: B batch, T tokens.

    tokenizer = load_tokenizer("gpt2/")           # tokenizer.json, or vocab.json + merges.txt
    ids_T = tokenizer.encode("Hello world!")       # int32 [15496, 995, 0]
    tokenizer.decode(ids_T) == "Hello world!"
    ids_BT, valid_BT = encode_batch(tokenizer, ["Hi", "Hello there"], pad_id=tokenizer.eot_id)

The BPE runs in Hugging Face `tokenizers` (Rust). A folder may hold Hugging Face's
`tokenizer.json`, or the two files GPT-2 was released with, under either of their names:
`vocab.json` + `merges.txt` (Hugging Face) or `encoder.json` + `vocab.bpe` (OpenAI).
Every way a folder can be unusable raises `TokenizerError`, naming the path and the rule.
"""

import hashlib
import json
import os
from collections.abc import Sequence
from typing import Protocol, runtime_checkable

import numpy as np

END_OF_TEXT = "<|endoftext|>"
# (vocabulary file, merges file) pairs, in the order they are looked for.
_BPE_FILE_PAIRS = (("vocab.json", "merges.txt"), ("encoder.json", "vocab.bpe"))


class TokenizerError(ValueError):
  """A tokenizer cannot be loaded or cannot encode a text; the message says which and why."""


@runtime_checkable
class Tokenizer(Protocol):
  """What the CLI, the decoder and the text task need of a tokenizer."""

  vocab_size: int
  eot_id: int | None  # the end-of-text id, or None when the vocabulary has none
  fingerprint: str  # changes whenever the mapping text -> ids could change

  def encode(self, text: str) -> np.ndarray:
    """int32 [T] ids of `text`."""
    ...

  def decode(self, ids_T: Sequence[int] | np.ndarray) -> str:
    """The text of the ids [T]."""
    ...


class CharTokenizer:
  """One id per character of a fixed, sorted character set (the char_lm vocabulary)."""

  eot_id = None

  def __init__(self, chars: Sequence[str], *, source: str = "the vocabulary"):
    """`source` names the character set in errors (e.g. "the corpus")."""
    self.chars = list(chars)
    self.source = source
    self._index = {c: i for i, c in enumerate(self.chars)}
    self.vocab_size = len(self.chars)
    self.fingerprint = "chars:" + hashlib.sha256("".join(self.chars).encode()).hexdigest()

  def encode(self, text: str) -> np.ndarray:
    unknown = sorted(set(text) - set(self._index))
    if unknown:
      raise TokenizerError(f"text {text[:40]!r} has characters not in {self.source}: {unknown}")
    return np.asarray([self._index[c] for c in text], np.int32)

  def decode(self, ids_T) -> str:
    return "".join(self.chars[int(t)] for t in ids_T)


class BPETokenizer:
  """GPT-2's byte-level BPE (or any Hugging Face `tokenizers` model): lossless for any text."""

  def __init__(self, backend, *, fingerprint: str):
    self._backend = backend
    self.vocab_size = backend.get_vocab_size(with_added_tokens=True)
    self.eot_id = backend.token_to_id(END_OF_TEXT)
    self.fingerprint = fingerprint

  def encode(self, text: str) -> np.ndarray:
    return np.asarray(self._backend.encode(text, add_special_tokens=False).ids, np.int32)

  def decode(self, ids_T) -> str:
    return self._backend.decode([int(t) for t in ids_T], skip_special_tokens=False)


def load_tokenizer(path: str) -> BPETokenizer:
  """The BPE tokenizer whose files lie in the folder `path` (see the module docstring)."""
  if not os.path.isdir(path):
    raise TokenizerError(f"tokenizer folder {path!r} does not exist or is not a folder")
  tokenizer_json = os.path.join(path, "tokenizer.json")
  if os.path.isfile(tokenizer_json):
    return _from_tokenizer_json(tokenizer_json)
  for vocab_name, merges_name in _BPE_FILE_PAIRS:
    vocab, merges = os.path.join(path, vocab_name), os.path.join(path, merges_name)
    if os.path.isfile(vocab) and os.path.isfile(merges):
      return _from_vocab_and_merges(vocab, merges)
  wanted = " or ".join(["tokenizer.json"] + [f"{v} + {m}" for v, m in _BPE_FILE_PAIRS])
  raise TokenizerError(f"tokenizer folder {path!r} holds no tokenizer files: it needs {wanted}")


def fingerprint_sha256(tokenizer: Tokenizer) -> str:
  """SHA-256 hex of the tokenizer's fingerprint: what a run records of its tokenizer."""
  return hashlib.sha256(tokenizer.fingerprint.encode()).hexdigest()


def _sha256(*paths: str) -> str:
  digest = hashlib.sha256()
  for path in paths:
    with open(path, "rb") as f:
      digest.update(f.read())
  return digest.hexdigest()


def _from_tokenizer_json(path: str) -> BPETokenizer:
  import tokenizers

  try:
    backend = tokenizers.Tokenizer.from_file(path)
  except Exception as e:  # the Rust side raises its own exception type for any bad file
    raise TokenizerError(f"{path!r} is not a valid tokenizer.json: {e}") from None
  return BPETokenizer(backend, fingerprint="tokenizer.json:" + _sha256(path))


def _from_vocab_and_merges(vocab_path: str, merges_path: str) -> BPETokenizer:
  """GPT-2's byte-level BPE from its two released files, with <|endoftext|> as a special token."""
  import tokenizers
  from tokenizers import decoders, models, pre_tokenizers

  try:
    with open(vocab_path, encoding="utf-8") as f:
      vocab = json.load(f)
  except (UnicodeDecodeError, json.JSONDecodeError) as e:
    raise TokenizerError(f"{vocab_path!r} is not a JSON token -> id map: {e}") from None
  if not isinstance(vocab, dict) or not vocab:
    raise TokenizerError(f"{vocab_path!r} must hold a non-empty JSON object token -> id")
  try:
    bpe = models.BPE.from_file(vocab_path, merges_path)
  except Exception as e:
    raise TokenizerError(f"{merges_path!r} is not a BPE merges file: {e}") from None
  backend = tokenizers.Tokenizer(bpe)
  backend.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
  backend.decoder = decoders.ByteLevel()
  if END_OF_TEXT in vocab:
    backend.add_special_tokens([END_OF_TEXT])
  return BPETokenizer(backend, fingerprint="bpe:" + _sha256(vocab_path, merges_path))


def encode_batch(
  tokenizer: Tokenizer, texts: Sequence[str], *, pad_id: int, left: bool = True
) -> tuple[np.ndarray, np.ndarray]:
  """(ids_BT int32, valid_BT bool) of `texts`, padded with `pad_id` to the longest one.

  Left padding (the default) puts every text's last token in the last column, as batched
  decoding wants; `valid_BT` is True on real tokens. An empty text is refused.
  """
  if isinstance(texts, str) or not texts:
    raise TokenizerError("texts must be a non-empty list of strings")
  encoded = [tokenizer.encode(text) for text in texts]
  for i, ids_T in enumerate(encoded):
    if len(ids_T) == 0:
      raise TokenizerError(f"texts[{i}] is empty: every text needs at least one token")
  T = max(len(ids_T) for ids_T in encoded)
  ids_BT = np.full((len(texts), T), pad_id, np.int32)
  valid_BT = np.zeros((len(texts), T), bool)
  for i, ids_T in enumerate(encoded):
    columns = slice(T - len(ids_T), T) if left else slice(0, len(ids_T))
    ids_BT[i, columns], valid_BT[i, columns] = ids_T, True
  return ids_BT, valid_BT
