"""GPT-2 in Hugging Face's format, both ways, without torch: `config.json` and state dict.

Dimension key: D model dim, F feed-forward dim, V vocabulary, P context length.

Hugging Face's Conv1D layers store weights [in, out], as nnx.Linear does, so kernels
copy over as they are; the fused `c_attn` [D, 3 D] is query, key and value side by
side on its last axis. `_hf_variables` states that correspondence once, and both
directions read it. The LM head is tied to `wte`, so, as `save_pretrained` does, an
export leaves `lm_head.weight` out and an import accepts it only as a copy of `wte`.
"""

import dataclasses
from collections.abc import Callable, Mapping

import numpy as np
from flax import nnx

from tfmr_jax.models.config import ModelConfigError, TransformerConfig
from tfmr_jax.models.gpt2 import GPT2
from tfmr_jax.models.hf_checks import (
  HFConfigError,
  HFWeightsError,
  check_all_set,
  check_weights,
  set_weight,
)

MODEL_TYPE = "gpt2"
ARCHITECTURE = "GPT2LMHeadModel"
REQUIRED_KEYS = ("n_embd", "n_head", "n_layer", "n_positions", "vocab_size")
_HF_ACTIVATIONS = ("gelu_new", "gelu_pytorch_tanh")  # both the tanh approximation
_HF_BUFFERS = (".attn.bias", ".attn.masked_bias")  # causal-mask buffers in older checkpoints
_PREFIX = "transformer."  # GPT2LMHeadModel's names for the GPT2Model inside it
_EOS_50257 = 50256  # <|endoftext|>, bos and eos of GPT-2's own 50,257-token vocabulary

# TransformerConfig fields Hugging Face's GPT-2 can take any value of: the sizes, the
# rates and the precision; GPT2 ignores the last four. Every other field must have the
# value `TransformerConfig.gpt` gives it, so a field added later is refused until it is
# mapped here.
_FREE_FIELDS = (
  "vocab_size",
  "max_len",
  "num_layers",
  "d_model",
  "num_heads",
  "d_ff",
  "dropout",
  "attention_dropout",
  "ln_eps",
  "init_std",
  "attention_implementation",
  "dtype",
  "param_dtype",
  "num_outputs",
  "tgt_vocab_size",
  "num_decoder_layers",
  "share_embeddings",
)
_WHY = {
  "norm": "pre-LN, with a final LayerNorm ln_f",
  "positions": "learned position embeddings wpe",
  "activation": "GELU with the tanh approximation, gelu_new",
  "scale_embeddings": "token embeddings not scaled by sqrt(D)",
  "use_bias": "a bias in every projection",
  "tie_output": "the LM head tied to wte",
  "window": "every layer attends over the whole context",
}


def is_gpt2_config(hf_config: Mapping) -> bool:
  """True if `hf_config` has every key GPT-2's config needs (whatever its model_type)."""
  return all(key in hf_config for key in REQUIRED_KEYS)


def config_from_hf(hf_config: Mapping) -> TransformerConfig:
  """TransformerConfig of a Hugging Face GPT-2 `config.json` dict; rejects other variants.

  Raises HFConfigError naming the field, its value and the rule.
  """
  model_type = hf_config.get("model_type", MODEL_TYPE)
  if model_type != MODEL_TYPE:
    raise HFConfigError(f"model_type={model_type!r}: a GPT-2 config has model_type 'gpt2'")
  for key in REQUIRED_KEYS:
    if key not in hf_config:
      raise HFConfigError(f"Hugging Face config lacks {key!r}")
  activation = hf_config.get("activation_function", "gelu_new")
  if activation not in _HF_ACTIVATIONS:
    raise HFConfigError(
      f"activation_function={activation!r} is not supported; GPT-2 uses one of {_HF_ACTIVATIONS}"
    )
  for key, wanted in (
    ("scale_attn_weights", True),
    ("scale_attn_by_inverse_layer_idx", False),
    ("add_cross_attention", False),
    ("tie_word_embeddings", True),
  ):
    if hf_config.get(key, wanted) != wanted:
      raise HFConfigError(
        f"Hugging Face config {key}={hf_config[key]!r} is not supported (need {wanted})"
      )
  try:
    return TransformerConfig.gpt(
      vocab_size=hf_config["vocab_size"],
      max_len=hf_config["n_positions"],
      num_layers=hf_config["n_layer"],
      num_heads=hf_config["n_head"],
      d_model=hf_config["n_embd"],
      d_ff=hf_config.get("n_inner"),
      dropout=0.0,
      ln_eps=_number(hf_config, "layer_norm_epsilon", 1e-5),
      init_std=_number(hf_config, "initializer_range", 0.02),
    )
  except ModelConfigError as e:
    raise HFConfigError(f"Hugging Face config gives {e}") from None


def _number(hf_config: Mapping, key: str, default: float) -> float:
  value = hf_config.get(key, default)
  if isinstance(value, bool) or not isinstance(value, int | float):
    raise HFConfigError(f"Hugging Face config {key}={value!r} must be a number")
  return float(value)


def check_exportable(model) -> TransformerConfig:
  """The model's config, if Hugging Face's GPT-2 format can hold the model exactly.

  Raises ModelConfigError (a ValueError) naming the field, its value and the rule
  otherwise, and TypeError for a model that is not a GPT2.
  """
  if not isinstance(model, GPT2):
    raise TypeError(
      f"model is a {type(model).__name__}: Hugging Face's GPT-2 format holds only a GPT2 "
      "(decoder-only) model"
    )
  c = model.config
  gpt = TransformerConfig.gpt(**{f: getattr(c, f) for f in _FREE_FIELDS})
  if c.num_kv_heads not in (None, c.num_heads):
    raise ModelConfigError(
      "num_kv_heads",
      c.num_kv_heads,
      f"Hugging Face's GPT-2 format holds only num_kv_heads=None or num_heads={c.num_heads} "
      "(one key/value head per query head)",
    )
  for field in dataclasses.fields(TransformerConfig):
    name = field.name
    if name in (*_FREE_FIELDS, "num_kv_heads") or getattr(c, name) == getattr(gpt, name):
      continue
    why = f" ({_WHY[name]})" if name in _WHY else ""
    raise ModelConfigError(
      name,
      getattr(c, name),
      f"Hugging Face's GPT-2 format holds only {name}={getattr(gpt, name)!r}{why}",
    )
  return c


def config_to_hf(c: TransformerConfig) -> dict:
  """The `config.json` dict that transformers loads as a GPT2LMHeadModel of config `c`.

  `c` must pass `check_exportable`. The dropout rate goes to resid_pdrop and
  embd_pdrop, attention_dropout to attn_pdrop.
  """
  eos = _EOS_50257 if c.vocab_size == 50257 else None
  return {
    "activation_function": "gelu_new",
    "add_cross_attention": False,
    "architectures": [ARCHITECTURE],
    "attn_pdrop": float(c.attention_dropout),
    "bos_token_id": eos,
    "dtype": c.param_dtype,
    "embd_pdrop": float(c.dropout),
    "eos_token_id": eos,
    "initializer_range": 0.02 if c.init_std is None else float(c.init_std),
    "layer_norm_epsilon": float(c.ln_eps),
    "model_type": MODEL_TYPE,
    "n_ctx": c.max_len,
    "n_embd": c.d_model,
    "n_head": c.num_heads,
    "n_inner": None if c.d_ff == 4 * c.d_model else c.d_ff,
    "n_layer": c.num_layers,
    "n_positions": c.max_len,
    "reorder_and_upcast_attn": False,
    "resid_pdrop": float(c.dropout),
    "scale_attn_by_inverse_layer_idx": False,
    "scale_attn_weights": True,
    "tie_word_embeddings": True,
    "use_cache": True,
    "vocab_size": c.vocab_size,
  }


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


def _hf_variables(model: GPT2) -> dict[str, tuple[nnx.Variable, ...]]:
  """Hugging Face GPT-2 name (without `transformer.`) -> the variables it holds, side by
  side on the last axis (one variable, or c_attn's query, key and value)."""
  variables = {
    "wte.weight": (model.token_embedding.embed.embedding,),
    "wpe.weight": (model.position_embedding.table.embedding,),
    "ln_f.weight": (model.final_norm.scale,),
    "ln_f.bias": (model.final_norm.bias,),
  }
  for i, layer in enumerate(model.layers):
    p, attention = f"h.{i}.", layer.attention
    qkv = (attention.query, attention.key, attention.value)
    variables[p + "attn.c_attn.weight"] = tuple(m.kernel for m in qkv)
    variables[p + "attn.c_attn.bias"] = tuple(m.bias for m in qkv)
    ln_1, ln_2 = layer.attention_residual.layer_norm, layer.feed_forward_residual.layer_norm
    ffn = layer.feed_forward
    for name, weight, bias in (
      ("ln_1", ln_1.scale, ln_1.bias),
      ("attn.c_proj", attention.out.kernel, attention.out.bias),
      ("ln_2", ln_2.scale, ln_2.bias),
      ("mlp.c_fc", ffn.hidden.kernel, ffn.hidden.bias),
      ("mlp.c_proj", ffn.out.kernel, ffn.out.bias),
    ):
      variables[p + name + ".weight"], variables[p + name + ".bias"] = (weight,), (bias,)
  return variables


def from_hf_gpt2(
  state_dict: Mapping[str, np.ndarray],
  hf_config: Mapping,
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
    hf_config: the HF `config.json` as a dict.
    dtype, param_dtype: the model's compute and parameter dtypes (`TransformerConfig`'s
      fields); the weights are cast to param_dtype as they load.

  Raises HFConfigError for a config GPT-2 cannot take, and HFWeightsError naming the
  key on a missing or unexpected key, the key and both shapes on a wrong shape, the
  key and dtype on a weight that is not floating point.
  """
  c = dataclasses.replace(config_from_hf(hf_config), dtype=dtype, param_dtype=param_dtype)
  weights = {k.removeprefix(_PREFIX): v for k, v in state_dict.items()}
  lm_head = weights.pop("lm_head.weight", None)
  check_weights(weights, _hf_shapes(c), ignored_suffixes=_HF_BUFFERS)
  if lm_head is not None and not np.array_equal(lm_head, weights["wte.weight"]):
    raise HFWeightsError("lm_head.weight differs from wte.weight; GPT2 ties its LM head to wte")

  model = nnx.eval_shape(lambda: GPT2(c, attention_fn=attention_fn, rngs=nnx.Rngs(0)))
  for name, variables in _hf_variables(model).items():
    parts = np.split(np.asarray(weights[name]), len(variables), axis=-1)
    for variable, part in zip(variables, parts, strict=True):
      set_weight(variable, part)
  check_all_set(model, importer="from_hf")
  return model


def to_hf_gpt2(model: GPT2) -> tuple[dict, dict[str, np.ndarray]]:
  """(config.json dict, state dict) of `model` as Hugging Face's GPT2LMHeadModel has them.

  The state dict names are `save_pretrained`'s (`transformer.wte.weight`, ...; no
  `lm_head.weight`, which is tied), the arrays in the model's param_dtype. Raises
  what `check_exportable` raises for a model the format cannot hold.
  """
  c = check_exportable(model)
  state_dict = {}
  for name, variables in _hf_variables(model).items():
    arrays = [np.asarray(v.get_value()) for v in variables]
    state_dict[_PREFIX + name] = arrays[0] if len(arrays) == 1 else np.concatenate(arrays, -1)
  return config_to_hf(c), state_dict
