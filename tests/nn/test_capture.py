"""capture_attention: the maps are tj.attention_weights of each layer's own projections,
eagerly and under jit, in call order; plain calls compute and store nothing."""

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

import tfmr_jax as tj
from tfmr_jax.nn import EncoderBlock, MultiHeadAttention, capture_attention

B, T, S, D, N, K = 2, 7, 5, 12, 4, 2


def heads(linear, x_BTD, num_heads):
  B, T, _ = x_BTD.shape
  return linear(x_BTD).reshape(B, T, num_heads, -1)


def test_maps_are_attention_weights_of_the_projections(maybe_jit):
  mha = MultiHeadAttention(D, N, num_kv_heads=K, rngs=nnx.Rngs(0))
  x = jax.random.normal(jax.random.key(1), (B, T, D))
  context = jax.random.normal(jax.random.key(2), (B, S, D))
  mask = tj.padding_mask(jnp.array([S, 3]), S)
  out, maps = maybe_jit(lambda x, c: capture_attention(mha, x, c, mask=mask))(x, context)
  want = tj.attention_weights(heads(mha.query, x, N), heads(mha.key, context, K), mask=mask)
  assert list(maps) == [""] and maps[""].dtype == jnp.float32
  assert maps[""].shape == (B, N, T, S)
  np.testing.assert_allclose(maps[""], want, atol=1e-6)
  np.testing.assert_allclose(out, mha(x, context, mask=mask), atol=1e-6)


@pytest.mark.parametrize("implementation", ["tiled", "xla"])
def test_maps_do_not_depend_on_the_attention_fn(implementation):
  fn = functools.partial(tj.attention, implementation=implementation)
  fast = EncoderBlock(D, N, 20, norm="pre", attention_fn=fn, rngs=nnx.Rngs(3))
  reference = EncoderBlock(D, N, 20, norm="pre", attention_fn=tj.attention, rngs=nnx.Rngs(3))
  x = jax.random.normal(jax.random.key(4), (B, T, D))
  _, got = jax.jit(lambda x: capture_attention(fast, x, is_causal=True))(x)
  _, want = jax.jit(lambda x: capture_attention(reference, x, is_causal=True))(x)
  np.testing.assert_array_equal(got["attention"], want["attention"])
  h = reference.attention_residual.sublayer_input(x)
  by_hand = tj.attention_weights(
    heads(reference.attention.query, h, N), heads(reference.attention.key, h, N), is_causal=True
  )
  np.testing.assert_allclose(got["attention"], by_hand, atol=1e-6)


def test_repeated_calls_get_numbered_keys_and_the_model_is_untouched():
  mha = MultiHeadAttention(D, N, rngs=nnx.Rngs(0))
  x = jax.random.normal(jax.random.key(5), (B, T, D))

  def twice(model, x):
    return model(model(x), is_causal=True)

  graphdef = nnx.graphdef(mha)
  _, maps = capture_attention(mha, x, method="__call__")
  assert list(maps) == [""]
  out, maps = jax.jit(lambda x: capture_attention(mha, mha(x), is_causal=True))(x)
  np.testing.assert_allclose(out, twice(mha, x), atol=1e-6)
  assert not mha.sow_attention and nnx.graphdef(mha) == graphdef  # the copy was switched on
  mha(x)  # a plain call sows nothing (a sow outside nnx.capture would warn: an error here)


def test_a_method_other_than_call_and_a_module_called_twice():
  block = EncoderBlock(D, N, 20, rngs=nnx.Rngs(6))
  x = jax.random.normal(jax.random.key(7), (B, T, D))
  cache = block.attention.init_cache(B, T)
  (out, cache), maps = capture_attention(block, x[:, :3], cache, method="extend")
  assert list(maps) == ["attention"] and maps["attention"].shape == (B, N, 3, T)
  np.testing.assert_array_equal(np.asarray(maps["attention"])[..., 3:], 0.0)  # empty slots
  shared = MultiHeadAttention(D, N, rngs=nnx.Rngs(8))

  class Twice(nnx.Module):
    def __init__(self):
      self.inner = shared

    def __call__(self, x):
      return self.inner(self.inner(x), is_causal=True)

  _, maps = capture_attention(Twice(), x)
  assert list(maps) == ["inner", "inner#1"]
  assert np.all(np.asarray(maps["inner#1"])[..., ~np.tril(np.ones((T, T), bool))] == 0.0)
  assert not np.all(np.asarray(maps["inner"])[..., ~np.tril(np.ones((T, T), bool))] == 0.0)
