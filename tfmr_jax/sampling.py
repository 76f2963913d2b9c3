"""Choosing the next token from logits: greedy, temperature, top-k and top-p, one key per row.

Dimension key: B batch, V vocabulary, K top-k candidates.

Sampling order (as Hugging Face's): logits / temperature, then top-k, then top-p over
what is left. Row b's token at step i is drawn with `jax.random.fold_in(keys_B[b], i)`,
so a row samples the same tokens in a batch as alone. Pure functions, traceable.
"""

import jax
import jax.numpy as jnp

from tfmr_jax.ops.guards import check_rank


def row_keys(rng, B: int):
  """One typed key per row [B]: `jax.random.split(rng, B)` of one key, or `rng` if it is [B]."""
  if rng is None:
    rng = jax.random.key(0)  # greedy: never drawn from
  if not jax.dtypes.issubdtype(jnp.result_type(rng), jax.dtypes.prng_key):
    rng = jax.random.wrap_key_data(jnp.asarray(rng, jnp.uint32))  # a raw uint32 PRNGKey
  if rng.shape == ():
    return jax.random.split(rng, B)
  if rng.shape != (B,):
    raise ValueError(f"rng must be one key or one key per row, shape (B={B},), got {rng.shape}")
  return rng


def filter_logits(logits_BV, *, top_k: int | None = None, top_p=1.0):
  """float32 logits_BV with the tokens outside the top k and outside the nucleus set to -inf.

  top_k: a static int, the k most likely tokens (`jax.lax.top_k`, no full sort); None keeps
  all V. top_p: a float in (0, 1], traceable: of the tokens left, keep the most likely ones
  until their probability (softmax of these logits) reaches top_p; the most likely token is
  always kept, and top_p = 1 keeps every token exactly (then nothing is sorted). Ties with the
  last kept logit are kept.
  """
  check_rank("logits_BV", logits_BV, 2, "[B, V]")
  logits_BV = jnp.asarray(logits_BV, jnp.float32)
  V = logits_BV.shape[-1]
  if top_k is not None and top_k < V:
    top_BK = jax.lax.top_k(logits_BV, top_k)[0]  # descending
    logits_BV = jnp.where(logits_BV < top_BK[:, -1:], -jnp.inf, logits_BV)

    def descending():
      return top_BK
  else:

    def descending():
      return -jnp.sort(-logits_BV, axis=-1)

  def nucleus(logits_BV):
    sorted_BK = descending()
    probs_BK = jax.nn.softmax(sorted_BK, axis=-1)
    cumulative_BK = jnp.cumsum(probs_BK, axis=-1)  # the mass of the tokens before each:
    before_BK = jnp.concatenate([jnp.zeros_like(probs_BK[:, :1]), cumulative_BK[:, :-1]], axis=-1)
    kept_B1 = jnp.sum(before_BK < top_p, axis=-1, keepdims=True)  # at least 1: before_BK[0] = 0
    threshold_B1 = jnp.take_along_axis(sorted_BK, kept_B1 - 1, axis=-1)
    return jnp.where(logits_BV < threshold_B1, -jnp.inf, logits_BV)

  return jax.lax.cond(jnp.asarray(top_p) < 1, nucleus, lambda x_BV: x_BV, logits_BV)


def next_token(logits_BV, keys_B, step, temperature, top_p, *, greedy: bool, top_k):
  """Token ids [B]: argmax, or row b's sample with key fold_in(keys_B[b], step) from
  softmax(logits / temperature) filtered by `filter_logits(top_k, top_p)`."""
  if greedy:
    return jnp.argmax(logits_BV, axis=-1).astype(jnp.int32)
  logits_BV = filter_logits(logits_BV.astype(jnp.float32) / temperature, top_k=top_k, top_p=top_p)
  step_keys_B = jax.vmap(jax.random.fold_in, in_axes=(0, None))(keys_B, step)
  token_B = jax.vmap(jax.random.categorical)(step_keys_B, logits_BV)
  return token_B.astype(jnp.int32)
