"""Every model family: one return type, maps equal to tj.attention_weights of its layers,
nnx.tabulate and nnx.display."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

import tfmr_jax as tj
from tfmr_jax.models import (
  GPT2,
  EncoderDecoderTransformer,
  TransformerConfig,
  TransformerEncoder,
  count_params,
)
from tfmr_jax.nn import capture_attention

V, P, B, T, S = 13, 16, 2, 7, 5
SMALL = dict(vocab_size=V, max_len=P, num_layers=2, d_model=12, num_heads=3, d_ff=20)


def make(name):
  """(model in eval mode, its inputs)."""
  tokens = jax.random.randint(jax.random.key(0), (B, T), 0, V)
  if name == "gpt":
    model, inputs = GPT2(TransformerConfig.gpt(**SMALL), rngs=nnx.Rngs(0)), (tokens,)
  elif name == "encoder":
    config = TransformerConfig(**SMALL, num_outputs=V)
    valid = jnp.arange(T)[None, :] < jnp.array([[T], [4]])
    model, inputs = TransformerEncoder(config, rngs=nnx.Rngs(0)), (tokens, valid)
  else:
    config = TransformerConfig(**SMALL, norm="pre")
    src = jax.random.randint(jax.random.key(1), (B, S), 0, V)
    src_valid = jnp.arange(S)[None, :] < jnp.array([[S], [3]])
    model, inputs = EncoderDecoderTransformer(config, rngs=nnx.Rngs(0)), (src, tokens, src_valid)
  model.eval()
  return model, inputs


@pytest.fixture(scope="module", params=["gpt", "encoder", "encoder_decoder"])
def family(request):
  return (request.param, *make(request.param))


def test_every_call_returns_one_array(family):
  name, model, inputs = family
  out = model(*inputs)
  assert isinstance(out, jax.Array) and out.shape == (B, T, V)
  assert isinstance(jax.jit(lambda *a: model(*a))(*inputs), jax.Array)
  if name == "encoder":
    return
  if name == "gpt":
    cache, tokens = model.init_cache(B, T), inputs[0]
  else:
    memory = model.encode(inputs[0], inputs[2])
    assert isinstance(memory, jax.Array) and memory.shape == (B, S, 12)
    assert isinstance(model.decode(inputs[1], memory, src_valid_BS=inputs[2]), jax.Array)
    cache, tokens = model.init_cache(memory, inputs[2], max_len=T), inputs[1]
  logits, cache = model.extend(tokens[:, :3], cache)  # decoding: its own fixed return
  np.testing.assert_allclose(logits, out[:, :3], atol=1e-5)


def test_maps_equal_attention_weights_of_each_layer(family, maybe_jit):
  """Recompute each self-attention map from the layer's own projections of its own input."""
  name, model, inputs = family
  out, maps = maybe_jit(lambda *a: capture_attention(model, *a))(*inputs)
  np.testing.assert_allclose(out, model(*inputs), atol=1e-5)
  encoder = model.encoder if name == "encoder_decoder" else model
  prefix = "encoder.layers" if name == "encoder_decoder" else "layers"
  tokens = inputs[0]
  valid = None if name == "gpt" else inputs[1] if name == "encoder" else inputs[2]
  mask = None if valid is None else tj.padding_mask(valid)
  x = (
    encoder.token_embedding(tokens) + encoder.position_embedding(jnp.arange(tokens.shape[1]))[None]
  )
  for i, layer in enumerate(encoder.layers):
    h = layer.attention_residual.sublayer_input(x)
    q = layer.attention.query(h).reshape(*h.shape[:2], 3, 4)
    k = layer.attention.key(h).reshape(*h.shape[:2], 3, 4)
    want = tj.attention_weights(q, k, mask=mask, is_causal=name == "gpt")
    np.testing.assert_allclose(maps[f"{prefix}.{i}.attention"], want, atol=1e-5)
    x = layer(x, mask=mask, is_causal=name == "gpt")
  if name == "encoder_decoder":
    assert len(maps) == 2 + 2 * 2
    assert all(maps[f"decoder_layers.{i}.cross_attention"].shape == (B, 3, T, S) for i in (0, 1))
    cross = np.asarray(maps["decoder_layers.1.cross_attention"])
    np.testing.assert_array_equal(cross[1, :, :, 3:], 0.0)  # padded source keys
  else:
    assert len(maps) == 2


def test_tabulate_and_display(family, capsys):
  _, model, inputs = family
  table = nnx.tabulate(model, *inputs, depth=2, console_kwargs={"width": 240})
  assert type(model).__name__ + " Summary" in table
  assert f"Total Parameters: {count_params(model):,}" in table
  assert "Param" in table and "layers/1" in table
  nnx.display(model)
  assert type(model).__name__ in capsys.readouterr().out
