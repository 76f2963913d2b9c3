"""Character-level language modelling on a text file (nanoGPT's shakespeare_char).

The vocabulary is the sorted set of characters of the corpus. The first
(1 - val_fraction) of the text is for training, the rest held out (nanoGPT's 90/10
split): disjoint by position. A training batch is `batch_size` random windows of
block_size + 1 characters, drawn from a generator seeded by (seed, step); the
evaluation set is the whole held-out text cut into consecutive windows.
"""

import numpy as np

from tfmr_jax.tasks.corpus import CorpusError
from tfmr_jax.tasks.lm_windows import WindowedLM
from tfmr_jax.tasks.tokenizer import CharTokenizer


class CharLM(WindowedLM):
  """Next-character prediction on `text` (the windows and metrics of `WindowedLM`)."""

  name = "char_lm"

  def __init__(
    self, *, text: str, block_size: int, val_fraction: float, source: str = "the corpus"
  ):
    """`source` names the text in errors (make_task passes corpus_path)."""
    if not 0.0 < val_fraction < 1.0:
      raise ValueError(f"val_fraction must be in (0, 1), got {val_fraction!r}")
    if not text:
      raise CorpusError(f"corpus {source!r} is empty: a corpus needs some text")
    codes = np.frombuffer(text.encode("utf-32-le"), dtype="<u4")
    code_points, ids = np.unique(codes, return_inverse=True)
    ids = ids.astype(np.int32)
    self.chars = [chr(c) for c in code_points]  # sorted by code point, as sorted(set(text))
    self.tokenizer = CharTokenizer(self.chars, source="the corpus")
    self._split(
      ids, block_size=block_size, val_fraction=val_fraction, source=source, unit="characters"
    )
    self.vocab_size = len(self.chars)

  def encode_input(self, text: str) -> np.ndarray:
    """A prompt -> int32 character ids [T]; every character must be in the vocabulary."""
    if not text:
      raise ValueError("prompt must not be empty")
    return self.tokenizer.encode(text)

  def decode_output(self, tokens_T: np.ndarray) -> str:
    return self.tokenizer.decode(tokens_T)
