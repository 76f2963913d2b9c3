"""Next-token prediction over one array of token ids: a split by position, and windows.

Dimension key: B batch (windows), T block_size.

The first (1 - val_fraction) of the ids is for training, the rest held out: disjoint
by position (nanoGPT's 90/10 split). A training batch is `batch_size` random windows
of block_size + 1 ids, drawn from a generator seeded by (seed, step); the evaluation
set is the whole held-out part cut into consecutive windows.
"""

from collections.abc import Iterator

import numpy as np

from tfmr_jax.tasks.batching import padded_batches
from tfmr_jax.tasks.corpus import CorpusError
from tfmr_jax.tasks.heldout import step_rng


class WindowedLM:
  """Format "lm": inputs [B, T], targets [B, T] (inputs shifted by one), weights [B, T]
  all ones. Metrics: loss, perplexity, token accuracy. Subclasses call `_split` once."""

  format = "lm"
  eval_split = "val"
  metric_names = ("loss", "perplexity", "token_accuracy")

  def _split(
    self, ids_T: np.ndarray, *, block_size: int, val_fraction: float, source: str, unit: str
  ) -> None:
    """Set train_ids, val_ids, block_size and max_len; CorpusError naming `source` when a
    part is shorter than block_size + 1 `unit`s (characters, tokens)."""
    split = int(len(ids_T) * (1.0 - val_fraction))
    self.train_ids, self.val_ids = ids_T[:split], ids_T[split:]
    self.block_size = self.max_len = block_size
    for name, part in (("training", self.train_ids), ("held-out", self.val_ids)):
      if len(part) < block_size + 1:
        what = "text" if unit == "characters" else "part"
        raise CorpusError(
          f"corpus {source!r} is too short: its {name} {what} (val_fraction={val_fraction:g} of "
          f"{len(ids_T)} {unit}) has {len(part)} {unit}, fewer than block_size + 1 = "
          f"{block_size + 1}"
        )

  def train_batch(self, seed: int, step: int, batch_size: int) -> dict:
    """`batch_size` random training windows: a pure function of (seed, step, batch_size)."""
    starts = step_rng(seed, step).integers(0, len(self.train_ids) - self.block_size, batch_size)
    return self._windows(self.train_ids, starts)

  def eval_examples(self) -> dict:
    """The held-out part as consecutive windows, each predicting block_size ids."""
    starts = np.arange(0, len(self.val_ids) - self.block_size, self.block_size)
    return self._windows(self.val_ids, starts)

  def eval_batches(self, batch_size: int) -> Iterator[dict]:
    return padded_batches(self.eval_examples(), batch_size)

  def _windows(self, ids_T: np.ndarray, starts_B: np.ndarray) -> dict:
    index_BT = starts_B[:, None] + np.arange(self.block_size + 1)[None, :]
    window_BT = np.asarray(ids_T[index_BT], np.int32)
    return {
      "inputs": window_BT[:, :-1],
      "targets": window_BT[:, 1:],
      "weights": np.ones((len(starts_B), self.block_size), np.float32),
    }
