"""Position-wise feed-forward network, plain or gated (GLU).

Dimension key: B batch, T positions, D model dim, F feed-forward dim.

    plain  (relu, gelu):    FFN(x) = act(x W1 + b1) W2 + b2
    gated  (swiglu, geglu): FFN(x) = (act(x Wg + bg) * (x W1 + b1)) W2 + b2

with act = SiLU for SwiGLU and GELU for GeGLU (Shazeer 2020, "GLU Variants Improve
Transformer"). The gated ones have a third matrix, so at equal parameters F is 2/3
of a plain FFN's (`gated_d_ff`).

Logical axes: W1, Wg [D, F] are (embed, mlp), W2 [F, D] (mlp, embed); the hidden
activation [B, T, F] is constrained to (act_batch, act_length, act_mlp).
"""

import math

import jax
import jax.numpy as jnp
from flax import nnx

from tfmr_jax.nn.dropout import make_dropout
from tfmr_jax.nn.partitioning import (
  ACT_BATCH,
  ACT_LENGTH,
  ACT_MLP,
  EMBED,
  MLP,
  constrain,
  param_axes,
)
from tfmr_jax.ops.flat_dot import flat_dot_general
from tfmr_jax.ops.guards import check_positive, check_rank


def _gelu_tanh(x):
  return jax.nn.gelu(x, approximate=True)


# "gelu" (and GeGLU's gate) is the tanh approximation, as in GPT-2 (Hugging Face's
# "gelu_new") and Gemma's GeGLU; SwiGLU's gate is SiLU, x * sigmoid(x) (Llama).
ACTIVATIONS = {
  "relu": jax.nn.relu,
  "gelu": _gelu_tanh,
  "swiglu": jax.nn.silu,
  "geglu": _gelu_tanh,
}
GATED = ("swiglu", "geglu")


def gated_d_ff(d_model: int) -> int:
  """F of a gated FFN by the usual 2/3 rule: 2/3 of 4 D, rounded up to a multiple of 8,
  so its three matrices hold about as many parameters as a plain FFN's two of 4 D."""
  return 8 * math.ceil(8 * d_model / 3 / 8)


class FeedForward(nnx.Module):
  """The FFN above, applied at each position. Returns [B, T, D].

  Args:
    d_model: D; d_ff: F.
    activation: "relu" (the paper), "gelu" (tanh approximation, GPT-2), "swiglu"
      (Llama) or "geglu" (gated; the gate is `gate`, the linear branch `hidden`).
    use_bias: biases b1, b2 (and bg).
    dropout: rate on the hidden activation (the paper's residual dropout lives in
      `Residual`; models leave this 0).
    kernel_init / out_kernel_init: initializers of the first (and gate) / second kernel.
    dtype: compute dtype (None: promoted from input and parameters);
    param_dtype: of the kernels and biases.
  """

  def __init__(
    self,
    d_model: int,
    d_ff: int,
    *,
    activation: str = "relu",
    use_bias: bool = True,
    dropout: float = 0.0,
    kernel_init=None,
    out_kernel_init=None,
    dtype=None,
    param_dtype=jnp.float32,
    rngs: nnx.Rngs,
  ):
    check_positive("d_model", d_model)
    check_positive("d_ff", d_ff)
    if activation not in ACTIVATIONS:
      raise ValueError(f"activation must be one of {sorted(ACTIVATIONS)}, got {activation!r}")
    self.activation = activation
    init = {} if kernel_init is None else {"kernel_init": kernel_init}
    out_init = init if out_kernel_init is None else {"kernel_init": out_kernel_init}
    precision = dict(
      dtype=dtype,
      param_dtype=param_dtype,
      use_bias=use_bias,
      rngs=rngs,
      dot_general=flat_dot_general,
    )
    into_F = dict(kernel_metadata=param_axes(EMBED, MLP), bias_metadata=param_axes(MLP))
    out_of_F = dict(kernel_metadata=param_axes(MLP, EMBED), bias_metadata=param_axes(EMBED))
    self.gate = (
      nnx.Linear(d_model, d_ff, **precision, **init, **into_F) if activation in GATED else None
    )
    self.hidden = nnx.Linear(d_model, d_ff, **precision, **init, **into_F)
    self.out = nnx.Linear(d_ff, d_model, **precision, **out_init, **out_of_F)
    self.dropout = make_dropout(dropout, rngs)

  def __call__(self, x_BTD):
    check_rank("x_BTD", x_BTD, 3, "[B, T, D]")
    act = ACTIVATIONS[self.activation]
    if self.gate is None:
      h_BTF = act(self.hidden(x_BTD))
    else:
      h_BTF = act(self.gate(x_BTD)) * self.hidden(x_BTD)
    h_BTF = constrain(h_BTF, ACT_BATCH, ACT_LENGTH, ACT_MLP)
    return self.out(self.dropout(h_BTF))
