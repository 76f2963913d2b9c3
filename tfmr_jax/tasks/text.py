"""Language modelling on any UTF-8 text file with a given tokenizer (nanoGPT's `prepare.py`
and `train.bin`, built on first use).

Dimension key: T tokens.

    ids_T = cached_token_ids("input.txt", load_tokenizer("gpt2/"), cache_dir="~/.cache/tfmr_jax")
    task = TextLM(ids_T=ids_T, tokenizer=tokenizer, block_size=1024, val_fraction=0.1)

The file is tokenized once: its ids are stored as an int32 `.npy` under
`<cache_dir>/tokens/`, named by the SHA-256 of the file's bytes and a hash of the
tokenizer's fingerprint, so a changed file or another tokenizer gets a file of its
own; later runs memory-map it (`np.load(mmap_mode="r")`) instead of tokenizing again.
The file is written atomically (a temporary file renamed into place), so an
interrupted write never leaves a truncated array behind. The whole text is encoded
in one call, so the ids are exactly `tokenizer.encode(text)`; a miss holds the text
and its ids in memory once.

The split and the windows are `WindowedLM`'s: the first (1 - val_fraction) of the
ids for training, the rest held out; random training windows of block_size + 1 ids
from a generator seeded by (seed, step); consecutive held-out windows.
"""

import hashlib
import os
import tempfile

import numpy as np

from tfmr_jax.tasks.corpus import CorpusError, decode_text, load_text
from tfmr_jax.tasks.lm_windows import WindowedLM
from tfmr_jax.tasks.tokenizer import Tokenizer

_CHUNK = 1 << 20  # bytes hashed at a time


class TextLM(WindowedLM):
  """Next-token prediction on token ids [T] of a text (the windows and metrics of
  `WindowedLM`); prompts and samples go through `tokenizer`."""

  name = "text"

  def __init__(
    self,
    *,
    ids_T: np.ndarray,
    tokenizer: Tokenizer,
    block_size: int,
    val_fraction: float,
    source: str = "the text",
  ):
    """`source` names the text in errors (make_task passes corpus_path)."""
    if not 0.0 < val_fraction < 1.0:
      raise ValueError(f"val_fraction must be in (0, 1), got {val_fraction!r}")
    self.tokenizer = tokenizer
    self.vocab_size = tokenizer.vocab_size
    self._split(
      ids_T, block_size=block_size, val_fraction=val_fraction, source=source, unit="tokens"
    )

  def encode_input(self, text: str) -> np.ndarray:
    """A prompt -> int32 token ids [T]."""
    if not text:
      raise ValueError("prompt must not be empty")
    return self.tokenizer.encode(text)

  def decode_output(self, tokens_T: np.ndarray) -> str:
    return self.tokenizer.decode(tokens_T)


def file_sha256(path: str, *, field: str = "corpus_path") -> str:
  """SHA-256 (hex) of the bytes of the file at `path`, read in chunks; CorpusError naming
  `field` and the path if it is missing, a directory or unreadable."""
  if os.path.isdir(path):
    raise CorpusError(f"{field} {path!r} is a directory, not a text file")
  digest = hashlib.sha256()
  try:
    with open(path, "rb") as f:
      while chunk := f.read(_CHUNK):
        digest.update(chunk)
  except OSError as e:
    raise CorpusError(f"{field} {path!r} cannot be read: {e.strerror or e}") from None
  return digest.hexdigest()


def cache_path(cache_dir: str, content_sha256: str, tokenizer: Tokenizer) -> str:
  """Where the ids of a text with this SHA-256, tokenized by `tokenizer`, are cached."""
  tokenizer_key = hashlib.sha256(tokenizer.fingerprint.encode()).hexdigest()[:16]
  return os.path.join(
    os.path.expanduser(cache_dir), "tokens", f"{content_sha256}-{tokenizer_key}.npy"
  )


def cached_token_ids(
  path: str,
  tokenizer: Tokenizer,
  *,
  cache_dir: str,
  url: str = "",
  sha256: str = "",
  content_sha256: str = "",
) -> np.ndarray:
  """int32 [T], memory-mapped: `tokenizer.encode` of the UTF-8 text at `path`, from the
  cache if it holds them, else encoded now and cached (see the module docstring).

  Args:
    path: the text file. If it does not exist and `url` is set, the text is
      downloaded once by `load_text` (checked against `sha256`, cached in cache_dir).
    content_sha256: if set, the SHA-256 the text must have (a run's recorded corpus).

  Raises CorpusError naming the path and the rule: missing (and no url), a directory,
  empty, a NUL byte, not UTF-8, or changed since content_sha256 was recorded.
  """
  if os.path.exists(path):
    digest = file_sha256(path)
    if content_sha256 and digest != content_sha256:
      raise CorpusError(
        f"corpus_path {path!r} has changed since the run first read it: its SHA-256 is "
        f"{digest}, the run recorded {content_sha256} (config.task.corpus_content_sha256)"
      )

    def read() -> bytes:
      with open(path, "rb") as f:
        return f.read()

  else:
    data = load_text(
      path, url=url, sha256=sha256, cache_dir=cache_dir, content_sha256=content_sha256
    ).encode("utf-8")
    digest = hashlib.sha256(data).hexdigest()

    def read() -> bytes:
      return data

  cached = cache_path(cache_dir, digest, tokenizer)
  ids_T = _load_cached(cached)
  if ids_T is not None:
    return ids_T
  try:
    text = decode_text(read(), source=path)
  except CorpusError as e:  # empty, a NUL byte, not UTF-8
    raise CorpusError(f"config.task.corpus_path: {e}") from None
  _save_atomically(cached, np.asarray(tokenizer.encode(text), np.int32))
  return np.load(cached, mmap_mode="r")


def _load_cached(cached: str) -> np.ndarray | None:
  """The memory-mapped ids at `cached`, or None if absent or not a 1-D int32 array."""
  if not os.path.exists(cached):
    return None
  try:
    ids_T = np.load(cached, mmap_mode="r")
  except (OSError, ValueError):  # unreadable or not an .npy: tokenize again
    return None
  if ids_T.dtype != np.int32 or ids_T.ndim != 1:
    return None
  return ids_T


def _save_atomically(cached: str, ids_T: np.ndarray) -> None:
  """Write `ids_T` to `cached` through a temporary file in the same folder and a rename."""
  folder = os.path.dirname(cached)
  os.makedirs(folder, exist_ok=True)
  fd, tmp = tempfile.mkstemp(dir=folder, suffix=".npy.part")
  try:
    with os.fdopen(fd, "wb") as f:
      np.save(f, ids_T)
    os.chmod(tmp, 0o644)  # mkstemp's 0600 would hide a shared cache from other users
    os.replace(tmp, cached)
  except BaseException:
    if os.path.exists(tmp):
      os.remove(tmp)
    raise
