"""The normalisation layers every module builds (LayerNorm or RMSNorm), and their placements.

Dimension key: B batch, T positions, D model dim (any last axis: a head dim H for QK-norm).

    layernorm:  (x - mean(x)) / sqrt(var(x) + eps) * scale + bias
    rmsnorm:    x / sqrt(mean(x^2) + eps) * scale          (no centring, no bias; Llama)

LayerNorm's variance is computed as mean((x - mean)^2), not mean(x^2) - mean^2 (Flax's
fast variance), so float32 statistics match PyTorch's LayerNorm; GPT-2 parity needs it.

With a bfloat16 compute `dtype`, Flax's LayerNorm and RMSNorm still compute their
statistics and the normalisation in float32 (`_compute_stats` promotes to at least
float32) and round only the output to `dtype`; `tests/nn/test_precision.py` checks it.
Both keep their gain in a parameter named `scale`; scale and bias have the logical axis
name `norm` (also over H in QK-norm).
"""

import jax.numpy as jnp
from flax import nnx

from tfmr_jax.nn.partitioning import NORM, param_axes

NORMS = ("post", "pre")  # placements
NORM_KINDS = ("layernorm", "rmsnorm")


def check_norm(norm: str) -> None:
  """Raise ValueError unless `norm` names a norm placement."""
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
    scale_metadata=param_axes(NORM),
    bias_metadata=param_axes(NORM),
    rngs=rngs,
  )


def rms_norm(
  d_model: int, *, epsilon: float, dtype=None, param_dtype=jnp.float32, rngs: nnx.Rngs
) -> nnx.RMSNorm:
  """RMSNorm over the last axis D, scale 1: [B, T, D] -> [B, T, D] in `dtype`; mean(x^2)
  in float32 at least."""
  return nnx.RMSNorm(
    d_model,
    epsilon=epsilon,
    dtype=dtype,
    param_dtype=param_dtype,
    scale_metadata=param_axes(NORM),
    rngs=rngs,
  )


def make_norm(
  kind: str,
  d_model: int,
  *,
  epsilon: float,
  dtype=None,
  param_dtype=jnp.float32,
  rngs: nnx.Rngs,
) -> nnx.LayerNorm | nnx.RMSNorm:
  """The norm named by `kind` ("layernorm" or "rmsnorm") over a last axis of size d_model."""
  if kind not in NORM_KINDS:
    raise ValueError(f"norm_kind must be one of {NORM_KINDS}, got {kind!r}")
  build = layer_norm if kind == "layernorm" else rms_norm
  return build(d_model, epsilon=epsilon, dtype=dtype, param_dtype=param_dtype, rngs=rngs)
