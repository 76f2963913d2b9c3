"""Cutting a fixed evaluation set into equal batches.

Every batch has the same shape, so an evaluation step compiles once: the last batch
is filled up with copies of the first row whose loss weights are zero (metrics count
a row only where some weight is non-zero).
"""

from collections.abc import Iterator

import numpy as np


def padded_batches(examples: dict, batch_size: int) -> Iterator[dict]:
  """Yield dicts of `batch_size` rows from `examples` (arrays sharing a leading axis).

  `examples["weights"]` ([N, T] float32 loss weights) is zeroed on padding rows.
  """
  n = len(examples["weights"])
  for start in range(0, n, batch_size):
    rows = np.arange(start, start + batch_size)
    real = rows < n
    rows = np.where(real, rows, 0)
    batch = {key: value[rows] for key, value in examples.items()}
    batch["weights"] = batch["weights"] * real[:, None].astype(np.float32)
    yield batch
