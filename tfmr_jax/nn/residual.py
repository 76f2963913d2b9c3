"""Residual connection with LayerNorm, in both placements.

    post-LN (the paper):  LayerNorm(x + Dropout(sublayer(x)))
    pre-LN  (GPT-2):      x + Dropout(sublayer(LayerNorm(x)))

Post-LN normalises the residual stream after every sublayer; it needs learning-rate
warm-up to train deep stacks. Pre-LN leaves the residual stream untouched, so
gradients reach early layers directly, and then needs a final LayerNorm after the
last block.
"""

from collections.abc import Callable

from flax import nnx

from tfmr_jax.nn.dropout import make_dropout
from tfmr_jax.ops.guards import check_positive

NORMS = ("post", "pre")


def check_norm(norm: str) -> None:
  if norm not in NORMS:
    raise ValueError(f"norm must be one of {NORMS} (LayerNorm placement), got {norm!r}")


class Residual(nnx.Module):
  """Wraps one sublayer: `residual(x_BTD, sublayer)` -> [B, T, D].

  `sublayer` maps [B, T, D] to [B, T, D], or to a tuple whose first entry is that
  output; the other entries (attention maps, caches) are passed back after the
  output: `x, attn = residual(x, lambda h: mha(h, return_attention=True))`.
  """

  def __init__(
    self,
    d_model: int,
    *,
    norm: str = "post",
    dropout: float = 0.0,
    epsilon: float = 1e-6,
    rngs: nnx.Rngs,
  ):
    check_positive("d_model", d_model)
    check_norm(norm)
    self.norm = norm
    self.layer_norm = nnx.LayerNorm(d_model, epsilon=epsilon, use_fast_variance=False, rngs=rngs)
    self.dropout = make_dropout(dropout, rngs)

  def __call__(self, x_BTD, sublayer: Callable):
    result = sublayer(self.layer_norm(x_BTD) if self.norm == "pre" else x_BTD)
    y_BTD, extras = (result[0], result[1:]) if isinstance(result, tuple) else (result, ())
    out_BTD = x_BTD + self.dropout(y_BTD)
    if self.norm == "post":
      out_BTD = self.layer_norm(out_BTD)
    return (out_BTD, *extras) if extras else out_BTD
