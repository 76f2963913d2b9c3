"""LayerNorm as every module builds it, and the two placements a residual can put it in.

Dimension key: B batch, T positions, D model dim.

Variance is computed as mean((x - mean)^2), not mean(x^2) - mean^2 (Flax's fast
variance), so float32 statistics match PyTorch's LayerNorm; GPT-2 parity needs it.

With a bfloat16 compute `dtype`, Flax's LayerNorm still computes the mean, the
variance and the normalisation in float32 (its `_compute_stats` promotes to at least
float32) and rounds only the output to `dtype`; `tests/nn/test_precision.py` checks it.
"""

import jax.numpy as jnp
from flax import nnx

NORMS = ("post", "pre")


def check_norm(norm: str) -> None:
  """Raise ValueError unless `norm` names a LayerNorm placement."""
  if norm not in NORMS:
    raise ValueError(f"norm must be one of {NORMS} (LayerNorm placement), got {norm!r}")


def layer_norm(
  d_model: int, *, epsilon: float, dtype=None, param_dtype=jnp.float32, rngs: nnx.Rngs
) -> nnx.LayerNorm:
  """LayerNorm over the last axis D, scale 1, bias 0: [B, T, D] -> [B, T, D] in `dtype`
  (None: the promoted input and parameter dtype); statistics in float32 at least."""
  return nnx.LayerNorm(
    d_model,
    epsilon=epsilon,
    use_fast_variance=False,
    dtype=dtype,
    param_dtype=param_dtype,
    rngs=rngs,
  )
