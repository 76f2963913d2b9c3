"""Held-out test sets chosen by a deterministic hash of each sequence.

A sequence belongs to the test set when its 64-bit BLAKE2b hash (of the tokens as
little-endian int32 bytes) falls below a threshold. The hash is the same in every
process and on every platform (unlike Python's `hash()`, salted per process), so
the split is a property of the sequence alone: training draws never include a
test sequence, whatever the seed or step.

Two regimes, by the size of the sequence space:
  small (at most ENUMERATE_LIMIT sequences): every sequence is hashed and the
    `test_size` lowest hashes form the test set, exactly;
  large: the lowest 1/16 of the hash range is the test region; the test set is the
    first `test_size` distinct test-region sequences of a fixed random stream, and
    training rejects test-region draws.
"""

import hashlib

import numpy as np

ENUMERATE_LIMIT = 200_000
TEST_REGION_FRACTION = 1 / 16
_TEST_REGION_THRESHOLD = np.uint64(int(2**64 * TEST_REGION_FRACTION))
# Entropy of the random stream the large-space test sets are drawn from: fixed,
# so every seed of every run evaluates on the same sequences.
TEST_STREAM_ENTROPY = 0x7E57_5E7


def sequence_hash_B(items_BT: np.ndarray) -> np.ndarray:
  """uint64 [B]: BLAKE2b-64 of each row's tokens as little-endian int32 bytes."""
  rows_BT = np.ascontiguousarray(np.asarray(items_BT), dtype="<i4")
  if rows_BT.ndim != 2:
    raise ValueError(f"items_BT must have rank 2 [B, T], got shape {rows_BT.shape}")
  digests = [hashlib.blake2b(row.tobytes(), digest_size=8).digest() for row in rows_BT]
  return np.frombuffer(b"".join(digests), dtype="<u8").astype(np.uint64)


def max_test_size(space_size: int) -> int:
  """The largest test set a space of `space_size` sequences allows.

  Small spaces keep at least half for training; large ones keep the test set to at
  most a quarter of the test region, so drawing it distinct stays quick.
  """
  if space_size <= ENUMERATE_LIMIT:
    return space_size // 2
  return int(space_size * TEST_REGION_FRACTION) // 4


class HeldOut:
  """The test/train split of the sequences of `item_len` symbols from range(num_symbols).

  Args:
    num_symbols: alphabet size; items are int arrays with values in [0, num_symbols).
    item_len: tokens per item.
    test_size: size of the test set; at most `max_test_size(num_symbols ** item_len)`.
  """

  def __init__(self, *, num_symbols: int, item_len: int, test_size: int):
    self.num_symbols, self.item_len, self.test_size = num_symbols, item_len, test_size
    self.space_size = num_symbols**item_len
    limit = max_test_size(self.space_size)
    if not 1 <= test_size <= limit:
      raise ValueError(
        f"test_size must be in [1, {limit}] for {self.space_size} possible sequences, "
        f"got {test_size}"
      )
    self.enumerated = self.space_size <= ENUMERATE_LIMIT
    if self.enumerated:
      all_items = self._all_items()
      hashes = sequence_hash_B(all_items)
      order = np.argsort(hashes, kind="stable")
      self.test_items = all_items[np.sort(order[:test_size])]
      self.train_pool = all_items[np.sort(order[test_size:])]
      self._threshold = hashes[order[test_size]]
    else:
      self._threshold = _TEST_REGION_THRESHOLD
      self.test_items = self._draw_test_items()

  def in_test_B(self, items_BT: np.ndarray) -> np.ndarray:
    """bool [B]: True where an item belongs to the test set."""
    return sequence_hash_B(items_BT) < self._threshold

  def train_items(self, rng: np.random.Generator, n: int) -> np.ndarray:
    """int32 [n, item_len]: n uniform draws from the training part of the space."""
    if self.enumerated:
      return self.train_pool[rng.integers(0, len(self.train_pool), size=n)]
    kept, count = [], 0
    while count < n:
      draw_BT = self._uniform(rng, n + n // 8 + 8)
      draw_BT = draw_BT[~self.in_test_B(draw_BT)]
      kept.append(draw_BT)
      count += len(draw_BT)
    return np.concatenate(kept)[:n]

  def _uniform(self, rng: np.random.Generator, n: int) -> np.ndarray:
    return rng.integers(0, self.num_symbols, size=(n, self.item_len), dtype=np.int32)

  def _all_items(self) -> np.ndarray:
    index = np.arange(self.space_size)
    digits = np.unravel_index(index, (self.num_symbols,) * self.item_len)
    return np.stack(digits, axis=-1).astype(np.int32)

  def _draw_test_items(self) -> np.ndarray:
    rng = np.random.default_rng(np.random.SeedSequence(TEST_STREAM_ENTROPY))
    seen, items = set(), []
    while len(items) < self.test_size:
      draw_BT = self._uniform(rng, 4096)
      for row in draw_BT[self.in_test_B(draw_BT)]:
        key = row.tobytes()
        if key not in seen:
          seen.add(key)
          items.append(row)
        if len(items) == self.test_size:
          break
    return np.stack(items)


def step_rng(seed: int, step: int) -> np.random.Generator:
  """The generator of training step `step` of a run seeded `seed`: a pure function of both."""
  return np.random.default_rng(np.random.SeedSequence([seed, step]))
