"""Residual connection with a norm (LayerNorm or RMSNorm), in both placements.

    post-LN (the paper):  LayerNorm(x + Dropout(sublayer(x)))
    pre-LN  (GPT-2):      x + Dropout(sublayer(LayerNorm(x)))

Post-LN normalises the residual stream after every sublayer; it needs learning-rate
warm-up to train deep stacks. Pre-LN leaves the residual stream untouched, so
gradients reach early layers directly, and then needs a final LayerNorm after the
last block. "LN" below is whichever norm `norm_kind` names.
"""

import jax.numpy as jnp
from flax import nnx

from tfmr_jax.nn.dropout import make_dropout
from tfmr_jax.nn.norms import check_norm, make_norm
from tfmr_jax.ops.guards import check_positive


class Residual(nnx.Module):
  """The LayerNorm, dropout and add around one sublayer [B, T, D] -> [B, T, D]:

      x_BTD = residual.add(x_BTD, sublayer(residual.sublayer_input(x_BTD)))

  Two methods rather than a `__call__` taking the sublayer: a call's arguments are
  arrays only (so `nnx.tabulate` can show them), and a sublayer that returns more
  than an array (a decoding step returns its cache too) fits in between.
  norm_kind: "layernorm" or "rmsnorm"; the attribute keeps the name `layer_norm`
  either way (one parameter path for every kind).
  dtype / param_dtype: the norm's output and parameter dtypes (its statistics
  are float32 whatever they are).
  """

  def __init__(
    self,
    d_model: int,
    *,
    norm: str = "post",
    norm_kind: str = "layernorm",
    dropout: float = 0.0,
    epsilon: float = 1e-6,
    dtype=None,
    param_dtype=jnp.float32,
    rngs: nnx.Rngs,
  ):
    check_positive("d_model", d_model)
    check_norm(norm)
    self.norm = norm
    self.layer_norm = make_norm(
      norm_kind, d_model, epsilon=epsilon, dtype=dtype, param_dtype=param_dtype, rngs=rngs
    )
    self.dropout = make_dropout(dropout, rngs)

  def sublayer_input(self, x_BTD):
    """What the sublayer reads: LayerNorm(x) with pre-LN, x itself with post-LN."""
    return self.layer_norm(x_BTD) if self.norm == "pre" else x_BTD

  def add(self, x_BTD, y_BTD):
    """The residual stream after the sublayer's output y_BTD: [B, T, D]."""
    out_BTD = x_BTD + self.dropout(y_BTD)
    return self.layer_norm(out_BTD) if self.norm == "post" else out_BTD
