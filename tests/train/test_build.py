"""The model a config describes: its kind, its sizes, and one switch for every attention layer."""

import jax
import numpy as np
import pytest
from flax import nnx

from tfmr_jax import config as C
from tfmr_jax.models import GPT2, EncoderDecoderTransformer, TransformerEncoder
from tfmr_jax.nn import MultiHeadAttention
from tfmr_jax.tasks import make_task
from tfmr_jax.train.build import build_model


def _small(task_name, **model):
  config = C.defaults(task_name)
  config.model.update(num_layers=2, d_model=24, num_heads=3, **model)
  config.task.test_size = 100
  config = C.validate(config)
  task = make_task(**config.task)
  return config, task


@pytest.mark.parametrize(
  "task_name,cls",
  [("reverse", TransformerEncoder), ("copy", EncoderDecoderTransformer), ("sort", GPT2)],
)
def test_kind_and_sizes_follow_the_config(task_name, cls):
  config, task = _small(task_name, d_ff=40)
  model = build_model(config, task, seed=0)
  assert isinstance(model, cls)
  attention = [m for _, m in nnx.iter_modules(model) if isinstance(m, MultiHeadAttention)]
  blocks = {"reverse": 2, "copy": 4, "sort": 2}[task_name]  # enc-dec: 2 encoder + 2 decoder
  assert len(attention) == blocks + (2 if task_name == "copy" else 0)  # + cross-attention
  assert all((m.num_heads, m.d_model) == (3, 24) for m in attention)
  widening = [
    p for _, p in nnx.iter_graph(model) if isinstance(p, nnx.Param) and p.shape == (24, 40)
  ]
  assert len(widening) == blocks  # one d_model -> d_ff kernel per block


def test_attention_implementation_reaches_every_layer_and_keeps_the_outputs():
  config, task = _small("sort")
  reference = build_model(config, task, seed=0)
  config.model.attention_implementation = "tiled"
  tiled = build_model(config, task, seed=0)
  fns = [m.attention_fn for _, m in nnx.iter_modules(tiled) if isinstance(m, MultiHeadAttention)]
  assert fns and all(fn.keywords == {"implementation": "tiled"} for fn in fns)
  tokens_BT = task.train_batch(0, 0, 4)["inputs"]
  reference.eval()
  tiled.eval()
  np.testing.assert_allclose(tiled(tokens_BT), reference(tokens_BT), rtol=1e-5, atol=1e-5)


def test_same_seed_same_model():
  config, task = _small("reverse")
  a, b = build_model(config, task, seed=3), build_model(config, task, seed=3)
  c = build_model(config, task, seed=4)
  leaves = lambda m: [np.asarray(x) for x in jax.tree.leaves(nnx.state(m, nnx.Param))]  # noqa: E731
  assert all(np.array_equal(x, y) for x, y in zip(leaves(a), leaves(b), strict=True))
  assert not all(np.array_equal(x, y) for x, y in zip(leaves(a), leaves(c), strict=True))


def test_the_model_config_follows_config_model_and_the_task():
  config, task = _small("copy", share_embeddings=True, dropout=0.1)
  model = build_model(config, task, seed=0)
  c = model.config
  assert (c.vocab_size, c.tgt_vocab_size, c.max_len) == (task.vocab_size,) * 2 + (task.max_len,)
  assert (c.num_layers, c.num_decoder_layers, c.d_ff, c.dropout) == (2, 2, 96, 0.1)
  assert c.share_embeddings and c.tie_output and model.output is None
  config, task = _small("sort")
  gpt = build_model(config, task, seed=0).config
  assert (gpt.norm, gpt.positions, gpt.activation, gpt.ln_eps, gpt.init_std) == (
    "pre",
    "learned",
    "gelu",
    1e-5,
    0.02,
  )
  assert gpt.tie_output and not gpt.scale_embeddings
  config, task = _small("reverse")
  assert build_model(config, task, seed=0).config.num_outputs == task.vocab_size
