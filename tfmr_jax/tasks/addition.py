"""Add two n-digit numbers with a decoder-only model (minGPT's play_math).

  a = 47, b = 85, c = 132 (n + 1 digits)      sequence  4 7 8 5 | 2 3 1
The sum is written least significant digit first, the order in which carries are
computed. The model reads the 2n digits of a and b and writes the n + 1 of c.
"""

import re

import numpy as np

from tfmr_jax.tasks.sequence_task import SequenceTask

# The sum is computed in int64: 10**(n - 1) place values and 10**n digit divisors must
# fit, and 10**19 > 2**63 - 1. From n = 19 on every label would be wrong.
MAX_DIGITS = 18


class Addition(SequenceTask):
  """Sums of two `num_digits`-digit numbers (leading zeros allowed).

  Format "lm": inputs [B, 3n], targets [B, 3n], weights (1 on the last n + 1 target
  positions). Greedy decoding: prompt = 2n digits, answer = n + 1 reversed digits.
  """

  name = "addition"
  format = "lm"

  def __init__(self, *, num_digits: int, test_size: int):
    if not 1 <= num_digits <= MAX_DIGITS:
      raise ValueError(
        f"num_digits must be in [1, {MAX_DIGITS}] (the sum is computed in int64), got {num_digits}"
      )
    super().__init__(num_symbols=10, item_len=2 * num_digits, test_size=test_size)
    self.num_digits = n = num_digits
    self.vocab_size = 10
    self.prompt_len, self.answer_len = 2 * n, n + 1
    self.max_len = 3 * n + 1

  def examples(self, items_BT: np.ndarray) -> dict:
    items_BT = np.asarray(items_BT, np.int32)
    n = self.num_digits
    place_values = 10 ** np.arange(n - 1, -1, -1, dtype=np.int64)
    a_B = items_BT[:, :n] @ place_values
    b_B = items_BT[:, n:] @ place_values
    c_B = a_B + b_B
    sum_digits = (c_B[:, None] // 10 ** np.arange(n + 1, dtype=np.int64)) % 10  # lsd first
    sequence_BT = np.concatenate([items_BT, sum_digits.astype(np.int32)], axis=1)
    weights_BT = np.zeros((len(items_BT), 3 * n), np.float32)
    weights_BT[:, 2 * n - 1 :] = 1.0
    return {"inputs": sequence_BT[:, :-1], "targets": sequence_BT[:, 1:], "weights": weights_BT}

  def encode_input(self, text: str) -> np.ndarray:
    """'47+85' -> the prompt digits [2n] (numbers of at most n digits, zero-padded)."""
    n = self.num_digits
    number = rf"(\d{{1,{n}}})"
    match = re.fullmatch(rf"\s*{number}\s*\+\s*{number}\s*", text)
    if match is None:
      raise ValueError(f"input {text!r}: expected 'a+b' with a and b of at most {n} digits")
    digits = match.group(1).zfill(n) + match.group(2).zfill(n)
    return np.asarray([int(d) for d in digits], np.int32)

  def decode_output(self, tokens_T: np.ndarray) -> str:
    """The answer digits [n + 1], least significant first -> the sum as a decimal string."""
    return str(int("".join(str(int(t)) for t in tokens_T[::-1])))
