"""Attention dropout: its keep-mask, drawn block by block from a counter-based key.

Dimension key: B batch, N query heads, T query length, S key/value length, Q query-block
length, C key-block length, I = ceil(T / Q) query blocks, J = ceil(S / C) key blocks.

Inverted dropout on the normalized attention probabilities: each entry is kept with
probability 1 - rate and the kept ones are scaled by 1 / (1 - rate), so the expected
output is the undropped one.

The keep-mask of a call is a pure function of (rng, rate, the shape and a block grid of
Q x C): for sequence b, query block i and key block j it is

    bernoulli(fold_in(fold_in(fold_in(rng, b), i), j), 1 - rate, [N, Q, C])

so any block can be drawn on its own, in any order, as often as wanted. The tiled
kernel draws block (i, j) where it visits it, in the forward and again in the
backward, and never stores a mask; the reference path draws the whole [B, N, T, S]
mask the same way (`keep_mask`), so for one key and one block grid the two drop
exactly the same entries. Folding the sequence in first lets a batch run in chunks.
"""

import jax
import jax.numpy as jnp
import numpy as np


def as_key(rng):
  """A typed jax random key: a typed key stays, a raw uint32[2] key is wrapped."""
  if jnp.issubdtype(rng.dtype, jax.dtypes.prng_key):
    return rng
  return jax.random.wrap_key_data(rng)


def sequence_keys(rng, B: int):
  """[B] typed keys, fold_in(rng, b): one key per sequence of the batch."""
  return jax.vmap(jax.random.fold_in, in_axes=(None, 0))(as_key(rng), jnp.arange(B))


def keep_block_BNQC(keys_B, i, j, *, N: int, Q: int, C: int, rate: float):
  """bool [B, N, Q, C]: which probabilities of block (i, j) dropout keeps (True = kept).

  i, j: the query and key block indices (ints or traced int scalars).
  """

  def one_sequence(key):
    key = jax.random.fold_in(jax.random.fold_in(key, i), j)
    return jax.random.bernoulli(key, 1.0 - rate, (N, Q, C))

  return jax.vmap(one_sequence)(keys_B)


def keep_mask(rng, *, B: int, N: int, T: int, S: int, rate: float, blocks: tuple[int, int]):
  """bool [B, N, T, S]: the whole keep-mask, block by block as `keep_block_BNQC` draws it.

  blocks: (Q, C), the block grid (the tiled kernel's, for the same entries as it).
  """
  Q, C = blocks
  I, J = -(-T // Q), -(-S // C)
  keys_B = sequence_keys(rng, B)
  i_IJ, j_IJ = np.meshgrid(np.arange(I), np.arange(J), indexing="ij")

  def block(i, j):
    return keep_block_BNQC(keys_B, i, j, N=N, Q=Q, C=C, rate=rate)

  keep_IJBNQC = jax.vmap(jax.vmap(block))(jnp.asarray(i_IJ), jnp.asarray(j_IJ))
  keep_BNIQJC = keep_IJBNQC.transpose(2, 3, 0, 4, 1, 5)
  return keep_BNIQJC.reshape(B, N, I * Q, J * C)[:, :, :T, :S]


def apply_dropout(probs, keep, rate: float):
  """probs * keep / (1 - rate): inverted dropout, float32 (keep broadcasts to probs)."""
  return jnp.where(keep, probs * jnp.float32(1.0 / (1.0 - rate)), 0.0)
