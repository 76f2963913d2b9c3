"""FeedForward, Residual (post-LN and pre-LN), embeddings and dropout with hand-set weights."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

import tfmr_jax as tj
from tfmr_jax.nn import FeedForward, PositionEmbedding, Residual, TokenEmbedding


def test_feed_forward_relu_hand_set():
  ff = FeedForward(2, 3, rngs=nnx.Rngs(0))
  ff.hidden.kernel[...] = jnp.array([[1.0, -1.0, 2.0], [0.5, 1.0, -1.0]])
  ff.hidden.bias[...] = jnp.array([0.0, 0.5, -1.0])
  ff.out.kernel[...] = jnp.array([[1.0, 0.0], [2.0, 1.0], [-1.0, 3.0]])
  ff.out.bias[...] = jnp.array([0.25, -0.25])
  x = jnp.array([[[1.0, 2.0], [-1.0, 1.0]]])
  # row 1: hidden pre-act [2, 1.5, -1] -> relu [2, 1.5, 0] -> [2+3, 1.5] + b = [5.25, 1.25]
  # row 2: hidden pre-act [-0.5, 2.5, -4] -> relu [0, 2.5, 0] -> [5, 2.5] + b = [5.25, 2.25]
  np.testing.assert_allclose(ff(x), [[[5.25, 1.25], [5.25, 2.25]]], atol=1e-6)


def test_feed_forward_gelu_is_tanh_approximation():
  ff = FeedForward(1, 1, activation="gelu", rngs=nnx.Rngs(0))
  ff.hidden.kernel[...] = jnp.ones((1, 1))
  ff.hidden.bias[...] = jnp.zeros((1,))
  ff.out.kernel[...] = jnp.ones((1, 1))
  ff.out.bias[...] = jnp.zeros((1,))
  x = np.array([-3.0, -1.0, -0.3, 0.0, 0.7, 2.0])
  want = 0.5 * x * (1 + np.tanh(np.sqrt(2 / np.pi) * (x + 0.044715 * x**3)))
  got = ff(jnp.asarray(x, jnp.float32).reshape(1, -1, 1)).reshape(-1)
  np.testing.assert_allclose(got, want, atol=1e-6)
  exact = 0.5 * x * (1 + np.vectorize(__import__("math").erf)(x / np.sqrt(2)))
  assert np.abs(np.asarray(got) - exact).max() > 1e-4  # the approximation, not exact erf


def test_feed_forward_unknown_activation():
  with pytest.raises(ValueError, match="activation must be one of .* got 'swish'"):
    FeedForward(4, 8, activation="swish", rngs=nnx.Rngs(0))


def np_layer_norm(x, scale, bias, eps):
  mean = x.mean(-1, keepdims=True)
  var = ((x - mean) ** 2).mean(-1, keepdims=True)
  return (x - mean) / np.sqrt(var + eps) * scale + bias


@pytest.mark.parametrize("norm", ["post", "pre"])
def test_residual_placements_by_hand(norm, maybe_jit):
  D = 5
  residual = Residual(D, norm=norm, epsilon=1e-5, rngs=nnx.Rngs(0))
  scale, bias = np.linspace(0.5, 1.5, D), np.linspace(-0.2, 0.2, D)
  residual.layer_norm.scale[...] = jnp.asarray(scale, jnp.float32)
  residual.layer_norm.bias[...] = jnp.asarray(bias, jnp.float32)
  W = np.arange(D * D).reshape(D, D) / 10.0 - 1.0

  def sublayer(h):
    return h @ jnp.asarray(W, jnp.float32)

  x = np.asarray(jax.random.normal(jax.random.key(0), (2, 3, D)), np.float64)
  got = maybe_jit(lambda x: residual.add(x, sublayer(residual.sublayer_input(x))))(
    jnp.asarray(x, jnp.float32)
  )
  if norm == "post":
    want = np_layer_norm(x + x @ W, scale, bias, 1e-5)
  else:
    want = x + np_layer_norm(x, scale, bias, 1e-5) @ W
  np.testing.assert_allclose(got, want, atol=1e-5, rtol=1e-5)


def test_residual_halves_and_bad_norm():
  x = jax.random.normal(jax.random.key(2), (1, 2, 3))
  post = Residual(3, rngs=nnx.Rngs(0))
  pre = Residual(3, norm="pre", rngs=nnx.Rngs(0))
  np.testing.assert_array_equal(post.sublayer_input(x), x)  # post-LN: the sublayer reads x
  np.testing.assert_array_equal(pre.sublayer_input(x), pre.layer_norm(x))
  np.testing.assert_allclose(pre.add(x, 2 * x), 3 * x, atol=1e-6)  # pre-LN: a plain add
  with pytest.raises(ValueError, match="norm must be one of .* got 'middle'"):
    Residual(3, norm="middle", rngs=nnx.Rngs(0))


def test_dropout_train_random_eval_deterministic():
  residual = Residual(16, norm="pre", dropout=0.5, rngs=nnx.Rngs(0))
  x = jax.random.normal(jax.random.key(1), (2, 7, 16))

  def ident(x):  # the identity sublayer
    return residual.add(x, residual.sublayer_input(x))

  first, second = ident(x), ident(x)
  assert not np.allclose(first, second)  # fresh mask per call in train mode
  residual.eval()
  np.testing.assert_array_equal(ident(x), ident(x))
  np.testing.assert_allclose(ident(x), x + residual.layer_norm(x), atol=1e-6)
  residual.train()
  assert not np.allclose(ident(x), ident(x))


def test_token_embedding_scale_and_tied_attend():
  emb = TokenEmbedding(7, 4, scale=True, rngs=nnx.Rngs(0))
  table = np.asarray(emb.embed.embedding[...])
  tokens = jnp.array([[3, 0, 6]])
  np.testing.assert_allclose(emb(tokens), table[[3, 0, 6]][None] * 2.0, atol=1e-6)
  x = np.asarray(jax.random.normal(jax.random.key(0), (1, 3, 4)))
  np.testing.assert_allclose(emb.attend(jnp.asarray(x)), x @ table.T, atol=1e-5)
  with pytest.raises(TypeError, match="tokens must be integers"):
    emb(jnp.ones((1, 3)))


def test_position_embeddings():
  sinusoidal = PositionEmbedding(11, 6, kind="sinusoidal", rngs=nnx.Rngs(0))
  np.testing.assert_allclose(sinusoidal(jnp.arange(3, 9)), tj.sinusoidal_positions(11, 6)[3:9])
  assert not jax.tree.leaves(nnx.state(sinusoidal, nnx.Param))  # not a parameter
  learned = PositionEmbedding(11, 6, kind="learned", rngs=nnx.Rngs(0))
  np.testing.assert_array_equal(learned(jnp.arange(2)), learned.table.embedding[...][:2])
  none = PositionEmbedding(11, 6, kind="none", rngs=nnx.Rngs(0))
  np.testing.assert_array_equal(none(jnp.arange(4)), np.zeros((4, 6)))
  rope = PositionEmbedding(11, 6, kind="rope", rngs=nnx.Rngs(0))  # rotates in attention instead
  np.testing.assert_array_equal(rope(jnp.arange(4)), np.zeros((4, 6)))
  assert not jax.tree.leaves(nnx.state(rope, nnx.Param))
  with pytest.raises(ValueError, match="positions must be one of .* got 'rotary'"):
    PositionEmbedding(11, 6, kind="rotary", rngs=nnx.Rngs(0))
