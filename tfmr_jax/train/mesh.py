"""The device mesh a run trains on, and the one table from logical axis names to its axes.

The mesh has three named axes, sized by the config's `mesh` section:

  data   plain data parallelism: each device on it takes other rows of the batch
  fsdp   data parallelism that also shards parameters and optimizer state (ZeRO-3):
         a device keeps 1/fsdp of them and XLA gathers a layer's weights when used
  model  tensor parallelism (Megatron style): attention heads and the feed-forward
         width split over it, column-parallel in, row-parallel out

Modules name the axes of their parameters and activations by meaning (`embed`, `heads`,
`mlp`, ...: `tfmr_jax.nn.partitioning`); `LOGICAL_AXIS_RULES` below, the only place
that knows the mesh, maps each to a mesh axis or to None (replicated).
"""

import math

import jax
from jax.sharding import AxisType, Mesh

from tfmr_jax.config import ConfigError
from tfmr_jax.models import TransformerConfig
from tfmr_jax.nn import partitioning as P

MESH_AXES = ("data", "fsdp", "model")
BATCH_AXES = ("data", "fsdp")  # the mesh axes the batch is split over
DATA_PARALLEL = {"data": -1, "fsdp": 1, "model": 1}  # every device holds the whole model

# logical axis name -> mesh axis (or axes), None = replicated. Parameters first.
LOGICAL_AXIS_RULES = (
  (P.EMBED, "fsdp"),  # model width D of every kernel and table: FSDP's shard
  (P.HEADS, "model"),  # N * H of the query and output projections
  (P.KV_HEADS, "model"),  # K * H of the key and value projections
  (P.MLP, "model"),  # the feed-forward width F
  (P.VOCAB, None),  # V is rarely divisible (50257): the table is sharded on D instead
  (P.POSITIONS, None),
  (P.NORM, None),  # norm scales and biases: small, replicated
  (P.HEAD_DIM, None),
  (P.ACT_BATCH, BATCH_AXES),  # activations: rows over data x fsdp
  (P.ACT_LENGTH, None),
  (P.ACT_EMBED, None),
  (P.ACT_HEADS, "model"),
  (P.ACT_MLP, "model"),
)


def mesh_shape(mesh_config, num_devices: int) -> dict[str, int]:
  """{"data", "fsdp", "model"} sizes for `num_devices`, the -1 axis (if any) resolved.

  Raises ConfigError naming the field, the value and the rule when the product of the
  sizes is not the device count.
  """
  sizes = {axis: int(mesh_config[axis]) for axis in MESH_AXES}
  fixed = math.prod(size for size in sizes.values() if size != -1)
  rest = [axis for axis, size in sizes.items() if size == -1]
  described = " x ".join(f"{axis} {size}" for axis, size in sizes.items())
  if rest:
    if num_devices % fixed:
      raise ConfigError(
        f"config.mesh.{rest[0]} = -1: the other axes ({described}) take {fixed} devices, "
        f"which does not divide the {num_devices} devices"
      )
    sizes[rest[0]] = num_devices // fixed
  elif fixed != num_devices:
    raise ConfigError(
      f"config.mesh = {described}: the product of the mesh axes, {fixed}, must equal the "
      f"number of devices, {num_devices} (or set one axis to -1)"
    )
  return sizes


def check_model_fits(model: TransformerConfig, model_axis: int) -> None:
  """Tensor parallelism splits whole heads and the feed-forward width: each must divide."""
  if model_axis == 1:
    return
  fields = {
    "num_heads": model.num_heads,
    "num_kv_heads": model.num_kv_heads or model.num_heads,
    "d_ff": model.d_ff,
  }
  for field, value in fields.items():
    if value % model_axis:
      raise ConfigError(
        f"config.model.{field} = {value}: must be divisible by config.mesh.model = "
        f"{model_axis}, the tensor-parallel devices it is split over"
      )


def make_mesh(mesh_config, model: TransformerConfig | None = None, devices=None) -> Mesh:
  """The mesh of `mesh_config` over `devices` (default: every device of every process).

  Checks the layout before anything is compiled: the axes' product is the device count,
  and `model` (if given) splits evenly over the `model` axis.
  """
  devices = jax.devices() if devices is None else list(devices)
  sizes = mesh_shape(mesh_config, len(devices))
  if model is not None:
    check_model_fits(model, sizes["model"])
  return jax.make_mesh(
    tuple(sizes[axis] for axis in MESH_AXES),
    MESH_AXES,
    axis_types=(AxisType.Auto,) * len(MESH_AXES),
    devices=devices,
  )


def batch_devices(mesh: Mesh) -> int:
  """How many ways a batch is split: the data x fsdp axes."""
  return math.prod(mesh.shape[axis] for axis in BATCH_AXES)
