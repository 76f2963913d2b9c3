"""Held-out sets: chosen by a stable hash, exactly sized, disjoint from every training draw."""

import hashlib
import os
import struct
import subprocess
import sys

import numpy as np
import pytest

from tfmr_jax.tasks import HeldOut, max_test_size, sequence_hash_B
from tfmr_jax.tasks.heldout import ENUMERATE_LIMIT, step_rng


def _oracle_hash(row) -> int:
  """BLAKE2b-64 of the tokens packed one by one as little-endian int32 (struct, not numpy)."""
  packed = struct.pack(f"<{len(row)}i", *[int(t) for t in row])
  return int.from_bytes(hashlib.blake2b(packed, digest_size=8).digest(), "little")


def test_hash_matches_a_struct_packed_blake2b_oracle():
  rows = np.random.default_rng(0).integers(0, 1000, size=(7, 13))
  assert sequence_hash_B(rows).tolist() == [_oracle_hash(r) for r in rows]


def test_test_set_is_the_same_in_a_process_with_another_hash_seed():
  """Python's hash() is salted per process; the split must not be."""
  code = (
    "from tfmr_jax.tasks import HeldOut; import hashlib; h = HeldOut(num_symbols=5, "
    "item_len=9, test_size=50); print(hashlib.sha256(h.test_items.tobytes()).hexdigest())"
  )
  digests = set()
  for seed in ("1", "2"):
    env = {**os.environ, "PYTHONHASHSEED": seed}
    out = subprocess.run(
      [sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True
    )
    digests.add(out.stdout.strip())
  here = HeldOut(num_symbols=5, item_len=9, test_size=50)
  assert digests == {hashlib.sha256(here.test_items.tobytes()).hexdigest()}


def test_small_space_is_split_exactly_by_lowest_hashes():
  h = HeldOut(num_symbols=3, item_len=6, test_size=200)
  assert h.enumerated and h.space_size == 729
  test = {r.tobytes() for r in h.test_items}
  train = {r.tobytes() for r in h.train_pool}
  assert len(test) == 200 and len(train) == 529 and not test & train
  all_hashes = sorted(_oracle_hash(np.unravel_index(i, (3,) * 6)) for i in range(729))
  assert max(_oracle_hash(r) for r in h.test_items) == all_hashes[199]


@pytest.mark.parametrize("num_symbols,item_len", [(3, 6), (10, 16)])
def test_training_draws_never_include_a_test_item(num_symbols, item_len):
  h = HeldOut(num_symbols=num_symbols, item_len=item_len, test_size=300)
  test = {r.tobytes() for r in h.test_items}
  assert len(test) == 300
  assert h.in_test_B(h.test_items).all()
  for step in range(20):
    batch = h.train_items(step_rng(0, step), 257)
    assert batch.shape == (257, item_len) and batch.dtype == np.int32
    assert not h.in_test_B(batch).any()
    assert not test & {r.tobytes() for r in batch}


def test_large_space_test_items_are_distinct_and_in_the_test_region():
  h = HeldOut(num_symbols=10, item_len=16, test_size=2000)
  assert not h.enumerated
  assert len({r.tobytes() for r in h.test_items}) == 2000
  assert (sequence_hash_B(h.test_items) < np.uint64(2**60)).all()  # the lowest 1/16


def test_training_draws_are_a_pure_function_of_seed_and_step():
  h = HeldOut(num_symbols=10, item_len=16, test_size=100)
  a = h.train_items(step_rng(3, 41), 64)
  np.testing.assert_array_equal(a, h.train_items(step_rng(3, 41), 64))
  assert not np.array_equal(a, h.train_items(step_rng(3, 42), 64))
  assert not np.array_equal(a, h.train_items(step_rng(4, 41), 64))


def test_test_size_limits():
  assert max_test_size(729) == 364
  assert max_test_size(ENUMERATE_LIMIT + 1) == (ENUMERATE_LIMIT + 1) // 64
  with pytest.raises(ValueError, match=r"test_size must be in \[1, 364\] for 729 possible"):
    HeldOut(num_symbols=3, item_len=6, test_size=365)
