"""Attention dropout as a model choice: `TransformerConfig.attention_dropout`.

Dimension key: B batch, T positions, V vocabulary.

Training mode draws a key from the module's 'dropout' stream for every call and hands
it to the op; `model.eval()` (NNX's switch) turns it off, and a rate of 0 never asks
the op for dropout. Checked against the op itself (the same key given to
`tj.attention` by hand), against a model without dropout, and by gradients.
"""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

import tfmr_jax as tj
from tfmr_jax.models import GPT2, TransformerConfig
from tfmr_jax.nn import MultiHeadAttention

V, P, T = 23, 16, 11
forward = nnx.jit(GPT2.__call__)  # one compile per model, not one per op


def gpt(rate, *, seed=0, **fields):
  config = TransformerConfig.gpt(
    vocab_size=V,
    max_len=P,
    num_layers=1,
    num_heads=3,
    d_model=12,
    attention_dropout=rate,
    **{"attention_implementation": "reference", **fields},
  )
  return GPT2(config, rngs=nnx.Rngs(params=0, dropout=seed))


def tokens(B=2):
  return jax.random.randint(jax.random.key(0), (B, T), 0, V)


def test_the_rate_adds_no_parameters():
  with_dropout, without = gpt(0.3), gpt(0.0)
  same = jax.tree.map(
    lambda a, b: bool((a == b).all()),
    nnx.state(with_dropout, nnx.Param),
    nnx.state(without, nnx.Param),
  )
  assert all(jax.tree.leaves(same))


def test_eval_mode_equals_no_dropout_exactly():
  model = gpt(0.3)
  model.eval()
  np.testing.assert_array_equal(forward(model, tokens()), forward(gpt(0.0), tokens()))


def recording(calls):
  def attention_fn(q, k, v, **options):
    calls.append(options)
    return tj.attention(q, k, v, **options, implementation="reference")

  return attention_fn


def test_the_module_hands_the_op_its_rate_and_a_key_in_training_mode_only():
  calls = []
  mha = MultiHeadAttention(
    12, 3, attention_dropout=0.25, attention_fn=recording(calls), rngs=nnx.Rngs(0)
  )
  x_BTD = jax.random.normal(jax.random.key(1), (2, T, 12))
  stream = nnx.clone(mha.attention_dropout.rngs)
  out_BTD = mha(x_BTD, is_causal=True)
  (options,) = calls
  assert options["dropout_rate"] == 0.25 and options["is_causal"]
  # The same key, drawn from a copy of the stream, given to the op by hand.
  q_BTNH = mha.query(x_BTD).reshape(2, T, 3, 4)
  k_BTNH = mha.key(x_BTD).reshape(2, T, 3, 4)
  v_BTNH = mha.value(x_BTD).reshape(2, T, 3, 4)
  by_hand_BTNH = tj.attention(
    q_BTNH,
    k_BTNH,
    v_BTNH,
    is_causal=True,
    dropout_rate=0.25,
    dropout_rng=stream(),
    implementation="reference",
  )
  np.testing.assert_allclose(out_BTD, mha.out(by_hand_BTNH.reshape(2, T, 12)), atol=1e-6)
  mha.eval()
  mha(x_BTD, is_causal=True)
  assert "dropout_rate" not in calls[-1] and "dropout_rng" not in calls[-1]
  calls.clear()
  no_rate = MultiHeadAttention(12, 3, attention_fn=recording(calls), rngs=nnx.Rngs(0))
  no_rate(x_BTD, is_causal=True)  # training mode, rate 0: exactly no dropout
  assert "dropout_rate" not in calls[-1] and "dropout_rng" not in calls[-1]


def test_gradients_flow_through_dropped_attention():
  mha = MultiHeadAttention(12, 3, attention_dropout=0.3, rngs=nnx.Rngs(params=0, dropout=1))
  x_BTD = jax.random.normal(jax.random.key(1), (2, T, 12))

  def loss(mha):
    return jnp.sum(mha(x_BTD, is_causal=True) ** 2)

  trained = np.asarray(nnx.grad(loss)(mha)["query"]["kernel"][...])
  mha.eval()
  evaluated = np.asarray(nnx.grad(loss)(mha)["query"]["kernel"][...])
  assert np.isfinite(trained).all() and np.abs(trained).max() > 0
  assert np.abs(trained - evaluated).max() > 1e-4  # the dropped probabilities are in the graph


@pytest.mark.parametrize("implementation", ["xla", "cudnn"])
def test_an_op_without_dropout_is_refused_by_the_config(implementation):
  with pytest.raises(ValueError, match="has no attention dropout"):
    gpt(0.1, attention_implementation=implementation)


def test_training_mode_drops_a_new_key_each_call_and_eval_mode_none():
  """Under nnx.jit, as a training step runs: the stream moves on with every call."""
  x_BT = tokens()
  clean_BTV = forward(gpt(0.0), x_BT)
  model = gpt(0.3, seed=1)
  twin = nnx.clone(model)  # the same stream state: the same key, the same entries dropped
  first_BTV = forward(model, x_BT)
  np.testing.assert_array_equal(first_BTV, forward(twin, x_BT))
  assert np.abs(np.asarray(first_BTV - clean_BTV)).max() > 1e-3
  assert np.abs(np.asarray(forward(model, x_BT) - first_BTV)).max() > 1e-3
  other_key_BTV = forward(gpt(0.3, seed=2), x_BT)
  assert np.abs(np.asarray(other_key_BTV - first_BTV)).max() > 1e-3
  model.eval()
  np.testing.assert_array_equal(forward(model, x_BT), clean_BTV)
