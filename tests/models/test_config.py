"""TransformerConfig: each bad value names its field, value and rule; named constructors' sizes."""

import dataclasses

import jax
import pytest
from flax import nnx

from tfmr_jax.models import (
  GPT2,
  EncoderDecoderTransformer,
  ModelConfigError,
  TransformerConfig,
  count_params,
)

SMALL = dict(vocab_size=13, max_len=16, num_layers=2, d_model=12, num_heads=3)


@pytest.mark.parametrize(
  "field, value, rule",
  [
    ("num_heads", 5, "must divide d_model=12"),
    ("num_kv_heads", 2, "must divide num_heads=3 (grouped-query attention)"),
    ("vocab_size", 0, "must be a positive int"),
    ("max_len", 2.0, "must be a positive int"),
    ("num_layers", True, "must be a positive int"),
    ("d_ff", -3, "must be a positive int or None"),
    ("num_outputs", 0, "must be a positive int or None"),
    ("dropout", 1.0, "must be a rate in [0, 1)"),
    ("norm", "sandwich", "must be one of ('post', 'pre')"),
    ("positions", "rotary", "must be one of ('learned', 'sinusoidal', 'rope', 'none')"),
    ("activation", "tanh", "must be one of ('relu', 'gelu', 'swiglu', 'geglu')"),
    ("norm_kind", "batchnorm", "must be one of ('layernorm', 'rmsnorm')"),
    ("rope_base", 1.0, "must be a number > 1"),
    ("rope_base", float("inf"), "must be a number > 1"),
    ("qk_norm", "yes", "must be a bool"),
    ("ln_eps", 0.0, "must be a number > 0"),
    ("init_std", -0.02, "must be a number > 0 or None"),
    ("use_bias", 1, "must be a bool"),
    (
      "attention_implementation",
      3,
      "must be None or one of ('reference', 'tiled', 'xla', 'cudnn')",
    ),
    ("share_embeddings", True, "needs tgt_vocab_size == vocab_size, got 7 and 13"),
    ("attention_dropout", 1.0, "must be a rate in [0, 1)"),
    ("attention_dropout", -0.1, "must be a rate in [0, 1)"),
    ("window", 0, "must be a positive int or None"),
    ("window", 2.5, "must be a positive int or None"),
    ("window", True, "must be a positive int or None"),
    (
      "window_pattern",
      "local,full",
      "must be comma-separated names from ('local', 'global'), e.g. 'local,global'",
    ),
    (
      "window_pattern",
      "local, global",
      "must be comma-separated names from ('local', 'global'), e.g. 'local,global'",
    ),
    ("window_pattern", "global", "names no 'local' layer; for no window set window=None"),
    ("window_pattern", "local,global", "marks local layers, but window=None: set a window"),
  ],
)
def test_errors_name_field_value_and_rule(field, value, rule):
  extra = {"tgt_vocab_size": 7} if field == "share_embeddings" else {}
  if field == "window_pattern" and "set a window" not in rule:
    extra = {"window": 4}
  with pytest.raises(ModelConfigError) as error:
    TransformerConfig(**{**SMALL, **extra, field: value})
  assert (error.value.field, error.value.value, error.value.rule) == (field, value, rule)
  assert str(error.value) == f"{field}={value!r}: {rule}"
  assert isinstance(error.value, ValueError)


def test_resolved_defaults_frozen_and_keyword_only():
  config = TransformerConfig(**SMALL)
  assert (config.d_ff, config.tgt_vocab_size, config.num_decoder_layers) == (48, 13, 2)
  assert TransformerConfig(**SMALL, d_ff=5, tgt_vocab_size=7, num_decoder_layers=1).d_ff == 5
  with pytest.raises(dataclasses.FrozenInstanceError):
    config.d_model = 24
  with pytest.raises(TypeError):
    TransformerConfig(13, 16, 2, 12, 3)
  with pytest.raises(TypeError, match="config must be a TransformerConfig, got dict"):
    GPT2(SMALL, rngs=nnx.Rngs(0))


def test_gpt2_124m_counts_exactly_without_allocating():
  config = TransformerConfig.gpt2_124m()
  assert (config.num_layers, config.num_heads, config.d_model, config.max_len) == (
    12,
    12,
    768,
    1024,
  )
  assert (config.vocab_size, config.d_ff, config.norm, config.positions) == (
    50257,
    3072,
    "pre",
    "learned",
  )
  assert (config.activation, config.ln_eps, config.tie_output) == ("gelu", 1e-5, True)
  model = nnx.eval_shape(lambda: GPT2(config, rngs=nnx.Rngs(0)))
  assert isinstance(model.token_embedding.embed.embedding.get_value(), jax.ShapeDtypeStruct)
  assert count_params(model) == 124_439_808


def test_paper_base_counts_by_hand():
  config = TransformerConfig.paper_base(vocab_size=37000, max_len=256)
  assert (config.num_layers, config.num_decoder_layers, config.d_model) == (6, 6, 512)
  assert (config.num_heads, config.d_ff, config.dropout) == (8, 2048, 0.1)
  assert (config.norm, config.positions, config.activation) == ("post", "sinusoidal", "relu")
  model = nnx.eval_shape(lambda: EncoderDecoderTransformer(config, rngs=nnx.Rngs(0)))
  D, F, V, L = 512, 2048, 37000, 6
  attention, ffn, norm = 4 * (D * D + D), (D * F + F) + (F * D + D), 2 * D
  layers = L * (attention + ffn + 2 * norm) + L * (2 * attention + ffn + 3 * norm)
  # separate source and target tables, an untied output layer
  assert count_params(model) == 2 * V * D + layers + (D * V + V)


def test_attention_fn_and_attention_implementation_are_exclusive():
  config = TransformerConfig.gpt(**SMALL, attention_implementation="tiled")
  with pytest.raises(ValueError, match="choose one"):
    GPT2(config, attention_fn=lambda *a, **k: None, rngs=nnx.Rngs(0))


def test_attention_dropout_needs_an_implementation_that_has_it():
  with pytest.raises(ModelConfigError) as error:
    TransformerConfig(**SMALL, attention_dropout=0.1, attention_implementation="xla")
  assert str(error.value) == (
    "attention_dropout=0.1: attention_implementation='xla' has no attention dropout; with a "
    "rate > 0 use None or one of ('reference', 'tiled')"
  )
  TransformerConfig(**SMALL, attention_dropout=0.1, attention_implementation="tiled")
  TransformerConfig(**SMALL, attention_dropout=0.0, attention_implementation="xla")


@pytest.mark.parametrize(
  "window, pattern, windows",
  [
    (None, "local", (None,) * 5),
    (3, "local", (3,) * 5),
    (3, "local,global", (3, None, 3, None, 3)),
    (3, "global,local,local", (None, 3, 3, None, 3)),
  ],
)
def test_layer_windows_repeat_the_pattern(window, pattern, windows):
  config = TransformerConfig(**SMALL, window=window, window_pattern=pattern)
  assert config.layer_windows(5) == windows
