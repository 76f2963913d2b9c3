"""Reverse a sequence: per-position prediction with an encoder (UvA DL tutorial 6).

  inputs  3 1 4 1 5      targets 5 1 4 1 3      (every position weighted)

Each output position must find its mirror input position, so the task needs
attention with positions and nothing else.
"""

import numpy as np

from tfmr_jax.tasks.sequence_task import SequenceTask


class Reverse(SequenceTask):
  """Sequences of `length` symbols from range(num_symbols); the target is the reversal.

  Format "tagging": inputs [B, length], targets [B, length], weights [B, length].
  """

  name = "reverse"
  format = "tagging"

  def __init__(self, *, num_symbols: int, length: int, test_size: int):
    super().__init__(num_symbols=num_symbols, item_len=length, test_size=test_size)
    self.vocab_size = num_symbols
    self.max_len = length

  def examples(self, items_BT: np.ndarray) -> dict:
    items_BT = np.asarray(items_BT, np.int32)
    return {
      "inputs": items_BT,
      "targets": np.ascontiguousarray(items_BT[:, ::-1]),
      "weights": np.ones(items_BT.shape, np.float32),
    }

  def encode_input(self, text: str) -> np.ndarray:
    """'3 1 4 1 5 ...' -> the encoder's input tokens [length]."""
    return self.parse_symbols(text)

  def decode_output(self, tokens_T: np.ndarray) -> str:
    """The encoder's per-position predictions [length] -> '5 1 4 1 3 ...'."""
    return " ".join(str(int(t)) for t in tokens_T)
