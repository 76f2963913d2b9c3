"""What the three model families share: input checks, masks, the layer stack, its loops.

Dimension key: B batch, T positions, D model dim, L layers, V vocabulary (or outputs).

The layer loops constrain the residual stream x_BTD at every block's input and output
to the logical axes (act_batch, act_length, act_embed), and `constrain_logits` the
logits to (act_batch, act_length, None): no-ops unless a mesh and rules are set
(`tfmr_jax.nn.partitioning`).
"""

import functools
from collections.abc import Callable

import chex
import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from tfmr_jax.models.config import TransformerConfig
from tfmr_jax.nn import make_norm
from tfmr_jax.nn import state as model_state
from tfmr_jax.nn.partitioning import (
  ACT_BATCH,
  ACT_EMBED,
  ACT_LENGTH,
  EMBED,
  VOCAB,
  constrain,
  param_axes,
)
from tfmr_jax.ops import attention, padding_mask
from tfmr_jax.ops.debug import debug_enabled
from tfmr_jax.ops.guards import check_rank


def check_tokens(name: str, tokens, *, max_len: int, vocab_size: int) -> None:
  """Raise unless `tokens` is an int [B, T] array, 0 < T <= max_len, ids in [0, vocab_size).

  The ids are checked where their values are known (outside jit); under jit, inside
  `tj.debug_checks()` (a chex value check), else not at all: an id out of range
  would read another row of the embedding or NaN.
  """
  check_rank(name, tokens, 2, "[B, T]")
  if not jnp.issubdtype(jnp.result_type(tokens), jnp.integer):
    raise TypeError(f"{name} must be integer token ids, got dtype {jnp.result_type(tokens)}")
  T = tokens.shape[1]
  if not 0 < T <= max_len:
    raise ValueError(f"{name} has length {T}; it must lie in [1, max_len={max_len}]")
  check_token_range(name, tokens, vocab_size)


def check_token_range(name: str, tokens, vocab_size: int) -> None:
  """Raise ValueError unless every id of concrete `tokens` lies in [0, vocab_size).

  Traced ids are checked only inside `tj.debug_checks()` (with `chex.chexify`).
  """
  rule = f"{name} ids must lie in [0, vocab_size={vocab_size})"
  if isinstance(tokens, jax.core.Tracer):
    if debug_enabled():
      in_range = jnp.all((tokens >= 0) & (tokens < vocab_size))
      chex.assert_trees_all_equal(in_range, jnp.asarray(True), custom_message=rule)
    return
  ids = np.asarray(tokens)  # concrete: NumPy reads it, even while an outer jit traces
  if ids.size:
    low, high = int(ids.min()), int(ids.max())
    if low < 0 or high >= vocab_size:
      raise ValueError(f"{rule}, got min {low}, max {high}")


def key_padding_mask(name: str, valid, tokens):
  """valid [B, T] bool (True = real token) -> [B, 1, 1, T] mask, or None."""
  if valid is None:
    return None
  if jnp.result_type(valid) != jnp.bool_:
    raise TypeError(f"{name} must be bool (True = real token), got dtype {jnp.result_type(valid)}")
  if valid.shape != tokens.shape:
    raise ValueError(f"{name} has shape {valid.shape}, expected the token shape {tokens.shape}")
  return padding_mask(valid)


def count_params(model: nnx.Module) -> int:
  """Number of scalars in the model's nnx.Param variables (works on nnx.eval_shape models)."""
  return sum(int(np.prod(p.shape)) for p in jax.tree.leaves(model_state.params_of(model)))


def check_config(config) -> TransformerConfig:
  if not isinstance(config, TransformerConfig):
    raise TypeError(f"config must be a TransformerConfig, got {type(config).__name__}")
  return config


def attention_fn_of(config: TransformerConfig, attention_fn: Callable | None) -> Callable:
  """The op every layer runs: `attention_fn` if given, else `tj.attention` (with
  `implementation=` bound when the config names one)."""
  if attention_fn is not None:
    if config.attention_implementation is not None:
      raise ValueError(
        f"attention_fn was given and config.attention_implementation="
        f"{config.attention_implementation!r} too; choose one"
      )
    return attention_fn
  if config.attention_implementation is None:
    return attention
  return functools.partial(attention, implementation=config.attention_implementation)


def precision(config: TransformerConfig) -> dict:
  """{"dtype", "param_dtype"} of `config` as jnp dtypes: the keywords every module takes."""
  return {"dtype": jnp.dtype(config.dtype), "param_dtype": jnp.dtype(config.param_dtype)}


def logits_head(num_outputs: int, config: TransformerConfig, *, rngs) -> nnx.Linear:
  """An untied output layer [B, T, D] -> [B, T, O]: parameters in param_dtype, computed in
  float32 (a bfloat16 stream is upcast), so the logits are float32 whatever the dtype.
  A bias when config.use_bias. Its kernel [D, O] has the logical axes (embed, vocab)."""
  param_dtype = precision(config)["param_dtype"]
  return nnx.Linear(
    config.d_model,
    num_outputs,
    use_bias=config.use_bias,
    dtype=jnp.float32,
    param_dtype=param_dtype,
    kernel_metadata=param_axes(EMBED, VOCAB),
    bias_metadata=param_axes(VOCAB),
    rngs=rngs,
  )


def final_norm(config: TransformerConfig, *, rngs) -> nnx.Module | None:
  """The norm after the last layer of a pre-norm stack (`config.norm_kind`); None post-norm."""
  if config.norm != "pre":
    return None
  return make_norm(
    config.norm_kind, config.d_model, epsilon=config.ln_eps, **precision(config), rngs=rngs
  )


def embedding_init(config: TransformerConfig):
  """Token and learned-position initializer: GPT-2's normal(init_std), or the modules' own."""
  return None if config.init_std is None else nnx.initializers.normal(config.init_std)


def make_layers(block, num_layers: int, config: TransformerConfig, *, attention_fn, rngs):
  """nnx.List of `num_layers` blocks (EncoderBlock or DecoderBlock) as `config` describes;
  layer l's self-attention window is `config.layer_windows(num_layers)[l]`."""
  kernel_init = out_kernel_init = None
  if config.init_std is not None:  # GPT-2: residual-stream writers scaled by 1 / sqrt(2 L)
    kernel_init = nnx.initializers.normal(config.init_std)
    out_kernel_init = nnx.initializers.normal(config.init_std / (2 * num_layers) ** 0.5)
  return nnx.List(
    [
      block(
        config.d_model,
        config.num_heads,
        config.d_ff,
        num_kv_heads=config.num_kv_heads,
        dropout=config.dropout,
        norm=config.norm,
        norm_kind=config.norm_kind,
        activation=config.activation,
        ln_eps=config.ln_eps,
        use_bias=config.use_bias,
        rope_base=config.rope_base if config.positions == "rope" else None,
        qk_norm=config.qk_norm,
        window=window,
        attention_dropout=config.attention_dropout,
        attention_fn=attention_fn,
        kernel_init=kernel_init,
        out_kernel_init=out_kernel_init,
        **precision(config),
        rngs=rngs,
      )
      for window in config.layer_windows(num_layers)
    ]
  )


def constrain_stream(x_BTD):
  """The residual stream constrained to (act_batch, act_length, act_embed)."""
  return constrain(x_BTD, ACT_BATCH, ACT_LENGTH, ACT_EMBED)


def constrain_logits(logits_BTV):
  """Logits constrained to (act_batch, act_length, None): the vocabulary is not split."""
  return constrain(logits_BTV, ACT_BATCH, ACT_LENGTH, None)


def run_layers(layers, x_BTD, *per_layer, **options):
  """x_BTD through every layer: `layer(x_BTD, *that layer's per_layer entries, **options)`."""
  x_BTD = constrain_stream(x_BTD)
  for layer, *extras in zip(layers, *per_layer, strict=True):
    x_BTD = constrain_stream(layer(x_BTD, *extras, **options))
  return x_BTD


def extend_layers(layers, x_BTD, caches, *per_layer, **options):
  """Decoding through every layer: `layer.extend(x_BTD, cache, *extras, **options)`.

  Returns (x_BTD, the new caches as a tuple, one per layer)."""
  if len(caches) != len(layers):
    raise ValueError(f"cache has {len(caches)} layers, the model {len(layers)}")
  new_caches = []
  for layer, cache, *extras in zip(layers, caches, *per_layer, strict=True):
    x_BTD, cache = layer.extend(constrain_stream(x_BTD), cache, *extras, **options)
    new_caches.append(cache)
  return constrain_stream(x_BTD), tuple(new_caches)
