"""Placing a run's state and batches on the mesh (`tfmr_jax.train.mesh`).

The TrainState's parameters and optimizer moments are sharded by the logical axis names
their modules gave them, through `LOGICAL_AXIS_RULES`; the step count and the dropout
RNG streams are replicated. A batch is split by rows over the data x fsdp axes. Both go
through `jax.make_array_from_callback`, so each process transfers only the pieces its
own devices hold, and a single process on a single device is the same code path.

The jitted step sees global arrays; XLA inserts the all-gathers of FSDP, the
reductions of tensor parallelism and the gradient all-reduce.
"""

import contextlib
import math

import jax
import numpy as np
from flax import nnx
from jax.experimental import multihost_utils
from jax.sharding import Mesh, NamedSharding, PartitionSpec

from tfmr_jax.train.mesh import BATCH_AXES, LOGICAL_AXIS_RULES


@contextlib.contextmanager
def sharding_context(mesh: Mesh):
  """Within it, traced code sees `mesh` and the logical axis rules, so the modules'
  activation constraints (`tfmr_jax.nn.partitioning.constrain`) take effect."""
  with jax.set_mesh(mesh), nnx.logical_axis_rules(LOGICAL_AXIS_RULES):
    yield


def replicated(mesh: Mesh) -> NamedSharding:
  return NamedSharding(mesh, PartitionSpec())


def state_shardings(state, mesh: Mesh):
  """The NamedSharding of every array leaf of `state` (a TrainState, or any tree of
  nnx Variables and arrays), from its logical axis names.

  A dimension that does not divide evenly over its mesh axes (a vocabulary of 50257 over
  2 devices, say) is replicated instead.
  """
  with nnx.logical_axis_rules(LOGICAL_AXIS_RULES):
    specs = nnx.get_partition_spec(state)

  def sharding(leaf, spec):
    spec = spec if isinstance(spec, PartitionSpec) else PartitionSpec()
    dims = []
    shape = leaf.shape if hasattr(leaf, "shape") else np.shape(leaf)  # arrays or abstract
    for size, axes in zip(shape, tuple(spec) + (None,) * len(shape), strict=False):
      names = (axes,) if isinstance(axes, str) else tuple(axes or ())
      ways = math.prod(mesh.shape[name] for name in names)
      dims.append(axes if names and size % ways == 0 else None)
    return NamedSharding(mesh, PartitionSpec(*dims))

  return jax.tree.map(sharding, state, specs)


def step_out_shardings(state, mesh: Mesh) -> tuple:
  """The training step's out_shardings: the state keeps its layout, metrics replicated."""
  return state_shardings(state, mesh), replicated(mesh)


def place(tree, shardings):
  """`tree` (host or single-device arrays, the same on every process) laid out as
  `shardings`: each process builds only the shards of its own devices."""

  def put(x, sharding):
    if is_key(x):
      data = put(jax.random.key_data(x), sharding)
      return jax.random.wrap_key_data(data, impl=jax.random.key_impl(x))
    host = np.asarray(x)
    return jax.make_array_from_callback(host.shape, sharding, lambda index: host[index])

  return jax.tree.map(put, tree, shardings)


def place_state(state, mesh: Mesh):
  """`state` sharded on `mesh` by its logical axis names (see `state_shardings`)."""
  return place(state, state_shardings(state, mesh))


def batch_sharding(mesh: Mesh) -> NamedSharding:
  """Rows over the data x fsdp axes, replicated over model."""
  return NamedSharding(mesh, PartitionSpec(BATCH_AXES))


def put_batch(batch: dict, mesh: Mesh) -> dict:
  """A host batch (numpy arrays with a leading batch axis, the same global batch on every
  process) as global arrays split by rows over data x fsdp; each process transfers
  only its own devices' rows."""
  sharding = batch_sharding(mesh)
  return {name: place(np.asarray(x), sharding) for name, x in batch.items()}


def to_host(x) -> np.ndarray:
  """The whole of array `x` on this host, gathered from the other processes if it spans
  them (then every process must call this for the same arrays, in the same order)."""
  if isinstance(x, jax.Array) and not x.is_fully_addressable:
    return np.asarray(multihost_utils.process_allgather(x, tiled=True))
  return np.asarray(jax.device_get(x))


def is_key(x) -> bool:
  """Whether `x` is an array of typed JAX PRNG keys."""
  return hasattr(x, "dtype") and jax.dtypes.issubdtype(x.dtype, jax.dtypes.prng_key)


def bytes_per_device(tree) -> dict:
  """{device: bytes of the pieces of `tree`'s arrays that it holds} over this process's
  devices: what sharding saves, measured on the arrays themselves."""
  totals = {}
  for x in jax.tree.leaves(tree):
    x = jax.random.key_data(x) if is_key(x) else x
    for shard in x.addressable_shards:
      totals[shard.device] = totals.get(shard.device, 0) + shard.data.nbytes
  return totals
