"""Pure functions: attention, masks and position encodings. No Flax, no state.

`debug_checks` turns on value checks inside jit (see tfmr_jax.ops.debug).
"""

from tfmr_jax.ops.attention import attention, attention_weights
from tfmr_jax.ops.debug import debug_checks
from tfmr_jax.ops.masks import causal_mask, combine_masks, padding_mask, sliding_window_mask
from tfmr_jax.ops.positions import apply_rope, rope_frequencies, sinusoidal_positions

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
