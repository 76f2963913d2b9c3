"""What the four toy tasks share: items drawn uniformly, a hash-chosen test set.

An *item* is a sequence of `item_len` symbols from range(num_symbols) (the digits of
two numbers, for addition). Each task turns items into examples; this base class
draws them, as a pure function of (seed, step) for training and from the fixed
held-out set for evaluation.

Example formats (int32 tokens, float32 loss weights, B batch, T/S lengths):
  "tagging": inputs [B, T], targets [B, T], weights [B, T]        (encoder)
  "seq2seq": src [B, S], tgt_in [B, T], targets [B, T], weights    (encoder-decoder)
  "lm":      inputs [B, T], targets [B, T], weights [B, T]        (decoder-only)
For "lm", targets are inputs shifted by one and the weights pick out the answer.
"""

from collections.abc import Iterator

import numpy as np

from tfmr_jax.tasks.batching import padded_batches
from tfmr_jax.tasks.heldout import HeldOut, step_rng


class SequenceTask:
  """Base of the toy tasks. Subclasses set `name`, `format`, and define `examples`.

  Attributes every task has: `vocab_size` (V), `max_len` (longest sequence a model
  sees), `eval_split` ("test"), `metric_names`; "lm" tasks also `prompt_len` and
  `answer_len` (the greedy-decoding split of each sequence).
  """

  name = "sequence"
  format = "tagging"
  eval_split = "test"
  metric_names = ("loss", "token_accuracy", "exact_match")

  def __init__(self, *, num_symbols: int, item_len: int, test_size: int):
    self.num_symbols, self.item_len = num_symbols, item_len
    self.heldout = HeldOut(num_symbols=num_symbols, item_len=item_len, test_size=test_size)
    self._eval_examples = None

  def examples(self, items_BT: np.ndarray) -> dict:
    """Examples (see the module docstring) of the items [B, T = item_len]."""
    raise NotImplementedError

  def train_batch(self, seed: int, step: int, batch_size: int) -> dict:
    """Training examples of step `step`: a pure function of (seed, step, batch_size)."""
    return self.examples(self.heldout.train_items(step_rng(seed, step), batch_size))

  def eval_examples(self) -> dict:
    """All held-out examples, in a fixed order."""
    if self._eval_examples is None:
      self._eval_examples = self.examples(self.heldout.test_items)
    return self._eval_examples

  def eval_batches(self, batch_size: int) -> Iterator[dict]:
    """The held-out examples in equal batches, the last padded with zero-weight rows."""
    return padded_batches(self.eval_examples(), batch_size)

  def parse_symbols(self, text: str) -> np.ndarray:
    """'3 1 4' or '314' -> int32 [item_len] symbols, each checked to be in range."""
    parts = text.split() if any(c.isspace() for c in text.strip()) else list(text.strip())
    try:
      symbols = [int(p) for p in parts]
    except ValueError:
      raise ValueError(f"input {text!r}: expected symbols 0..{self.num_symbols - 1}") from None
    if len(symbols) != self.item_len or not all(0 <= s < self.num_symbols for s in symbols):
      raise ValueError(
        f"input {text!r}: expected {self.item_len} symbols in 0..{self.num_symbols - 1}, "
        "separated by spaces"
      )
    return np.asarray(symbols, np.int32)
