"""Logical axis names: every parameter of every family names each of its dims; `constrain`
is the identity without rules and a mesh, and changes no value with them."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx
from jax.sharding import AxisType

from tfmr_jax.models import GPT2, EncoderDecoderTransformer, TransformerConfig, TransformerEncoder
from tfmr_jax.nn import SingleHeadAttention
from tfmr_jax.nn import partitioning as axes

V, P, B, T, S = 13, 16, 2, 7, 5
SMALL = dict(vocab_size=V, max_len=P, num_layers=2, d_model=12, num_heads=6, d_ff=20)
LLAMA = dict(num_kv_heads=2, qk_norm=True)  # H = 2, K * H = 4

# (family, config, expected names at some paths)
FAMILIES = {
  "encoder": (
    TransformerEncoder,
    TransformerConfig(**SMALL, num_outputs=V),
    {
      "token_embedding/embed/embedding": ("vocab", "embed"),
      "layers/0/attention/query/kernel": ("embed", "heads"),
      "layers/0/attention/query/bias": ("heads",),
      "layers/0/attention/out/bias": ("embed",),
      "layers/1/feed_forward/out/kernel": ("mlp", "embed"),
      "layers/1/attention_residual/layer_norm/bias": ("norm",),
      "head/kernel": ("embed", "vocab"),
      "head/bias": ("vocab",),
    },
  ),
  "encoder_decoder": (
    EncoderDecoderTransformer,
    TransformerConfig(**SMALL, norm="pre", tie_output=False, share_embeddings=False),
    {
      "encoder/token_embedding/embed/embedding": ("vocab", "embed"),
      "tgt_embedding/embed/embedding": ("vocab", "embed"),
      "decoder_layers/0/cross_attention/key/kernel": ("embed", "kv_heads"),
      "decoder_layers/0/cross_attention/out/kernel": ("heads", "embed"),
      "decoder_layers/1/feed_forward/hidden/bias": ("mlp",),
      "decoder_norm/scale": ("norm",),
      "output/kernel": ("embed", "vocab"),
    },
  ),
  "gpt2": (
    GPT2,
    TransformerConfig.gpt(**SMALL),
    {
      "position_embedding/table/embedding": ("positions", "embed"),
      "layers/0/attention/value/kernel": ("embed", "kv_heads"),
      "layers/0/attention/value/bias": ("kv_heads",),
      "layers/0/feed_forward/hidden/kernel": ("embed", "mlp"),
      "layers/0/feed_forward/out/bias": ("embed",),
    },
  ),
  "llama": (
    GPT2,
    TransformerConfig.llama(**SMALL, **LLAMA),
    {
      "layers/0/attention/key/kernel": ("embed", "kv_heads"),
      "layers/0/attention/query_norm/scale": ("norm",),
      "layers/1/feed_forward/gate/kernel": ("embed", "mlp"),
      "final_norm/scale": ("norm",),
      "head/kernel": ("embed", "vocab"),
    },
  ),
}


def param_names(module) -> dict:
  """{path: out_sharding} of every nnx.Param of `module`, asserting one name per dim."""
  names = {}
  for path, variable in nnx.iter_graph(module):
    if isinstance(variable, nnx.Param):
      sharding = variable.get_metadata().get("out_sharding")
      assert sharding is not None and len(sharding) == variable.ndim, (path, sharding)
      names["/".join(map(str, path))] = tuple(sharding)
  return names


@pytest.mark.parametrize("family", FAMILIES)
def test_every_param_names_each_dim(family):
  cls, config, expected = FAMILIES[family]
  model = nnx.eval_shape(lambda: cls(config, rngs=nnx.Rngs(0)))
  names = param_names(model)
  assert names and {n for axes_ in names.values() for n in axes_} <= set(axes.PARAM_AXES)
  assert {path: names[path] for path in expected} == expected
  # The names map through rules to mesh axes; the model file names none.
  state = nnx.state(model, nnx.Param)
  with nnx.logical_axis_rules(((axes.EMBED, "fsdp"), (axes.MLP, "model"))):
    spec = nnx.get_partition_spec(state)
  ffn_out = spec["layers" if "decoder" not in family else "decoder_layers"][0]["feed_forward"]
  assert tuple(ffn_out["out"]["kernel"].get_value()) == ("model", "fsdp")


def test_single_head_attention_names():
  module = nnx.eval_shape(
    lambda: SingleHeadAttention(12, 5, d_v=7, use_bias=True, rngs=nnx.Rngs(0))
  )
  names = param_names(module)
  assert names["query/kernel"] == names["value/kernel"] == ("embed", "head_dim")
  assert names["key/bias"] == ("head_dim",)


def test_param_axes_is_lazy_metadata():
  """Without a mesh the parameter is built as before: same values, names attached."""
  plain = nnx.Linear(4, 6, rngs=nnx.Rngs(0))
  named = nnx.Linear(4, 6, rngs=nnx.Rngs(0), kernel_metadata=axes.param_axes("embed", "mlp"))
  assert np.array_equal(plain.kernel[...], named.kernel[...])
  assert named.kernel.get_metadata()["out_sharding"] == ("embed", "mlp")


RULES = (
  (axes.ACT_BATCH, ("data", "fsdp")),
  (axes.ACT_HEADS, "model"),
  (axes.ACT_MLP, "model"),
)


def mesh(axis_type):
  return jax.make_mesh((1, 1, 1), ("data", "fsdp", "model"), axis_types=(axis_type,) * 3)


def test_constrain_is_identity_without_rules_or_mesh():
  x = jnp.arange(6.0).reshape(2, 3)
  assert axes.constrain(x, axes.ACT_BATCH, axes.ACT_MLP) is x
  with nnx.logical_axis_rules(RULES):
    assert axes.constrain(x, axes.ACT_BATCH, axes.ACT_MLP) is x
  with jax.set_mesh(mesh(AxisType.Explicit)):
    assert axes.constrain(x, axes.ACT_BATCH, axes.ACT_MLP) is x
  with pytest.raises(ValueError, match="rank 2"):
    axes.constrain(x, axes.ACT_BATCH)


@pytest.mark.parametrize("axis_type", [AxisType.Explicit, AxisType.Auto])
def test_constrain_maps_names_through_rules(axis_type):
  x = jnp.arange(24.0).reshape(2, 3, 4)
  f = jax.jit(lambda x: axes.constrain(x, axes.ACT_BATCH, "unnamed", axes.ACT_MLP) * 2)
  with jax.set_mesh(mesh(axis_type)), nnx.logical_axis_rules(RULES):
    y = f(x)
  np.testing.assert_array_equal(y, x * 2)
  if axis_type == AxisType.Explicit:
    assert jax.typeof(y).sharding.spec == jax.sharding.PartitionSpec(
      ("data", "fsdp"), None, "model"
    )


@pytest.mark.parametrize("family", ["encoder_decoder", "llama"])
@pytest.mark.parametrize("axis_type", [AxisType.Explicit, AxisType.Auto])
def test_model_under_rules_and_mesh_gives_the_same_logits(family, axis_type):
  cls, config, _ = FAMILIES[family]
  model = cls(config, rngs=nnx.Rngs(0))
  model.eval()
  graph, state = nnx.split(model)
  tokens = jax.random.randint(jax.random.key(0), (B, T), 0, V)
  inputs = (tokens[:, :S], tokens) if family == "encoder_decoder" else (tokens,)
  forward = jax.jit(lambda state, *a: nnx.merge(graph, state)(*a))
  expected = forward(state, *inputs)
  with jax.set_mesh(mesh(axis_type)), nnx.logical_axis_rules(RULES):
    logits = forward(state, *inputs)
  np.testing.assert_array_equal(logits, expected)
  if axis_type == AxisType.Explicit:  # the logits' constraint took: batch over data and fsdp
    assert jax.typeof(logits).sharding.spec[0] == ("data", "fsdp")
