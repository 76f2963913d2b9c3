"""Sliding-window attention as a model choice: `window` and `window_pattern`.

Dimension key: B batch, T positions, N heads, S keys, V vocabulary.

Each claim against an independent reference: a NumPy band mask handed to the op by a
test attention_fn; the reach of a perturbed token (exactly L (W - 1) positions through
L local causal layers, everything through a global one); the captured attention maps
of each layer; and cached decoding against the full forward pass.
"""

import jax
import numpy as np
import pytest
from flax import nnx

import tfmr_jax as tj
from tfmr_jax.models import GPT2, EncoderDecoderTransformer, TransformerConfig, TransformerEncoder
from tfmr_jax.nn import capture_attention

V, P, T = 23, 16, 13
forward = nnx.jit(GPT2.__call__)  # one compile per model, not one per op


def gpt(window, pattern="local", *, num_layers=2, attention_fn=None, **fields):
  config = TransformerConfig.gpt(
    vocab_size=V,
    max_len=P,
    num_layers=num_layers,
    num_heads=3,
    d_model=12,
    window=window,
    window_pattern=pattern,
    **fields,
  )
  model = GPT2(config, attention_fn=attention_fn, rngs=nnx.Rngs(0))
  model.eval()
  return model


def numpy_band(T, S, W):
  """[1, 1, T, S] bool: query t (at key position p = t + S - T) sees keys p - W < s <= p."""
  p = np.arange(T)[:, None] + (S - T)
  s = np.arange(S)[None, :]
  return ((s <= p) & (s > p - W))[None, None]


def band_by_mask(q, k, v, *, mask, bias, is_causal, window=None):
  """The window as a NumPy mask array, on an op that is never told about windows."""
  assert is_causal
  band = np.tril(np.ones((q.shape[1], k.shape[1]), bool))[None, None]
  if window is not None:
    band = numpy_band(q.shape[1], k.shape[1], window)
  return tj.attention(
    q, k, v, mask=tj.combine_masks(band, mask), bias=bias, implementation="reference"
  )


def tokens(seed=0, B=2):
  return jax.random.randint(jax.random.key(seed), (B, T), 0, V)


def test_window_equals_an_explicit_band_mask():
  x_BT = tokens()
  model = gpt(3, "local,global", attention_implementation="tiled")
  reference = gpt(3, "local,global", attention_fn=band_by_mask)
  np.testing.assert_allclose(forward(model, x_BT), forward(reference, x_BT), atol=2e-5)
  unwindowed = gpt(None)
  assert np.abs(np.asarray(forward(model, x_BT) - forward(unwindowed, x_BT))).max() > 1e-3


def reach(model, j):
  """bool [T]: which positions' outputs move at all when the token at position j changes.

  Masked keys get probability exactly 0 (the reference op), so an unreached position's
  output is bit for bit the same."""
  x_BT = tokens(B=1)
  y_BT = x_BT.at[0, j].set((x_BT[0, j] + 1) % V)
  run = nnx.jit(type(model).__call__)
  return (np.asarray(run(model, y_BT)) != np.asarray(run(model, x_BT)))[0].any(-1)


@pytest.mark.parametrize("W, num_layers", [(3, 2), (2, 3)])
def test_a_token_reaches_exactly_num_layers_times_window_minus_one_ahead(W, num_layers):
  j = 2
  moved_T = reach(gpt(W, num_layers=num_layers, attention_implementation="reference"), j)
  t = np.arange(T)
  np.testing.assert_array_equal(moved_T, (t >= j) & (t - j <= num_layers * (W - 1)))


def test_a_global_layer_sees_the_whole_context():
  j = 1
  moved_T = reach(gpt(2, "local,global", attention_implementation="reference"), j)
  np.testing.assert_array_equal(moved_T, np.arange(T) >= j)


def test_captured_maps_are_banded_in_local_layers_only():
  W = 3
  _, maps = capture_attention(gpt(W, "local,global", num_layers=3), tokens())
  band = numpy_band(T, T, W)
  causal = np.tril(np.ones((T, T), bool))[None, None]
  for name, visible in (("layers.0", band), ("layers.1", causal), ("layers.2", band)):
    weights_BNTS = np.asarray(maps[f"{name}.attention"])
    assert (weights_BNTS[:, :, ~visible[0, 0]] == 0).all(), name
    assert (
      np.broadcast_to(weights_BNTS > 0, (2, 3, T, T)) == np.broadcast_to(visible, (2, 3, T, T))
    ).all(), name


def test_encoder_window_is_the_symmetric_band():
  W, j = 3, 6
  config = TransformerConfig(
    vocab_size=V,
    max_len=P,
    num_layers=1,
    num_heads=3,
    d_model=12,
    window=W,
    num_outputs=5,
    attention_implementation="reference",
  )
  model = TransformerEncoder(config, rngs=nnx.Rngs(0))
  model.eval()
  moved_T = reach(model, j)
  np.testing.assert_array_equal(moved_T, np.abs(np.arange(T) - j) < W)


def test_cached_decoding_with_a_window_equals_full_recomputation():
  prompt_len, fields = 5, {"positions": "rope", "num_kv_heads": 1}
  model = gpt(3, "local,local,global", num_layers=3, **fields)
  x_BT = tokens()
  full_BTV = forward(model, x_BT)
  cache = model.init_cache(2, P)
  extend = nnx.jit(lambda m, x, c: m.extend(x, c))
  logits_BTV, cache = extend(model, x_BT[:, :prompt_len], cache)
  np.testing.assert_allclose(logits_BTV, full_BTV[:, :prompt_len], atol=2e-5)
  for t in range(prompt_len, T):
    logits_BTV, cache = extend(model, x_BT[:, t : t + 1], cache)
    np.testing.assert_allclose(logits_BTV[:, 0], full_BTV[:, t], atol=2e-5)
  unwindowed_BTV = forward(gpt(None, num_layers=3, **fields), x_BT)
  assert np.abs(np.asarray(full_BTV - unwindowed_BTV))[:, -1].max() > 1e-3


def test_cached_decoding_of_a_left_padded_prompt_counts_real_tokens():
  """A row padded on the left gives the logits of its real tokens alone, window included."""
  model = gpt(2, num_layers=2)
  x_BT = tokens(B=1)
  pad = 3
  padded_BT = np.concatenate([np.zeros((1, pad), np.int32), np.asarray(x_BT)[:, : T - pad]], 1)
  valid_BT = np.arange(T)[None] >= pad
  extend = nnx.jit(lambda m, x, c, v: m.extend(x, c, valid_BT=v))
  logits_BTV, _ = extend(model, padded_BT, model.init_cache(1, P), valid_BT)
  alone_BTV = forward(model, x_BT[:, : T - pad])
  np.testing.assert_allclose(logits_BTV[:, pad:], alone_BTV, atol=2e-5)


def test_encoder_decoder_windows_the_decoders_self_attention_only():
  config = TransformerConfig(
    vocab_size=11,
    max_len=P,
    num_layers=2,
    d_model=12,
    num_heads=3,
    window=2,
    window_pattern="global,local",
  )
  model = nnx.eval_shape(lambda: EncoderDecoderTransformer(config, rngs=nnx.Rngs(0)))
  windows = [
    (layer.self_attention.window, layer.cross_attention.window) for layer in model.decoder_layers
  ]
  assert windows == [(None, None), (2, None)]
  assert [layer.attention.window for layer in model.encoder.layers] == [None, 2]
