"""Hugging Face Llama weights (`LlamaForCausalLM`) into the decoder, without torch.

Dimension key: D model dim, N query heads, K kv heads, H head dim, F feed-forward dim,
V vocabulary, L layers.

The decoder (`GPT2`) configured by `TransformerConfig.llama(...)` is Llama: pre-RMSNorm,
SwiGLU, RoPE, grouped-query attention, no biases, an untied head. Two layout facts:

- torch `Linear` stores weights [out, in]; nnx.Linear kernels are [in, out], so every
  projection is transposed.
- Hugging Face applies RoPE in the "rotate_half" layout: within a head, dim i turns with
  dim i + H/2. `tfmr_jax.ops.apply_rope` turns interleaved pairs (2i, 2i + 1), each at the
  same frequency base^(-2i/H) as Hugging Face's pair i. So the importer permutes the rows
  of q_proj and k_proj within each head, HF dim i -> our dim 2i and HF dim i + H/2 -> our
  dim 2i + 1. Queries and keys get the same permutation, so q . k (and so the whole model)
  is unchanged; only the order of the channels inside a head differs.
"""

import dataclasses
from collections.abc import Callable, Mapping

import numpy as np
from flax import nnx

from tfmr_jax.models.config import TransformerConfig
from tfmr_jax.models.gpt2 import GPT2
from tfmr_jax.models.hf_checks import (
  HFConfigError,
  HFWeightsError,
  check_all_set,
  check_weights,
  set_weight,
)


def _refuse(key: str, value, rule: str):
  raise HFConfigError(f"Hugging Face Llama config {key}={value!r} is not supported: {rule}")


def _rope_theta(hf_config: Mapping) -> float:
  """RoPE's base from `rope_parameters` (transformers 5) or `rope_theta` (4); only the
  default rotary type, unscaled."""
  params = hf_config.get("rope_parameters")
  if params is None:
    scaling = hf_config.get("rope_scaling")
    if scaling is not None:
      _refuse("rope_scaling", scaling, "only unscaled RoPE (rope_scaling None) is built")
    return float(hf_config.get("rope_theta", 10000.0))
  rope_type = params.get("rope_type", params.get("type", "default"))
  if rope_type != "default":
    _refuse("rope_parameters", params, "only rope_type 'default' (unscaled RoPE) is built")
  if params.get("partial_rotary_factor", 1.0) != 1.0:
    _refuse("rope_parameters", params, "RoPE on the whole head dim only")
  return float(params.get("rope_theta", hf_config.get("rope_theta", 10000.0)))


def config_from_hf_llama(hf_config: Mapping) -> TransformerConfig:
  """TransformerConfig of a Hugging Face Llama `config.json` dict; refuses other variants
  (scaled RoPE, biases, an activation other than SiLU, a head dim other than D / N, ...)."""
  for key in (
    "hidden_size",
    "intermediate_size",
    "num_attention_heads",
    "num_hidden_layers",
    "max_position_embeddings",
    "vocab_size",
  ):
    if key not in hf_config:
      raise HFConfigError(f"Hugging Face Llama config lacks {key!r}")
  model_type = hf_config.get("model_type", "llama")
  if model_type != "llama":
    _refuse("model_type", model_type, "this importer reads 'llama' checkpoints only")
  act = hf_config.get("hidden_act", "silu")
  if act != "silu":
    _refuse("hidden_act", act, "Llama's SwiGLU gate is 'silu'")
  for key in ("attention_bias", "mlp_bias"):
    if hf_config.get(key, False):
      _refuse(key, hf_config[key], "Llama has no biases (need False)")
  if hf_config.get("attention_dropout", 0.0):
    _refuse("attention_dropout", hf_config["attention_dropout"], "need 0.0")
  D, N = hf_config["hidden_size"], hf_config["num_attention_heads"]
  head_dim = hf_config.get("head_dim")
  if head_dim is not None and head_dim * N != D:
    _refuse("head_dim", head_dim, f"need hidden_size / num_attention_heads = {D} / {N}")
  return TransformerConfig.llama(
    vocab_size=hf_config["vocab_size"],
    max_len=hf_config["max_position_embeddings"],
    num_layers=hf_config["num_hidden_layers"],
    d_model=D,
    num_heads=N,
    num_kv_heads=hf_config.get("num_key_value_heads") or N,
    d_ff=hf_config["intermediate_size"],
    rope_base=_rope_theta(hf_config),
    ln_eps=float(hf_config.get("rms_norm_eps", 1e-6)),
    tie_output=bool(hf_config.get("tie_word_embeddings", False)),
  )


def _hf_shapes(c: TransformerConfig) -> dict[str, tuple[int, ...]]:
  """Every Hugging Face Llama parameter name and its shape (torch Linear: [out, in])."""
  D, F, H = c.d_model, c.d_ff, c.d_model // c.num_heads
  NH, KH = c.num_heads * H, c.num_kv_heads * H
  shapes = {"model.embed_tokens.weight": (c.vocab_size, D), "model.norm.weight": (D,)}
  if not c.tie_output:
    shapes["lm_head.weight"] = (c.vocab_size, D)
  for i in range(c.num_layers):
    p = f"model.layers.{i}."
    shapes.update(
      {
        p + "input_layernorm.weight": (D,),
        p + "self_attn.q_proj.weight": (NH, D),
        p + "self_attn.k_proj.weight": (KH, D),
        p + "self_attn.v_proj.weight": (KH, D),
        p + "self_attn.o_proj.weight": (D, NH),
        p + "post_attention_layernorm.weight": (D,),
        p + "mlp.gate_proj.weight": (F, D),
        p + "mlp.up_proj.weight": (F, D),
        p + "mlp.down_proj.weight": (D, F),
      }
    )
  return shapes


def rotate_half_to_interleaved(weight_OD, head_dim: int):
  """Rows of a q_proj / k_proj weight [heads * H, D] permuted within each head from the
  rotate_half layout (dim i pairs with i + H/2) to interleaved pairs (2i, 2i + 1)."""
  half = head_dim // 2
  perm_H = np.stack([np.arange(half), np.arange(half) + half], axis=-1).reshape(head_dim)
  heads = weight_OD.shape[0] // head_dim
  return weight_OD.reshape(heads, head_dim, -1)[:, perm_H].reshape(weight_OD.shape)


def from_hf_llama(
  state_dict: Mapping[str, np.ndarray],
  hf_config: Mapping,
  *,
  attention_fn: Callable | None = None,
  dtype: str = "float32",
  param_dtype: str = "float32",
) -> GPT2:
  """The decoder configured as Llama, holding Hugging Face `LlamaForCausalLM` weights.

  Args:
    state_dict: HF parameter names -> arrays, as `safetensors.numpy.load_file` returns
      them (`model.*`, and `lm_head.weight` unless the config ties it, in which case an
      `lm_head.weight` present must equal the embedding).
    hf_config: the HF `config.json` as a dict (see `config_from_hf_llama`).
    dtype, param_dtype: the model's compute and parameter dtypes (`TransformerConfig`'s
      fields); the weights are cast to param_dtype as they load.

  Raises HFConfigError (a ValueError) for a config it does not build, and HFWeightsError
  (a ValueError) naming the key on a missing or unexpected key, the key and both shapes
  on a wrong shape, the key and dtype on a weight that is not floating point (bfloat16,
  as Llama checkpoints are stored, loads).
  """
  c = dataclasses.replace(config_from_hf_llama(hf_config), dtype=dtype, param_dtype=param_dtype)
  weights = dict(state_dict)
  if c.tie_output and "lm_head.weight" in weights:
    lm_head = weights.pop("lm_head.weight")
    if not np.array_equal(lm_head, weights.get("model.embed_tokens.weight")):
      raise HFWeightsError(
        "lm_head.weight differs from the embedding, but tie_word_embeddings=True"
      )
  check_weights(weights, _hf_shapes(c), ignored_suffixes=(".rotary_emb.inv_freq",))

  model = nnx.eval_shape(lambda: GPT2(c, attention_fn=attention_fn, rngs=nnx.Rngs(0)))
  H = c.d_model // c.num_heads
  set_weight(model.token_embedding.embed.embedding, weights["model.embed_tokens.weight"])
  set_weight(model.final_norm.scale, weights["model.norm.weight"])
  if not c.tie_output:
    set_weight(model.head.kernel, weights["lm_head.weight"].T)
  for i, layer in enumerate(model.layers):
    p = f"model.layers.{i}."
    set_weight(layer.attention_residual.layer_norm.scale, weights[p + "input_layernorm.weight"])
    set_weight(
      layer.feed_forward_residual.layer_norm.scale, weights[p + "post_attention_layernorm.weight"]
    )
    attention, ff = layer.attention, layer.feed_forward
    for linear, name in (
      (attention.query, "self_attn.q_proj"),
      (attention.key, "self_attn.k_proj"),
      (attention.value, "self_attn.v_proj"),
      (attention.out, "self_attn.o_proj"),
      (ff.gate, "mlp.gate_proj"),
      (ff.hidden, "mlp.up_proj"),
      (ff.out, "mlp.down_proj"),
    ):
      weight_OI = np.asarray(weights[p + name + ".weight"])
      if name in ("self_attn.q_proj", "self_attn.k_proj"):
        weight_OI = rotate_half_to_interleaved(weight_OI, H)
      set_weight(linear.kernel, weight_OI.T)
  check_all_set(model, importer="from_hf_llama")
  return model
