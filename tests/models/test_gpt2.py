"""GPT2: parameter count, causality, KV-cache decoding, from_hf errors."""

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

import tfmr_jax as tj
from tests.models.numpy_gpt2 import gpt2_logits
from tfmr_jax.models import GPT2, TransformerConfig, count_params, from_hf
from tfmr_jax.models.hf_gpt2 import _hf_shapes

TINY = TransformerConfig.gpt(vocab_size=23, max_len=16, num_layers=2, num_heads=3, d_model=12)


@pytest.fixture(scope="module")
def gpt():
  return GPT2(TINY, rngs=nnx.Rngs(0))


@pytest.fixture(scope="module")
def jitted(gpt):
  """(forward, extend), jitted once for the module so parametrized tests share compilations."""
  return jax.jit(lambda t: gpt(t)), jax.jit(lambda t, cache: gpt.extend(t, cache))


def test_124m_parameter_count_without_allocating():
  model = nnx.eval_shape(lambda: GPT2(TransformerConfig.gpt2_124m(), rngs=nnx.Rngs(0)))
  assert isinstance(model.token_embedding.embed.embedding.get_value(), jax.ShapeDtypeStruct)
  assert count_params(model) == 124_439_808


def test_tiny_parameter_count_by_hand():
  D, F, V, P, L = 12, 48, 23, 16, 2
  per_layer = 2 * 2 * D + (D * 3 * D + 3 * D) + (D * D + D) + (D * F + F) + (F * D + D)
  assert count_params(GPT2(TINY, rngs=nnx.Rngs(0))) == V * D + P * D + L * per_layer + 2 * D


def test_future_tokens_do_not_change_past_logits(jitted):
  tokens = jax.random.randint(jax.random.key(0), (2, 11), 0, 23)
  perturbed = tokens.at[:, 5:].set((tokens[:, 5:] + 7) % 23)
  run = jitted[0]
  out, out_perturbed = run(tokens), run(perturbed)
  np.testing.assert_allclose(out[:, :5], out_perturbed[:, :5], atol=1e-6)
  assert not np.allclose(out[:, 5:], out_perturbed[:, 5:])


def test_causality_by_gradients(gpt):
  """d logits[t] / d (position embedding at t') is zero exactly when t' > t."""
  T = 6
  tokens = jnp.arange(2 * T).reshape(2, T) % 23
  graphdef, state = nnx.split(gpt)

  def logits_per_position(table_PD):
    model = nnx.merge(graphdef, jax.tree.map(jnp.asarray, state))  # fresh Variables in this trace
    model.position_embedding.table.embedding[...] = table_PD
    return model(tokens).sum(axis=(0, 2))

  table = gpt.position_embedding.table.embedding[...]
  jacobian_TPD = jax.jit(jax.jacrev(logits_per_position))(table)
  touched_TP = np.abs(np.asarray(jacobian_TPD)).sum(-1) > 0
  np.testing.assert_array_equal(touched_TP[:, :T], np.tril(np.ones((T, T), bool)))
  assert not touched_TP[:, T:].any()


@pytest.mark.parametrize("prompt_len", [1, 4, 7])
def test_cached_decoding_equals_full_recomputation(gpt, jitted, prompt_len):
  T = 11
  tokens = jax.random.randint(jax.random.key(prompt_len), (2, T), 0, 23)
  forward, extend = jitted
  full = forward(tokens)
  cache = gpt.init_cache(2, 12)
  logits, cache = extend(tokens[:, :prompt_len], cache)
  np.testing.assert_allclose(logits, full[:, :prompt_len], atol=1e-5)
  for t in range(prompt_len, T):
    logits, cache = extend(tokens[:, t : t + 1], cache)
    np.testing.assert_allclose(logits[:, 0], full[:, t], atol=1e-5)
  assert int(cache[0].length) == T


def test_gqa_variant_runs_and_caches():
  model = GPT2(
    TransformerConfig.gpt(
      vocab_size=11, max_len=8, num_layers=1, num_heads=4, d_model=8, num_kv_heads=1
    ),
    rngs=nnx.Rngs(0),
  )
  tokens = jnp.arange(6).reshape(1, 6)
  cache = model.init_cache(1, 8)
  assert cache[0].k_BSKH.shape == (1, 8, 1, 2)
  logits, _ = jax.jit(lambda t, c: model.extend(t, c))(tokens, cache)
  np.testing.assert_allclose(logits, jax.jit(lambda t: model(t))(tokens), atol=1e-5)


HF_CONFIG = dict(
  n_embd=12,
  n_head=3,
  n_layer=2,
  n_positions=16,
  vocab_size=23,
  layer_norm_epsilon=1e-5,
  activation_function="gelu_new",
)


def hf_state_dict(seed=0):
  rng = np.random.default_rng(seed)
  return {
    "transformer." + k: rng.normal(size=s).astype(np.float32) for k, s in _hf_shapes(TINY).items()
  }


def test_from_hf_maps_every_tensor():
  """A NumPy forward pass from HF-named weights (Conv1D: y = x W + b) matches the import."""
  sd = hf_state_dict()
  model = from_hf({**sd, "lm_head.weight": sd["transformer.wte.weight"]}, HF_CONFIG)
  tokens = np.array([[3, 1, 4, 1, 5], [9, 2, 6, 5, 3]])
  want = gpt2_logits(sd, tokens, num_heads=3)
  np.testing.assert_allclose(model(jnp.asarray(tokens)), want, atol=1e-4, rtol=1e-5)


def test_from_hf_missing_key():
  sd = hf_state_dict()
  del sd["transformer.h.1.mlp.c_fc.bias"]
  with pytest.raises(ValueError, match=r"missing 1 key\(s\), first 'h.1.mlp.c_fc.bias'"):
    from_hf(sd, HF_CONFIG)


def test_from_hf_wrong_shape():
  sd = hf_state_dict()
  sd["transformer.h.0.attn.c_attn.weight"] = np.zeros((36, 12), np.float32)  # transposed
  with pytest.raises(
    ValueError,
    match=r"'h.0.attn.c_attn.weight'\] has shape \(36, 12\), "
    r"expected \(12, 36\)",
  ):
    from_hf(sd, HF_CONFIG)


@pytest.mark.parametrize("dtype", [np.int32, np.int64, np.bool_])
def test_from_hf_refuses_weights_that_are_not_floating_point(dtype):
  sd = hf_state_dict()
  key = "transformer.h.1.mlp.c_proj.weight"
  sd[key] = (sd[key] * 1000).astype(dtype)  # a cast would load these silently
  with pytest.raises(ValueError, match=rf"'h.1.mlp.c_proj.weight'\] has dtype {np.dtype(dtype)}"):
    from_hf(sd, HF_CONFIG)


def test_from_hf_unexpected_key_untied_head_and_config():
  sd = hf_state_dict()
  with pytest.raises(ValueError, match=r"unexpected key\(s\) \['h.0.attn.rotary'\]"):
    from_hf({**sd, "h.0.attn.rotary": np.zeros(3)}, HF_CONFIG)
  from_hf({**sd, "h.0.attn.bias": np.zeros((1, 1, 16, 16))}, HF_CONFIG)  # mask buffer: ignored
  with pytest.raises(ValueError, match="lm_head.weight differs from wte.weight"):
    from_hf({**sd, "lm_head.weight": np.zeros((23, 12), np.float32)}, HF_CONFIG)
  with pytest.raises(ValueError, match="activation_function='gelu' is not supported"):
    from_hf(sd, {**HF_CONFIG, "activation_function": "gelu"})
  with pytest.raises(ValueError, match="lacks 'n_head'"):
    from_hf(sd, {k: v for k, v in HF_CONFIG.items() if k != "n_head"})


@pytest.mark.parametrize("bad_id", [23, -1])  # V = 23
def test_token_ids_out_of_range_are_refused(gpt, bad_id):
  tokens = jnp.asarray([[3, bad_id, 4]])
  with pytest.raises(ValueError, match=r"tokens_BT ids must lie in \[0, vocab_size=23\)"):
    gpt(tokens)
  with pytest.raises(ValueError, match=r"tokens_BT ids must lie in \[0, vocab_size=23\)"):
    gpt.extend(tokens, gpt.init_cache(1, 8))
  # Under jit the values are unknown while tracing: tj.debug_checks adds the check.
  with tj.debug_checks():
    checked = chex.chexify(jax.jit(lambda t: gpt(t)), async_check=False)
    checked(jnp.asarray([[3, 1, 4]]))  # in range: fine
    with pytest.raises(AssertionError, match=r"tokens_BT ids must lie in \[0, vocab_size=23\)"):
      checked(tokens)


def test_extending_past_the_end_of_the_cache_is_refused(gpt):
  cache = gpt.init_cache(1, 8)
  _, cache = gpt.extend(jnp.zeros((1, 6), jnp.int32), cache)
  _, cache = gpt.extend(jnp.zeros((1, 2), jnp.int32), cache)  # exactly full: fine
  with pytest.raises(ValueError, match="length S=8 holding 8: it would run past its end"):
    gpt.extend(jnp.zeros((1, 1), jnp.int32), cache)
  # Under jit: only inside tj.debug_checks.
  with tj.debug_checks():
    checked = chex.chexify(jax.jit(lambda t, c: gpt.extend(t, c)), async_check=False)
    with pytest.raises(AssertionError, match="to a cache of length S=8 holding too many"):
      checked(jnp.zeros((1, 1), jnp.int32), cache)
