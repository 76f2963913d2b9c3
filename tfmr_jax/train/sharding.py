"""Data parallelism over the local devices: a one-axis mesh, batches split on it.

Parameters and optimizer state are replicated; each batch is split along its first
axis over the "data" axis. The jitted step sees global arrays, and XLA inserts the
gradient all-reduce. With one device this is plain single-device training.
"""

import jax
import numpy as np
from jax.sharding import Mesh, NamedSharding, PartitionSpec

DATA_AXIS = "data"


def data_mesh(devices=None) -> Mesh:
  """A mesh with one axis, "data", over `devices` (default: all local devices)."""
  devices = jax.local_devices() if devices is None else list(devices)
  return Mesh(np.asarray(devices), (DATA_AXIS,))


def replicated(mesh: Mesh) -> NamedSharding:
  return NamedSharding(mesh, PartitionSpec())


def put_replicated(tree, mesh: Mesh):
  """`tree` copied onto every device of `mesh`."""
  return jax.device_put(tree, replicated(mesh))


def put_batch(batch: dict, mesh: Mesh) -> dict:
  """A host batch (numpy arrays, leading batch axis) split over the "data" axis."""
  return jax.device_put(batch, NamedSharding(mesh, PartitionSpec(DATA_AXIS)))
