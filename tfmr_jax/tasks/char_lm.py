"""Character-level language modelling on a text file (nanoGPT's shakespeare_char).

The vocabulary is the sorted set of characters of the corpus. The first
(1 - val_fraction) of the text is for training, the rest held out (nanoGPT's 90/10
split): disjoint by position. A training batch is `batch_size` random windows of
block_size + 1 characters, drawn from a generator seeded by (seed, step); the
evaluation set is the whole held-out text cut into consecutive windows.
"""

from collections.abc import Iterator

import numpy as np

from tfmr_jax.tasks.batching import padded_batches
from tfmr_jax.tasks.corpus import CorpusError
from tfmr_jax.tasks.heldout import step_rng
from tfmr_jax.tasks.tokenizer import CharTokenizer


class CharLM:
  """Next-character prediction on `text`.

  Format "lm": inputs [B, block_size], targets [B, block_size] (inputs shifted by one),
  weights [B, block_size] all ones. Metrics: loss, perplexity, token accuracy.
  """

  name = "char_lm"
  format = "lm"
  eval_split = "val"
  metric_names = ("loss", "perplexity", "token_accuracy")

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
    split = int(len(ids) * (1.0 - val_fraction))
    self.train_ids, self.val_ids = ids[:split], ids[split:]
    self.block_size = self.max_len = block_size
    for name, part in (("training", self.train_ids), ("held-out", self.val_ids)):
      if len(part) < block_size + 1:
        raise CorpusError(
          f"corpus {source!r} is too short: its {name} text (val_fraction={val_fraction:g} of "
          f"{len(ids)} characters) has {len(part)} characters, fewer than block_size + 1 = "
          f"{block_size + 1}"
        )
    self.vocab_size = len(self.chars)

  def train_batch(self, seed: int, step: int, batch_size: int) -> dict:
    """`batch_size` random training windows: a pure function of (seed, step, batch_size)."""
    starts = step_rng(seed, step).integers(0, len(self.train_ids) - self.block_size, batch_size)
    return self._windows(self.train_ids, starts)

  def eval_examples(self) -> dict:
    """The held-out text as consecutive windows, each predicting block_size characters."""
    starts = np.arange(0, len(self.val_ids) - self.block_size, self.block_size)
    return self._windows(self.val_ids, starts)

  def eval_batches(self, batch_size: int) -> Iterator[dict]:
    return padded_batches(self.eval_examples(), batch_size)

  def _windows(self, ids: np.ndarray, starts: np.ndarray) -> dict:
    index_BT = starts[:, None] + np.arange(self.block_size + 1)[None, :]
    window_BT = ids[index_BT]
    return {
      "inputs": window_BT[:, :-1],
      "targets": window_BT[:, 1:],
      "weights": np.ones((len(starts), self.block_size), np.float32),
    }

  def encode_input(self, text: str) -> np.ndarray:
    """A prompt -> int32 character ids [T]; every character must be in the vocabulary."""
    if not text:
      raise ValueError("prompt must not be empty")
    return self.tokenizer.encode(text)

  def decode_output(self, tokens_T: np.ndarray) -> str:
    return self.tokenizer.decode(tokens_T)
