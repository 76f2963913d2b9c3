"""Mixed precision: dtype (compute) and param_dtype reach every module of every family.

With dtype="bfloat16" the parameters stay in param_dtype (float32 by default), the
attention op receives bfloat16 queries, keys and values (so on a GPU `tj.attention`
picks cuDNN), and the logits come back float32. Sizes are prime or odd so a swapped
axis fails.
"""

import json
import pathlib

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx
from safetensors.numpy import load_file

from tfmr_jax import config as C
from tfmr_jax.models import (
  GPT2,
  EncoderDecoderTransformer,
  ModelConfigError,
  TransformerConfig,
  TransformerEncoder,
  count_params,
  from_hf,
)
from tfmr_jax.nn import state as model_state
from tfmr_jax.ops import attention

SMALL = dict(vocab_size=13, max_len=11, num_layers=2, d_model=20, num_heads=2, d_ff=28)
GOLDEN = pathlib.Path(__file__).parents[1] / "golden" / "gpt2_tiny"
FAMILIES = {
  "gpt_tied": lambda **f: (GPT2, TransformerConfig.gpt(**SMALL, **f)),
  "gpt_untied_post_ln": lambda **f: (GPT2, TransformerConfig(**SMALL, **f)),
  "encoder": lambda **f: (TransformerEncoder, TransformerConfig(**SMALL, num_outputs=7, **f)),
  "encoder_decoder_tied": lambda **f: (
    EncoderDecoderTransformer,
    TransformerConfig(**SMALL, share_embeddings=True, tie_output=True, **f),
  ),
  "encoder_decoder_untied_pre_ln": lambda **f: (
    EncoderDecoderTransformer,
    TransformerConfig(**SMALL, tgt_vocab_size=17, norm="pre", positions="learned", **f),
  ),
}


def _spy():
  """An attention_fn recording the dtypes of q, k, v and of its output."""
  seen = []

  def spy(q_BTNH, k_BSKH, v_BSKH, **options):
    out_BTNH = attention(q_BTNH, k_BSKH, v_BSKH, **options)
    seen.append((q_BTNH.dtype, k_BSKH.dtype, v_BSKH.dtype, out_BTNH.dtype))
    return out_BTNH

  return spy, seen


def _build(family: str, **fields):
  spy, seen = _spy()
  cls, config = FAMILIES[family](**fields)
  return cls(config, attention_fn=spy, rngs=nnx.Rngs(0)), seen


def _run(model, tokens_BT):
  if isinstance(model, EncoderDecoderTransformer):
    return model(tokens_BT, tokens_BT % 7)
  return model(tokens_BT)


def _param_dtypes(model) -> set:
  return {p.dtype for p in jax.tree.leaves(model_state.params_of(model))}


TOKENS_BT = jnp.asarray(np.random.default_rng(0).integers(0, 13, size=(3, 11)), jnp.int32)


@pytest.mark.parametrize("family", sorted(FAMILIES))
def test_bfloat16_compute_float32_params_bfloat16_attention_float32_logits(family):
  model, seen = _build(family, dtype="bfloat16")
  assert _param_dtypes(model) == {jnp.dtype(jnp.float32)}
  logits = _run(model, TOKENS_BT)
  assert logits.dtype == jnp.float32
  layers = 2 if family.startswith("gpt") or family == "encoder" else 2 + 2 * 2
  assert seen == [(jnp.bfloat16,) * 4] * layers  # q, k, v and the output, every layer
  assert np.isfinite(np.asarray(logits)).all()


@pytest.mark.parametrize("family", ["gpt_untied_post_ln", "encoder"])
def test_float32_default_is_float32_throughout(family):
  model, seen = _build(family)
  assert _param_dtypes(model) == {jnp.dtype(jnp.float32)}
  assert _run(model, TOKENS_BT).dtype == jnp.float32
  assert set(seen) == {(jnp.dtype(jnp.float32),) * 4}


@pytest.mark.parametrize("family", ["gpt_tied", "encoder_decoder_untied_pre_ln"])
def test_bfloat16_params_still_give_float32_logits(family):
  model, seen = _build(family, dtype="bfloat16", param_dtype="bfloat16")
  assert _param_dtypes(model) == {jnp.dtype(jnp.bfloat16)}
  assert _run(model, TOKENS_BT).dtype == jnp.float32
  assert set(seen) == {(jnp.dtype(jnp.bfloat16),) * 4}


@pytest.mark.parametrize("family", ["gpt_tied", "encoder_decoder_untied_pre_ln"])
def test_parameter_count_and_initial_values_do_not_depend_on_the_compute_dtype(family):
  f32, _ = _build(family)
  bf16, _ = _build(family, dtype="bfloat16")
  assert count_params(f32) == count_params(bf16)
  for a, b in zip(
    jax.tree.leaves(model_state.params_of(f32)),
    jax.tree.leaves(model_state.params_of(bf16)),
    strict=True,
  ):
    np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
  # Same weights, bfloat16 arithmetic: the logits agree to bfloat16's precision.
  ref, got = np.asarray(_run(f32, TOKENS_BT)), np.asarray(_run(bf16, TOKENS_BT))
  assert np.abs(got - ref).max() <= 0.05 * np.abs(ref).max()


def test_bfloat16_kv_cache_decoding_matches_the_full_pass():
  model, _ = _build("gpt_tied", dtype="bfloat16")
  cache = model.init_cache(3)
  assert {c.k_BSKH.dtype for c in cache} == {jnp.dtype(jnp.bfloat16)}
  extend = jax.jit(lambda tokens_BT, cache: model.extend(tokens_BT, cache))
  _, cache = extend(TOKENS_BT[:, :6], cache)
  step_logits, _ = extend(TOKENS_BT[:, 6:7], cache)
  full = np.asarray(jax.jit(lambda tokens_BT: model(tokens_BT))(TOKENS_BT[:, :7]))
  assert step_logits.dtype == jnp.float32
  # The cached step and the full pass round differently in bfloat16: equal to its precision.
  tolerance = 0.05 * np.abs(full).max()
  np.testing.assert_allclose(np.asarray(step_logits)[:, 0], full[:, 6], atol=tolerance)


@pytest.mark.parametrize(
  "field, value, rule",
  [
    ("dtype", "float64", "must be one of ('float32', 'bfloat16')"),
    ("dtype", jnp.bfloat16, "must be one of ('float32', 'bfloat16')"),
    ("param_dtype", "float16", "must be one of ('float32', 'bfloat16')"),
    (
      "dtype",
      "float16",
      "float16 compute needs dynamic loss scaling, which is not built; use 'bfloat16' "
      "(float32's exponent range, no scaling needed) or 'float32'",
    ),
  ],
)
def test_bad_dtypes_name_field_value_and_rule(field, value, rule):
  with pytest.raises(ModelConfigError) as error:
    TransformerConfig(**SMALL, **{field: value})
  assert (error.value.field, error.value.value, error.value.rule) == (field, value, rule)


def test_the_config_model_section_takes_the_dtypes_and_rejects_float16():
  config = C.validate({"task": {"name": "reverse"}, "model": {"dtype": "bfloat16"}})
  model_config = C.model_config(config.model, vocab_size=5, max_len=4)
  assert (model_config.dtype, model_config.param_dtype) == ("bfloat16", "float32")
  with pytest.raises(C.ConfigError, match=r"config\.model\.dtype = 'float16': float16 compute"):
    C.validate({"task": {"name": "reverse"}, "model": {"dtype": "float16"}})
  with pytest.raises(C.ConfigError, match=r"config\.model\.param_dtype = 'int8': must be one of"):
    C.validate({"task": {"name": "reverse"}, "model": {"param_dtype": "int8"}})


def test_from_hf_loads_into_param_dtype():
  state_dict = load_file(GOLDEN / "model.safetensors")
  hf_config = json.loads((GOLDEN / "config.json").read_text())
  model = from_hf(state_dict, hf_config, dtype="bfloat16", param_dtype="bfloat16")
  assert _param_dtypes(model) == {jnp.dtype(jnp.bfloat16)}
  assert (model.config.dtype, model.config.param_dtype) == ("bfloat16", "bfloat16")
  wte = np.asarray(model.token_embedding.embed.embedding[...])
  wte_ref = state_dict["transformer.wte.weight"].astype(jnp.bfloat16)
  np.testing.assert_array_equal(wte, wte_ref)
