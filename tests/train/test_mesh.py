"""The mesh's layout rules, and parameters sharded by their logical axis names."""

import jax
import numpy as np
import pytest
from flax import nnx
from jax.sharding import PartitionSpec as P

from tfmr_jax import config as C
from tfmr_jax.models import GPT2, TransformerConfig
from tfmr_jax.nn import state as model_state
from tfmr_jax.train.mesh import check_model_fits, make_mesh, mesh_shape
from tfmr_jax.train.sharding import state_shardings


def test_one_axis_of_minus_one_takes_the_devices_the_others_leave():
  assert mesh_shape({"data": -1, "fsdp": 2, "model": 2}, 8) == {"data": 2, "fsdp": 2, "model": 2}
  assert mesh_shape({"data": 1, "fsdp": -1, "model": 1}, 8) == {"data": 1, "fsdp": 8, "model": 1}


@pytest.mark.parametrize(
  "mesh,fragment",
  [
    (
      {"data": 2, "fsdp": 2, "model": 1},
      "config.mesh = data 2 x fsdp 2 x model 1: the product of the mesh axes, 4, must equal "
      "the number of devices, 8",
    ),
    (
      {"data": -1, "fsdp": 3, "model": 1},
      "config.mesh.data = -1: the other axes (data -1 x fsdp 3 x model 1) take 3 devices, "
      "which does not divide the 8 devices",
    ),
  ],
)
def test_a_mesh_that_does_not_cover_the_devices_is_refused(mesh, fragment):
  with pytest.raises(C.ConfigError) as error:
    mesh_shape(mesh, 8)
  assert fragment in str(error.value)


@pytest.mark.parametrize(
  "fields,fragment",
  [
    ({"num_heads": 3, "d_model": 24}, "config.model.num_heads = 3: must be divisible by "),
    ({"num_heads": 4, "num_kv_heads": 1}, "config.model.num_kv_heads = 1: must be divisible by "),
    ({"d_ff": 31}, "config.model.d_ff = 31: must be divisible by config.mesh.model = 2"),
  ],
)
def test_tensor_parallelism_needs_heads_and_widths_that_split(fields, fragment):
  base = {"vocab_size": 11, "max_len": 8, "num_layers": 1, "d_model": 16, "num_heads": 2}
  model = TransformerConfig.gpt(**{**base, **fields})
  with pytest.raises(C.ConfigError, match=fragment):
    check_model_fits(model, 2)
  check_model_fits(model, 1)  # without tensor parallelism anything goes


def test_parameters_shard_by_their_logical_names_and_indivisible_dims_stay_whole():
  model = GPT2(
    TransformerConfig.gpt(vocab_size=11, max_len=8, num_layers=1, d_model=16, num_heads=2),
    rngs=nnx.Rngs(0),
  )
  params = model_state.split(model).params
  mesh = make_mesh({"data": 1, "fsdp": 1, "model": 1})  # one device: specs are still named
  specs = jax.tree.map(lambda s: s.spec, state_shardings(params, mesh))
  layer = specs["layers"][0]
  assert layer["attention"]["query"]["kernel"].get_value() == P("fsdp", "model")
  assert layer["attention"]["out"]["kernel"].get_value() == P("model", "fsdp")
  assert layer["feed_forward"]["out"]["kernel"].get_value() == P("model", "fsdp")
  assert specs["token_embedding"]["embed"]["embedding"].get_value() == P(None, "fsdp")
  assert np.all(  # norms are replicated
    [s == P(None) for s in jax.tree.leaves(specs["final_norm"])]
  )


def test_the_rules_table_maps_every_logical_name_once():
  from tfmr_jax.nn import partitioning
  from tfmr_jax.train.mesh import LOGICAL_AXIS_RULES

  names = [name for name, _ in LOGICAL_AXIS_RULES]
  assert sorted(names) == sorted(partitioning.PARAM_AXES + partitioning.ACTIVATION_AXES)
