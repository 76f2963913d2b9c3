"""The decoder configured as Llama (and the other new choices): parameter counts against the
formulas, cached decoding against full recomputation, bad combinations, the HF config reader.

Dimension key: V vocab, D model dim, N query heads, K kv heads, H head dim, F ff dim, L layers.
"""

import jax
import numpy as np
import pytest
from flax import nnx

from tfmr_jax.models import (
  GPT2,
  EncoderDecoderTransformer,
  ModelConfigError,
  TransformerConfig,
  count_params,
)
from tfmr_jax.models.hf_llama import config_from_hf_llama

TINY = dict(vocab_size=23, max_len=16, num_layers=2, d_model=20, num_heads=5, num_kv_heads=1)


def llama_params(V, D, L, N, K, F, *, tied=False, qk_norm=False):
  """Llama by hand: embedding, L x [RMSNorm, q k v o, RMSNorm, gate up down], RMSNorm, head."""
  H = D // N
  attention = D * N * H + 2 * D * K * H + N * H * D
  layer = attention + 3 * D * F + 2 * D + (2 * H if qk_norm else 0)
  return V * D + L * layer + D + (0 if tied else V * D)


@pytest.mark.parametrize(
  "sizes, published",
  [  # Llama 2 7B (multi-head) and Llama 3 8B (grouped-query), as published
    (dict(V=32000, D=4096, L=32, N=32, K=32, F=11008), 6_738_415_616),
    (dict(V=128256, D=4096, L=32, N=32, K=8, F=14336), 8_030_261_248),
  ],
)
def test_llama_counts_match_the_formula_and_the_published_sizes(sizes, published):
  s = sizes
  config = TransformerConfig.llama(
    vocab_size=s["V"],
    max_len=4096,
    num_layers=s["L"],
    d_model=s["D"],
    num_heads=s["N"],
    num_kv_heads=s["K"],
    d_ff=s["F"],
  )
  model = nnx.eval_shape(lambda: GPT2(config, rngs=nnx.Rngs(0)))
  assert count_params(model) == llama_params(**s) == published


@pytest.mark.parametrize("tied, qk_norm", [(False, False), (True, True)])
def test_tiny_llama_counts_by_hand(tied, qk_norm):
  config = TransformerConfig.llama(**TINY, tie_output=tied, qk_norm=qk_norm)
  assert config.d_ff == 56  # 8 * 20 / 3 = 53.3, up to a multiple of 8
  model = nnx.eval_shape(lambda: GPT2(config, rngs=nnx.Rngs(0)))
  want = llama_params(V=23, D=20, L=2, N=5, K=1, F=56, tied=tied, qk_norm=qk_norm)
  assert count_params(model) == want


def test_default_choices_keep_the_parameter_tree():
  """The defaults of the new fields build exactly the parameters they built before them."""
  config = TransformerConfig.gpt(vocab_size=23, max_len=16, num_layers=1, d_model=8, num_heads=2)
  model = nnx.eval_shape(lambda: GPT2(config, rngs=nnx.Rngs(0)))
  paths = {
    jax.tree_util.keystr(p) for p, _ in jax.tree_util.tree_leaves_with_path(nnx.state(model))
  }
  layer = {
    f"['layers'][0]['{m}']['{k}']['{w}']"
    for m, k, w in [
      ("attention", p, w) for p in ("query", "key", "value", "out") for w in ("kernel", "bias")
    ]
    + [("feed_forward", p, w) for p in ("hidden", "out") for w in ("kernel", "bias")]
    + [
      (r, "layer_norm", w)
      for r in ("attention_residual", "feed_forward_residual")
      for w in ("scale", "bias")
    ]
  }
  want = layer | {
    "['token_embedding']['embed']['embedding']",
    "['position_embedding']['table']['embedding']",
    "['final_norm']['scale']",
    "['final_norm']['bias']",
  }
  assert {p.replace(".value", "") for p in paths} == want


@pytest.mark.parametrize(
  "choices",
  [
    dict(),  # Llama: RoPE, RMSNorm, SwiGLU, GQA
    dict(qk_norm=True, activation="geglu", norm_kind="layernorm", rope_base=31.0, num_layers=1),
  ],
)
def test_cached_decoding_equals_full_recomputation(choices):
  model = GPT2(TransformerConfig.llama(**{**TINY, **choices}), rngs=nnx.Rngs(0))
  model.eval()
  tokens = jax.random.randint(jax.random.key(1), (2, 11), 0, 23)
  full = jax.jit(lambda t: model(t))(tokens)
  extend = jax.jit(lambda t, c: model.extend(t, c))
  cache = model.init_cache(2, 12)
  logits, cache = extend(tokens[:, :4], cache)
  np.testing.assert_allclose(logits, full[:, :4], atol=1e-5)
  for t in range(4, 11):
    logits, cache = extend(tokens[:, t : t + 1], cache)
    np.testing.assert_allclose(logits[:, 0], full[:, t], atol=1e-5)


def test_encoder_decoder_with_rope_decodes_with_its_cache():
  config = TransformerConfig(
    **{**TINY, "num_kv_heads": None, "num_layers": 1},
    positions="rope",
    norm="pre",
    norm_kind="rmsnorm",
    activation="swiglu",
  )
  s2s = EncoderDecoderTransformer(config, rngs=nnx.Rngs(0))
  s2s.eval()
  src = jax.random.randint(jax.random.key(2), (2, 6), 0, 23)
  tgt = jax.random.randint(jax.random.key(3), (2, 7), 0, 23)
  full = jax.jit(lambda s, t: s2s(s, t))(src, tgt)
  extend = jax.jit(lambda t, c: s2s.extend(t, c))
  cache = s2s.init_cache(jax.jit(lambda s: s2s.encode(s))(src), max_len=7)
  logits, cache = extend(tgt[:, :3], cache)
  steps = [logits]
  for t in range(3, 7):
    logits, cache = extend(tgt[:, t : t + 1], cache)
    steps.append(logits)
  np.testing.assert_allclose(np.concatenate(steps, axis=1), full, atol=1e-5)
  # cross-attention is not rotated
  assert s2s.decoder_layers[0].cross_attention.rope_base is None
  assert s2s.decoder_layers[0].self_attention.rope_base == 10000.0


@pytest.mark.parametrize(
  "fields, field, value, rule",
  [
    (
      dict(d_model=15, num_heads=3),
      "positions",
      "rope",
      "rotary embeddings rotate channel pairs, so they need an even head dim; "
      "d_model / num_heads = 15 / 3 = 5",
    ),
    (dict(activation="swishglu"), "activation", "swishglu", "must be one of"),
    (dict(norm_kind="rms"), "norm_kind", "rms", "must be one of ('layernorm', 'rmsnorm')"),
    (dict(d_ff=0), "d_ff", 0, "must be a positive int or None"),
    (dict(rope_base=-3), "rope_base", -3, "must be a number > 1"),
  ],
)
def test_bad_combinations_name_field_value_and_rule(fields, field, value, rule):
  with pytest.raises(ModelConfigError) as error:
    TransformerConfig.llama(**{**TINY, "num_kv_heads": None, **fields})
  assert (error.value.field, error.value.value) == (field, value)
  assert error.value.rule.startswith(rule)


HF_LLAMA = dict(
  vocab_size=23,
  hidden_size=20,
  intermediate_size=36,
  num_attention_heads=5,
  num_key_value_heads=1,
  num_hidden_layers=2,
  max_position_embeddings=16,
  rms_norm_eps=1e-5,
  rope_parameters={"rope_theta": 500.0, "rope_type": "default"},
  hidden_act="silu",
)


def test_config_from_hf_llama_reads_every_size():
  c = config_from_hf_llama(HF_LLAMA)
  got = (c.vocab_size, c.d_model, c.d_ff, c.num_heads, c.num_kv_heads, c.num_layers, c.max_len)
  assert got == (23, 20, 36, 5, 1, 2, 16)
  assert (c.rope_base, c.ln_eps, c.tie_output, c.use_bias) == (500.0, 1e-5, False, False)
  assert (c.norm, c.norm_kind, c.positions, c.activation) == ("pre", "rmsnorm", "rope", "swiglu")
  v4 = {k: v for k, v in HF_LLAMA.items() if k != "rope_parameters"}
  assert config_from_hf_llama({**v4, "rope_theta": 7.0, "rope_scaling": None}).rope_base == 7.0
  assert config_from_hf_llama({**HF_LLAMA, "tie_word_embeddings": True}).tie_output


@pytest.mark.parametrize(
  "change, message",
  [
    ({"rope_parameters": {"rope_type": "llama3", "rope_theta": 5e5}}, "rope_type 'default'"),
    ({"rope_parameters": None, "rope_scaling": {"type": "linear"}}, "rope_scaling None"),
    ({"attention_bias": True}, "attention_bias=True is not supported"),
    ({"mlp_bias": True}, "mlp_bias=True is not supported"),
    ({"hidden_act": "gelu"}, "hidden_act='gelu' is not supported"),
    ({"head_dim": 8}, "head_dim=8 is not supported: need hidden_size / num_attention_heads"),
    ({"model_type": "mistral"}, "model_type='mistral'"),
  ],
)
def test_config_from_hf_llama_refuses_other_variants(change, message):
  with pytest.raises(ValueError, match=message.replace("(", r"\(")):
    config_from_hf_llama({**HF_LLAMA, **change})
