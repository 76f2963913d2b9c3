"""GPT-2 (Radford et al. 2019): a decoder-only, causal Transformer language model.

Dimension key: B batch, T positions, D model dim, V vocabulary, P context length.

With `TransformerConfig.gpt2_124m()` (or `.gpt(...)` at any size) it is GPT-2:

    x = Dropout(wte[tokens] + wpe[positions])
    L x [x = x + Dropout(CausalSelfAttention(LN(x))); x = x + Dropout(MLP_gelu_tanh(LN(x)))]
    logits = LN_f(x) @ wte^T          (LM head tied to the token embedding)

Like the reference, every linear layer has a bias and LayerNorm epsilon is 1e-5.
Its attn_pdrop (dropout on the attention probabilities) is `attention_dropout`, 0 by
default; the 124M release used dropout only in training anyway. Other configs
give other decoder-only models (post-LN, sinusoidal positions, an untied head), Llama
among them: `TransformerConfig.llama(...)` is pre-RMSNorm, SwiGLU, RoPE, grouped-query
attention, no biases, an untied head. Hugging Face weights (GPT-2 and Llama) load through
`tfmr_jax.models.from_hf`; a GPT-2-shaped model exports through `to_hf`.
"""

from collections.abc import Callable

import jax.numpy as jnp
from flax import nnx

from tfmr_jax.models.config import TransformerConfig
from tfmr_jax.models.parts import (
  check_tokens,
  constrain_logits,
  extend_layers,
  logits_head,
  run_layers,
)
from tfmr_jax.models.stack import EmbeddedStack
from tfmr_jax.nn import KVCache
from tfmr_jax.ops.guards import check_positive


class GPT2(EmbeddedStack):
  """Decoder-only LM. `gpt(tokens_BT)` -> logits_BTV; `extend` runs with a KV cache.

  Reads from `config`: vocab_size, max_len, num_layers, d_model, num_heads, num_kv_heads,
  d_ff, dropout, attention_dropout, window, window_pattern, norm, norm_kind, positions,
  rope_base, activation, qk_norm, ln_eps, scale_embeddings, use_bias, init_std,
  attention_implementation, tie_output, dtype, param_dtype. The logits are float32 whatever
  the compute dtype.
  `attention_fn` overrides the op every layer runs (e.g. a recording spy in tests).
  """

  def __init__(
    self, config: TransformerConfig, *, rngs: nnx.Rngs, attention_fn: Callable | None = None
  ):
    super().__init__(config, rngs=rngs, attention_fn=attention_fn)
    c = self.config
    self.head = None if c.tie_output else logits_head(c.vocab_size, c, rngs=rngs)

  def _logits(self, x_BTD):
    x_BTD = self.normed(x_BTD)
    head = self.token_embedding.attend if self.head is None else self.head
    return constrain_logits(head(x_BTD))

  def __call__(self, tokens_BT):
    """Causal LM logits [B, T, V] (float32): position t sees tokens[:t+1]."""
    check_tokens(
      "tokens_BT", tokens_BT, max_len=self.config.max_len, vocab_size=self.config.vocab_size
    )
    return self._logits(run_layers(self.layers, self.embed(tokens_BT), is_causal=True))

  def init_cache(
    self, batch_size: int, max_len: int | None = None, *, dtype=None
  ) -> tuple[KVCache, ...]:
    """An empty KV cache, one `KVCache` per layer, for up to `max_len` (default P) positions,
    in `dtype` (None: the config's compute dtype)."""
    dtype = jnp.dtype(self.config.dtype) if dtype is None else dtype
    max_len = self.config.max_len if max_len is None else max_len
    check_positive("max_len", max_len)
    if max_len > self.config.max_len:
      raise ValueError(f"cache max_len={max_len} exceeds the model's max_len={self.config.max_len}")
    return tuple(
      layer.attention.init_cache(batch_size, max_len, dtype=dtype) for layer in self.layers
    )

  def extend(self, tokens_BT, cache: tuple[KVCache, ...], *, valid_BT=None, positions_BT=None):
    """Run T new tokens after the cached ones: prefill (T = prompt) or one step (T = 1).

    Args:
      tokens_BT: int token ids.
      cache: from `init_cache` or the previous call.
      valid_BT: bool, True = real token (default all); pad tokens (a left-padded batch of
        prompts) are never seen as keys, by these positions or later ones.
      positions_BT: int positions (default: each row counts its real tokens, cached and
        new, from 0 at its first real token; pad tokens sit at 0).

    Returns (logits_BTV, new cache); at real tokens, the logits the full forward pass over
    that row's real tokens alone would give.
    """
    check_tokens(
      "tokens_BT", tokens_BT, max_len=self.config.max_len, vocab_size=self.config.vocab_size
    )
    if len(cache) != len(self.layers):
      raise ValueError(f"cache has {len(cache)} layers, the model {len(self.layers)}")
    B, T = tokens_BT.shape
    if T > cache[0].max_len:
      raise ValueError(f"cannot extend by T={T} tokens: the cache holds {cache[0].max_len}")
    if valid_BT is None:
      valid_BT = jnp.ones((B, T), jnp.bool_)
    if positions_BT is None:
      seen_B1 = jnp.sum(cache[0].valid_BS, axis=1, dtype=jnp.int32)[:, None]
      positions_BT = jnp.maximum(seen_B1 + jnp.cumsum(valid_BT, axis=1, dtype=jnp.int32) - 1, 0)
    x_BTD = self.embed(tokens_BT, positions_BT)
    x_BTD, cache = extend_layers(
      self.layers, x_BTD, cache, valid_BT=valid_BT, positions=positions_BT
    )
    return self._logits(x_BTD), cache
