"""Token and position embeddings.

Dimension key: B batch, T positions, D model dim, V vocabulary, P position table length.

Logical axes: the token table [V, D] is (vocab, embed), a learned position table
[P, D] (positions, embed).

Weight tying goes through a method, `TokenEmbedding.attend(x_BTD) -> logits_BTV`,
never through a Variable shared between two modules. Lookups return `dtype` (the
compute dtype); `attend` computes the logits in float32 whatever it is.
"""

import jax.numpy as jnp
from flax import nnx

from tfmr_jax.nn.partitioning import EMBED, VOCAB, param_axes
from tfmr_jax.nn.partitioning import POSITIONS as POSITIONS_AXIS
from tfmr_jax.ops import sinusoidal_positions
from tfmr_jax.ops.guards import check_positive

# "rope" rotates queries and keys inside attention (`MultiHeadAttention(rope_base=...)`);
# at the embedding it adds nothing, like "none".
POSITIONS = ("learned", "sinusoidal", "rope", "none")


class TokenEmbedding(nnx.Module):
  """Token lookup [B, T] -> [B, T, D], times sqrt(D) when `scale` (the paper), and its transpose.

  With `scale`, the default init is normal with std D^-1/2, so scaled embeddings
  have unit variance and tied logits `attend(x)` stay of order 1.
  dtype: of the looked-up vectors (None: param_dtype's); param_dtype: of the table.
  """

  def __init__(
    self,
    vocab_size: int,
    d_model: int,
    *,
    scale: bool = False,
    embedding_init=None,
    dtype=None,
    param_dtype=jnp.float32,
    rngs: nnx.Rngs,
  ):
    check_positive("vocab_size", vocab_size)
    check_positive("d_model", d_model)
    if embedding_init is None:
      embedding_init = nnx.initializers.normal(d_model**-0.5 if scale else 1.0)
    self.vocab_size, self.d_model = vocab_size, d_model
    self.multiplier = float(d_model**0.5) if scale else 1.0
    self.embed = nnx.Embed(
      vocab_size,
      d_model,
      embedding_init=embedding_init,
      dtype=dtype,
      param_dtype=param_dtype,
      embedding_metadata=param_axes(VOCAB, EMBED),
      rngs=rngs,
    )

  def __call__(self, tokens_BT):
    if not jnp.issubdtype(jnp.result_type(tokens_BT), jnp.integer):
      raise TypeError(f"tokens must be integers, got dtype {jnp.result_type(tokens_BT)}")
    x_BTD = self.embed(tokens_BT)
    return x_BTD * self.multiplier if self.multiplier != 1.0 else x_BTD

  def attend(self, x_BTD):
    """Tied output layer: logits_BTV = x_BTD @ E^T (no scale, no bias), float32 always.

    Both operands are cast to float32 first, so a bfloat16 stream still gets float32
    logits (the loss's softmax over V is where low precision hurts most)."""
    E_VD = self.embed.embedding[...].astype(jnp.float32)
    return jnp.dot(x_BTD.astype(jnp.float32), E_VD.T)


class PositionEmbedding(nnx.Module):
  """Position vectors [T] or [B, T] int positions -> [.., D].

  kind: "learned" (a trained table of max_len rows), "sinusoidal" (the paper's
  fixed table, not a parameter), "rope" or "none" (zeros: nothing is added here;
  with "rope" the attention layers rotate queries and keys by position instead).
  dtype: of the returned vectors (None: float32, or the learned table's);
  param_dtype: of the learned table.
  """

  def __init__(
    self,
    max_len: int,
    d_model: int,
    *,
    kind: str = "sinusoidal",
    embedding_init=None,
    dtype=None,
    param_dtype=jnp.float32,
    rngs: nnx.Rngs,
  ):
    check_positive("max_len", max_len)
    check_positive("d_model", d_model)
    if kind not in POSITIONS:
      raise ValueError(f"positions must be one of {POSITIONS}, got {kind!r}")
    self.kind, self.max_len, self.d_model = kind, max_len, d_model
    self.dtype = jnp.float32 if dtype is None else dtype
    if kind == "learned":
      init = nnx.initializers.normal(0.02) if embedding_init is None else embedding_init
      self.table = nnx.Embed(
        max_len,
        d_model,
        embedding_init=init,
        dtype=dtype,
        param_dtype=param_dtype,
        embedding_metadata=param_axes(POSITIONS_AXIS, EMBED),
        rngs=rngs,
      )

  def __call__(self, positions):
    positions = jnp.asarray(positions)
    if self.kind == "learned":
      return self.table(positions)
    if self.kind in ("none", "rope"):
      return jnp.zeros((*positions.shape, self.d_model), self.dtype)
    table_PD = sinusoidal_positions(self.max_len, self.d_model)
    return jnp.take(table_PD, positions, axis=0).astype(self.dtype)
