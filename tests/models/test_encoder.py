"""TransformerEncoder: padding is respected, shapes, attention maps, modes, argument errors."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from tfmr_jax.models import TransformerConfig, TransformerEncoder
from tfmr_jax.nn import capture_attention

V, P = 13, 16


def make(norm="post", positions="sinusoidal", dropout=0.0, **kwargs):
  config = TransformerConfig(
    vocab_size=V,
    num_outputs=V,
    num_layers=2,
    d_model=12,
    num_heads=3,
    d_ff=20,
    max_len=P,
    dropout=dropout,
    norm=norm,
    positions=positions,
    **kwargs,
  )
  model = TransformerEncoder(config, rngs=nnx.Rngs(0))
  model.eval()
  return model


@pytest.mark.parametrize("norm", ["post", "pre"])
def test_padded_tokens_do_not_change_real_positions(norm):
  model = make(norm=norm)
  B, T = 2, 11
  lengths = jnp.array([11, 6])
  valid_BT = jnp.arange(T)[None, :] < lengths[:, None]
  tokens = jax.random.randint(jax.random.key(0), (B, T), 0, V)
  perturbed = jnp.where(valid_BT, tokens, (tokens + 5) % V)
  run = jax.jit(lambda t, valid: model(t, valid))
  out, out_perturbed = run(tokens, valid_BT), run(perturbed, valid_BT)
  np.testing.assert_allclose(out[0], out_perturbed[0], atol=1e-6)
  np.testing.assert_allclose(out[1, :6], out_perturbed[1, :6], atol=1e-6)
  assert not np.allclose(out[1, 6:], out_perturbed[1, 6:])  # the perturbation is real
  unmasked = jax.jit(lambda t: model(t))
  assert not np.allclose(unmasked(tokens)[1, :6], unmasked(perturbed)[1, :6], atol=1e-4)


def test_attention_maps_shape_and_padding():
  model = make(norm="pre", positions="learned")
  tokens = jnp.arange(14).reshape(2, 7) % V
  valid = jnp.arange(7)[None, :] < jnp.array([[7], [3]])
  logits, named = jax.jit(lambda t, v: capture_attention(model, t, v))(tokens, valid)
  maps = [named[f"layers.{i}.attention"] for i in range(2)]
  assert logits.shape == (2, 7, V)
  assert len(named) == 2 and all(m.shape == (2, 3, 7, 7) for m in maps)
  np.testing.assert_array_equal(np.asarray(maps[1])[1, :, :, 3:], 0.0)  # padded keys: weight 0
  np.testing.assert_allclose(np.asarray(maps[0]).sum(-1), 1.0, atol=1e-5)
  np.testing.assert_allclose(jax.jit(lambda t, v: model(t, v))(tokens, valid), logits, atol=1e-6)


def test_no_head_returns_hidden_states_and_gqa():
  config = TransformerConfig(
    vocab_size=V, num_layers=1, d_model=12, num_heads=4, num_kv_heads=2, d_ff=8, max_len=P
  )
  model = TransformerEncoder(config, rngs=nnx.Rngs(0))
  assert jax.eval_shape(lambda t: model(t), jnp.zeros((3, 5), jnp.int32)).shape == (3, 5, 12)
  assert model.layers[0].attention.key.kernel.shape == (12, 2 * 3)


def test_dropout_train_and_eval():
  model = make(dropout=0.3)
  model.train()
  tokens = jnp.arange(10).reshape(2, 5)
  assert not np.allclose(model(tokens), model(tokens))
  model.eval()
  np.testing.assert_array_equal(model(tokens), model(tokens))


@pytest.mark.parametrize(
  "kwargs, error, message",
  [
    (dict(norm="sandwich"), ValueError, "norm='sandwich': must be one of"),
    (dict(positions="rotary"), ValueError, "positions='rotary': must be one of"),
    (dict(activation="tanh"), ValueError, "activation='tanh': must be one of"),
    (dict(num_kv_heads=2), ValueError, "num_kv_heads=2: must divide num_heads=3"),
  ],
)
def test_bad_constructor_arguments(kwargs, error, message):
  with pytest.raises(error, match=message):
    make(**kwargs)


def test_bad_call_arguments():
  model = make()
  with pytest.raises(ValueError, match=r"length 17; it must lie in \[1, max_len=16\]"):
    model(jnp.zeros((1, 17), jnp.int32))
  with pytest.raises(TypeError, match="must be bool"):
    model(jnp.zeros((1, 4), jnp.int32), jnp.ones((1, 4), jnp.int32))
  with pytest.raises(ValueError, match=r"valid_BT has shape \(1, 3\)"):
    model(jnp.zeros((1, 4), jnp.int32), jnp.ones((1, 3), bool))
