"""Position-wise feed-forward network: Linear(D -> F), activation, Linear(F -> D).

Dimension key: B batch, T positions, D model dim, F feed-forward dim.
"""

import jax
import jax.numpy as jnp
from flax import nnx

from tfmr_jax.nn.dropout import make_dropout
from tfmr_jax.ops.flat_dot import flat_dot_general
from tfmr_jax.ops.guards import check_positive, check_rank

# "gelu" is the tanh approximation, as in GPT-2 (Hugging Face's "gelu_new").
ACTIVATIONS = {
  "relu": jax.nn.relu,
  "gelu": lambda x: jax.nn.gelu(x, approximate=True),
}


class FeedForward(nnx.Module):
  """FFN(x) = act(x W1 + b1) W2 + b2, applied at each position. Returns [B, T, D].

  Args:
    d_model: D; d_ff: F.
    activation: "relu" (the paper) or "gelu" (tanh approximation, GPT-2).
    use_bias: biases b1 and b2.
    dropout: rate on the hidden activation (the paper's residual dropout lives in
      `Residual`; models leave this 0).
    kernel_init / out_kernel_init: initializers of the first / second kernel.
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
    self.hidden = nnx.Linear(d_model, d_ff, **precision, **init)
    self.out = nnx.Linear(d_ff, d_model, **precision, **out_init)
    self.dropout = make_dropout(dropout, rngs)

  def __call__(self, x_BTD):
    check_rank("x_BTD", x_BTD, 3, "[B, T, D]")
    h_BTF = self.dropout(ACTIVATIONS[self.activation](self.hidden(x_BTD)))
    return self.out(h_BTF)
