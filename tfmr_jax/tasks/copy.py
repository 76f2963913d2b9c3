"""Copy a sequence with an encoder-decoder (The Annotated Transformer's first example).

  src     4 2 7            (symbols shifted up by one: token 0 is BOS)
  tgt_in  BOS 4 2          targets 4 2 7         (teacher forcing)

At test time the decoder starts from BOS and decodes greedily.
"""

import numpy as np

from tfmr_jax.tasks.sequence_task import SequenceTask

BOS = 0


class Copy(SequenceTask):
  """Sequences of `length` symbols; vocabulary = num_symbols + 1 (token 0 is BOS).

  Format "seq2seq": src [B, length], tgt_in [B, length], targets [B, length], weights.
  """

  name = "copy"
  format = "seq2seq"
  bos_id = BOS

  def __init__(self, *, num_symbols: int, length: int, test_size: int):
    super().__init__(num_symbols=num_symbols, item_len=length, test_size=test_size)
    self.vocab_size = num_symbols + 1
    self.max_len = length
    self.answer_len = length

  def examples(self, items_BT: np.ndarray) -> dict:
    tokens_BT = np.asarray(items_BT, np.int32) + 1
    bos_B1 = np.full((len(tokens_BT), 1), BOS, np.int32)
    return {
      "src": tokens_BT,
      "tgt_in": np.concatenate([bos_B1, tokens_BT[:, :-1]], axis=1),
      "targets": tokens_BT,
      "weights": np.ones(tokens_BT.shape, np.float32),
    }

  def encode_input(self, text: str) -> np.ndarray:
    """'3 1 4 ...' -> source tokens [length] (symbols + 1)."""
    return self.parse_symbols(text) + 1

  def decode_output(self, tokens_T: np.ndarray) -> str:
    """Decoded target tokens [length] -> '3 1 4 ...' (BOS shown as '<s>')."""
    return " ".join("<s>" if t == BOS else str(int(t) - 1) for t in tokens_T)
