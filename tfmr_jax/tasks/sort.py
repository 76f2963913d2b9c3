"""Sort a sequence with a decoder-only model (minGPT's demo).

sequence  2 0 1 1 | 0 1 1 2        the model reads the left half and writes the right
inputs    sequence[:-1]            targets sequence[1:], weighted on the sorted half only
"""

import numpy as np

from tfmr_jax.tasks.sequence_task import SequenceTask


class Sort(SequenceTask):
  """Sequences of `length` symbols from range(num_symbols), followed by their sorted copy.

  Format "lm": inputs [B, 2 length - 1], targets [B, 2 length - 1], weights (1 on the
  last `length` target positions). Greedy decoding: prompt = the first `length`
  tokens, answer = the next `length`.
  """

  name = "sort"
  format = "lm"

  def __init__(self, *, num_symbols: int, length: int, test_size: int):
    super().__init__(num_symbols=num_symbols, item_len=length, test_size=test_size)
    self.vocab_size = num_symbols
    self.prompt_len = self.answer_len = length
    self.max_len = 2 * length

  def examples(self, items_BT: np.ndarray) -> dict:
    items_BT = np.asarray(items_BT, np.int32)
    sequence_BT = np.concatenate([items_BT, np.sort(items_BT, axis=1)], axis=1)
    weights_BT = np.zeros((len(items_BT), sequence_BT.shape[1] - 1), np.float32)
    weights_BT[:, self.prompt_len - 1 :] = 1.0
    return {"inputs": sequence_BT[:, :-1], "targets": sequence_BT[:, 1:], "weights": weights_BT}

  def encode_input(self, text: str) -> np.ndarray:
    """'2 0 1 1 ...' -> the prompt tokens [length]."""
    return self.parse_symbols(text)

  def decode_output(self, tokens_T: np.ndarray) -> str:
    """The answer tokens [length] -> '0 1 1 2 ...'."""
    return " ".join(str(int(t)) for t in tokens_T)
