"""tfmr_jax: readable, tested, jit-compiled Transformers in JAX and Flax NNX.

import tfmr_jax as tj
out_BTNH = tj.attention(q_BTNH, k_BSKH, v_BSKH, mask=tj.causal_mask(T))
"""

import importlib

from tfmr_jax.ops import (
  apply_rope,
  attention,
  attention_weights,
  causal_mask,
  combine_masks,
  debug_checks,
  padding_mask,
  rope_frequencies,
  sinusoidal_positions,
  sliding_window_mask,
)

__version__ = "0.1.0"


def __getattr__(name):  # tj.nn, tj.models, tj.decode(_beam) load Flax on first use; tj.ops not
  if name in ("nn", "models", "decode", "decode_beam"):
    return importlib.import_module(f"tfmr_jax.{name}")
  raise AttributeError(f"module 'tfmr_jax' has no attribute {name!r}")


__all__ = [
  "apply_rope",
  "attention",
  "attention_weights",
  "causal_mask",
  "combine_masks",
  "debug_checks",
  "padding_mask",
  "rope_frequencies",
  "sinusoidal_positions",
  "sliding_window_mask",
]
