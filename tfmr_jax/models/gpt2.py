"""GPT-2 (Radford et al. 2019): a decoder-only, causal, pre-LN Transformer language model.

Dimension key: B batch, T positions, D model dim, N heads, K kv heads, H head dim,
F feed-forward dim, V vocabulary, L layers, P context length.

    x = Dropout(wte[tokens] + wpe[positions])
    L x [x = x + Dropout(CausalSelfAttention(LN(x))); x = x + Dropout(MLP_gelu_tanh(LN(x)))]
    logits = LN_f(x) @ wte^T          (LM head tied to the token embedding)

Like the reference, every linear layer has a bias and LayerNorm epsilon is 1e-5.
Unlike it, there is no dropout on the attention probabilities (the attention op
has none); the 124M release used dropout only in training anyway.

`from_hf` loads Hugging Face GPT-2 weights (a safetensors state dict) without torch.
"""

import dataclasses
from collections.abc import Callable, Mapping

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from tfmr_jax.models.encoder import check_tokens
from tfmr_jax.nn import EncoderBlock, KVCache, PositionEmbedding, TokenEmbedding, make_dropout
from tfmr_jax.nn.dropout import check_dropout
from tfmr_jax.ops import attention
from tfmr_jax.ops.guards import check_positive


@dataclasses.dataclass(frozen=True)
class GPT2Config:
  """GPT-2 hyper-parameters; defaults are the 124M model. d_ff None means 4 * d_model."""

  vocab_size: int = 50257
  max_len: int = 1024
  num_layers: int = 12
  num_heads: int = 12
  d_model: int = 768
  d_ff: int | None = None
  dropout: float = 0.0
  ln_eps: float = 1e-5
  num_kv_heads: int | None = None

  def __post_init__(self):
    for name in ("vocab_size", "max_len", "num_layers", "num_heads", "d_model"):
      check_positive(name, getattr(self, name))
    if self.d_model % self.num_heads:
      raise ValueError(f"num_heads={self.num_heads} must divide d_model={self.d_model}")
    if self.d_ff is None:
      object.__setattr__(self, "d_ff", 4 * self.d_model)
    check_positive("d_ff", self.d_ff)
    if self.num_kv_heads is not None:
      check_positive("num_kv_heads", self.num_kv_heads)
      if self.num_heads % self.num_kv_heads:
        raise ValueError(f"num_kv_heads={self.num_kv_heads} must divide num_heads={self.num_heads}")
    check_dropout("dropout", self.dropout)
    if not (isinstance(self.ln_eps, (int, float)) and self.ln_eps > 0):
      raise ValueError(f"ln_eps must be a positive float, got {self.ln_eps!r}")


class GPT2(nnx.Module):
  """GPT-2 language model. `gpt(tokens_BT)` -> logits_BTV; `extend` runs with a KV cache.

  Initialisation follows GPT-2/nanoGPT: weights normal(0.02), the projections that
  write into the residual stream normal(0.02 / sqrt(2 L)), biases 0.
  """

  def __init__(self, config: GPT2Config, *, attention_fn: Callable = attention, rngs: nnx.Rngs):
    if not isinstance(config, GPT2Config):
      raise TypeError(f"config must be a GPT2Config, got {type(config).__name__}")
    c = self.config = config
    init = nnx.initializers.normal(0.02)
    out_init = nnx.initializers.normal(0.02 / (2 * c.num_layers) ** 0.5)
    self.token_embedding = TokenEmbedding(c.vocab_size, c.d_model, embedding_init=init, rngs=rngs)
    self.position_embedding = PositionEmbedding(
      c.max_len, c.d_model, kind="learned", embedding_init=init, rngs=rngs
    )
    self.embedding_dropout = make_dropout(c.dropout, rngs)
    self.layers = nnx.List(
      [
        EncoderBlock(
          c.d_model,
          c.num_heads,
          c.d_ff,
          num_kv_heads=c.num_kv_heads,
          dropout=c.dropout,
          norm="pre",
          activation="gelu",
          ln_eps=c.ln_eps,
          attention_fn=attention_fn,
          kernel_init=init,
          out_kernel_init=out_init,
          rngs=rngs,
        )
        for _ in range(c.num_layers)
      ]
    )
    self.final_norm = nnx.LayerNorm(c.d_model, epsilon=c.ln_eps, use_fast_variance=False, rngs=rngs)

  def _embed(self, tokens_BT, offset):
    T = tokens_BT.shape[1]
    x_BTD = self.token_embedding(tokens_BT) + self.position_embedding(offset + jnp.arange(T))[None]
    return self.embedding_dropout(x_BTD)

  def __call__(self, tokens_BT, *, return_attention: bool = False):
    """Causal LM logits [B, T, V] (float32); with return_attention also a list of [B, N, T, T]."""
    check_tokens("tokens_BT", tokens_BT, self.config.max_len)
    x_BTD = self._embed(tokens_BT, 0)
    maps = []
    for layer in self.layers:
      x_BTD, attn_BNTT, _ = layer(x_BTD, is_causal=True, return_attention=return_attention)
      maps.append(attn_BNTT)
    logits_BTV = self.token_embedding.attend(self.final_norm(x_BTD))
    return (logits_BTV, maps) if return_attention else logits_BTV

  def init_cache(
    self, batch_size: int, max_len: int | None = None, *, dtype=jnp.float32
  ) -> tuple[KVCache, ...]:
    """An empty KV cache, one `KVCache` per layer, for up to `max_len` (default P) positions."""
    max_len = self.config.max_len if max_len is None else max_len
    check_positive("max_len", max_len)
    if max_len > self.config.max_len:
      raise ValueError(f"cache max_len={max_len} exceeds the model's max_len={self.config.max_len}")
    return tuple(
      layer.attention.init_cache(batch_size, max_len, dtype=dtype) for layer in self.layers
    )

  def extend(self, tokens_BT, cache: tuple[KVCache, ...]):
    """Run T new tokens after the cached ones: prefill (T = prompt) or one step (T = 1).

    Returns (logits_BTV, new cache); the same logits as the full forward pass
    over the whole sequence would give at these positions.
    """
    check_tokens("tokens_BT", tokens_BT, self.config.max_len)
    if len(cache) != len(self.layers):
      raise ValueError(f"cache has {len(cache)} layers, the model {len(self.layers)}")
    if tokens_BT.shape[1] > cache[0].max_len:
      raise ValueError(
        f"cannot extend by T={tokens_BT.shape[1]} tokens: the cache holds {cache[0].max_len}"
      )
    x_BTD = self._embed(tokens_BT, cache[0].length)
    new_cache = []
    for layer, layer_cache in zip(self.layers, cache, strict=True):
      x_BTD, _, layer_cache = layer(x_BTD, cache=layer_cache)
      new_cache.append(layer_cache)
    return self.token_embedding.attend(self.final_norm(x_BTD)), tuple(new_cache)


def count_params(model: nnx.Module) -> int:
  """Number of scalars in the model's nnx.Param variables (works on nnx.eval_shape models)."""
  return sum(int(np.prod(p.shape)) for p in jax.tree.leaves(nnx.state(model, nnx.Param)))


# ---------------------------------------------------------------------------------------------
# Hugging Face weights

_HF_ACTIVATIONS = ("gelu_new", "gelu_pytorch_tanh")  # both the tanh approximation
_HF_BUFFERS = ("attn.bias", "attn.masked_bias")  # causal-mask buffers in older checkpoints


def config_from_hf(hf_config: Mapping) -> GPT2Config:
  """GPT2Config from a Hugging Face GPT-2 `config.json` dict; rejects variants we do not model."""
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
  return GPT2Config(
    vocab_size=hf_config["vocab_size"],
    max_len=hf_config["n_positions"],
    num_layers=hf_config["n_layer"],
    num_heads=hf_config["n_head"],
    d_model=hf_config["n_embd"],
    d_ff=hf_config.get("n_inner"),
    dropout=0.0,
    ln_eps=float(hf_config.get("layer_norm_epsilon", 1e-5)),
  )


def _hf_shapes(c: GPT2Config) -> dict[str, tuple[int, ...]]:
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
  variable.set_value(jnp.asarray(array, jnp.float32))


def from_hf(
  state_dict: Mapping[str, np.ndarray], config: Mapping, *, attention_fn: Callable = attention
) -> GPT2:
  """A GPT2 holding Hugging Face GPT-2 weights.

  Args:
    state_dict: HF parameter names -> arrays, as `safetensors.numpy.load_file`
      returns them; names may carry a `transformer.` prefix; `lm_head.weight`, if
      present, must equal `wte.weight` (GPT-2's head is tied).
    config: the HF `config.json` as a dict.

  Raises ValueError naming the key on a missing or unexpected key, and naming the
  key and both shapes on a wrong shape.
  """
  c = config_from_hf(config)
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
