"""Hugging Face GPT-2 weights into a `GPT2`, without torch.

Dimension key: D model dim, F feed-forward dim, V vocabulary, P context length.

Hugging Face's Conv1D layers store weights [in, out], as nnx.Linear does, so kernels
copy over as they are; the fused `c_attn` [D, 3 D] splits into query, key and value.
"""

import dataclasses
from collections.abc import Callable, Mapping

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from tfmr_jax.models.config import TransformerConfig
from tfmr_jax.models.gpt2 import GPT2

_HF_ACTIVATIONS = ("gelu_new", "gelu_pytorch_tanh")  # both the tanh approximation
_HF_BUFFERS = ("attn.bias", "attn.masked_bias")  # causal-mask buffers in older checkpoints


def config_from_hf(hf_config: Mapping) -> TransformerConfig:
  """TransformerConfig of a Hugging Face GPT-2 `config.json` dict; rejects other variants."""
  for key in ("n_embd", "n_head", "n_layer", "n_positions", "vocab_size"):
    if key not in hf_config:
      raise ValueError(f"Hugging Face config lacks {key!r}")
  activation = hf_config.get("activation_function", "gelu_new")
  if activation not in _HF_ACTIVATIONS:
    raise ValueError(
      f"activation_function={activation!r} is not supported; GPT-2 uses one of {_HF_ACTIVATIONS}"
    )
  for key, wanted in (
    ("scale_attn_weights", True),
    ("scale_attn_by_inverse_layer_idx", False),
    ("add_cross_attention", False),
    ("tie_word_embeddings", True),
  ):
    if hf_config.get(key, wanted) != wanted:
      raise ValueError(
        f"Hugging Face config {key}={hf_config[key]!r} is not supported (need {wanted})"
      )
  return TransformerConfig.gpt(
    vocab_size=hf_config["vocab_size"],
    max_len=hf_config["n_positions"],
    num_layers=hf_config["n_layer"],
    num_heads=hf_config["n_head"],
    d_model=hf_config["n_embd"],
    d_ff=hf_config.get("n_inner"),
    dropout=0.0,
    ln_eps=float(hf_config.get("layer_norm_epsilon", 1e-5)),
  )


def _hf_shapes(c: TransformerConfig) -> dict[str, tuple[int, ...]]:
  """Every Hugging Face GPT-2 parameter name and its shape (Conv1D weights are [in, out])."""
  D, F = c.d_model, c.d_ff
  shapes = {
    "wte.weight": (c.vocab_size, D),
    "wpe.weight": (c.max_len, D),
    "ln_f.weight": (D,),
    "ln_f.bias": (D,),
  }
  for i in range(c.num_layers):
    p = f"h.{i}."
    shapes.update(
      {
        p + "ln_1.weight": (D,),
        p + "ln_1.bias": (D,),
        p + "attn.c_attn.weight": (D, 3 * D),
        p + "attn.c_attn.bias": (3 * D,),
        p + "attn.c_proj.weight": (D, D),
        p + "attn.c_proj.bias": (D,),
        p + "ln_2.weight": (D,),
        p + "ln_2.bias": (D,),
        p + "mlp.c_fc.weight": (D, F),
        p + "mlp.c_fc.bias": (F,),
        p + "mlp.c_proj.weight": (F, D),
        p + "mlp.c_proj.bias": (D,),
      }
    )
  return shapes


def _set(variable, array) -> None:
  """Load `array` into `variable` in the variable's own dtype (the config's param_dtype)."""
  variable.set_value(jnp.asarray(array, variable.get_value().dtype))


def from_hf(
  state_dict: Mapping[str, np.ndarray],
  config: Mapping,
  *,
  attention_fn: Callable | None = None,
  dtype: str = "float32",
  param_dtype: str = "float32",
) -> GPT2:
  """A GPT2 holding Hugging Face GPT-2 weights.

  Args:
    state_dict: HF parameter names -> arrays, as `safetensors.numpy.load_file`
      returns them; names may carry a `transformer.` prefix; `lm_head.weight`, if
      present, must equal `wte.weight` (GPT-2's head is tied).
    config: the HF `config.json` as a dict.
    dtype, param_dtype: the model's compute and parameter dtypes (`TransformerConfig`'s
      fields); the weights are cast to param_dtype as they load.

  Raises ValueError naming the key on a missing or unexpected key, naming the
  key and both shapes on a wrong shape, and naming the key and dtype on a weight
  that is not floating point.
  """
  c = dataclasses.replace(config_from_hf(config), dtype=dtype, param_dtype=param_dtype)
  weights = {k.removeprefix("transformer."): v for k, v in state_dict.items()}
  lm_head = weights.pop("lm_head.weight", None)
  expected = _hf_shapes(c)
  missing = sorted(set(expected) - set(weights))
  if missing:
    raise ValueError(f"state_dict is missing {len(missing)} key(s), first {missing[0]!r}")
  unexpected = sorted(
    k for k in set(weights) - set(expected) if not (k.startswith("h.") and k.endswith(_HF_BUFFERS))
  )
  if unexpected:
    raise ValueError(f"state_dict has unexpected key(s) {unexpected[:5]}")
  for key, shape in expected.items():
    got = tuple(np.shape(weights[key]))
    if got != shape:
      raise ValueError(f"state_dict[{key!r}] has shape {got}, expected {shape}")
    dtype = np.asarray(weights[key]).dtype
    if not np.issubdtype(dtype, np.floating):
      raise ValueError(
        f"state_dict[{key!r}] has dtype {dtype}; weights must be floating point (a cast from "
        "integers or bools would load silently wrong values)"
      )
  if lm_head is not None and not np.array_equal(lm_head, weights["wte.weight"]):
    raise ValueError("lm_head.weight differs from wte.weight; GPT2 ties its LM head to wte")

  model = nnx.eval_shape(lambda: GPT2(c, attention_fn=attention_fn, rngs=nnx.Rngs(0)))
  D = c.d_model
  _set(model.token_embedding.embed.embedding, weights["wte.weight"])
  _set(model.position_embedding.table.embedding, weights["wpe.weight"])
  _set(model.final_norm.scale, weights["ln_f.weight"])
  _set(model.final_norm.bias, weights["ln_f.bias"])
  for i, layer in enumerate(model.layers):
    p = f"h.{i}."
    pairs = [
      (layer.attention_residual.layer_norm, "ln_1"),
      (layer.attention.out, "attn.c_proj"),
      (layer.feed_forward_residual.layer_norm, "ln_2"),
      (layer.feed_forward.hidden, "mlp.c_fc"),
      (layer.feed_forward.out, "mlp.c_proj"),
    ]
    for module, name in pairs:
      weight_name = "scale" if isinstance(module, nnx.LayerNorm) else "kernel"
      _set(getattr(module, weight_name), weights[p + name + ".weight"])
      _set(module.bias, weights[p + name + ".bias"])
    qkv_weight, qkv_bias = weights[p + "attn.c_attn.weight"], weights[p + "attn.c_attn.bias"]
    for j, projection in enumerate(
      (layer.attention.query, layer.attention.key, layer.attention.value)
    ):
      _set(projection.kernel, qkv_weight[:, j * D : (j + 1) * D])
      _set(projection.bias, qkv_bias[j * D : (j + 1) * D])
  unset = [
    jax.tree_util.keystr(path)
    for path, leaf in jax.tree_util.tree_leaves_with_path(nnx.state(model))
    if isinstance(leaf, jax.ShapeDtypeStruct)
  ]
  if unset:
    raise RuntimeError(f"from_hf left parameters unset: {unset}")
  return model
