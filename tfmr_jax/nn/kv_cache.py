"""A key/value cache for autoregressive decoding: a pytree, passed in and returned.

Dimension key: B batch, S cache length (fixed), T new tokens, K kv heads, H head dim.

The cache has a fixed length S chosen up front, so one compiled step serves every
position. `length` counts the filled slots; all rows of a batch share it. `valid_BS`
marks the slots that hold a real token: a left-padded prompt appends its pad tokens as
invalid slots, which no query sees, so rows of different lengths share one cache.
"""

import dataclasses

import chex
import jax
import jax.numpy as jnp

from tfmr_jax.ops.debug import debug_enabled
from tfmr_jax.ops.guards import check_positive, check_rank


@jax.tree_util.register_dataclass
@dataclasses.dataclass(frozen=True)
class KVCache:
  """Keys and values of the first `length` positions of a sequence.

  Attributes:
    k_BSKH, v_BSKH: keys and values; slots at and after `length` hold zeros.
    length: int32 scalar, the number of filled slots.
    valid_BS: bool, True where a slot holds a real token (False: empty, or padding).
  """

  k_BSKH: jax.Array
  v_BSKH: jax.Array
  length: jax.Array
  valid_BS: jax.Array

  @classmethod
  def zeros(
    cls, batch_size: int, max_len: int, num_kv_heads: int, head_dim: int, *, dtype=jnp.float32
  ) -> "KVCache":
    """An empty cache with room for `max_len` positions."""
    for name, value in (
      ("batch_size", batch_size),
      ("max_len", max_len),
      ("num_kv_heads", num_kv_heads),
      ("head_dim", head_dim),
    ):
      check_positive(name, value)
    shape = (batch_size, max_len, num_kv_heads, head_dim)
    empty_BS = jnp.zeros((batch_size, max_len), jnp.bool_)
    return cls(jnp.zeros(shape, dtype), jnp.zeros(shape, dtype), jnp.zeros((), jnp.int32), empty_BS)

  @property
  def max_len(self) -> int:
    return self.k_BSKH.shape[1]

  def append(self, k_BTKH, v_BTKH, valid_BT=None) -> "KVCache":
    """Write T new positions at slots [length, length + T). Returns the new cache.

    valid_BT: bool, False for pad tokens (never seen as keys); default all real.

    Writing past the end raises ValueError where `length` is known (outside jit).
    Under jit XLA would clamp the slot and overwrite the last ones, so there it is
    checked only inside `tj.debug_checks()` (with `chex.chexify`); callers check
    lengths up front, as `tfmr_jax.decode` does.
    """
    check_rank("k_BTKH", k_BTKH, 4, "[B, T, K, H]")
    B, S, K, H = self.k_BSKH.shape
    if k_BTKH.shape != v_BTKH.shape or k_BTKH.shape[0] != B or k_BTKH.shape[2:] != (K, H):
      raise ValueError(
        f"new keys {k_BTKH.shape} and values {v_BTKH.shape} must both be [B={B}, T, K={K}, H={H}]"
      )
    T = k_BTKH.shape[1]
    if T > S:
      raise ValueError(f"cannot append T={T} positions to a cache of length S={S}")
    rule = f"cannot append T={T} positions to a cache of length S={S} holding"
    if not isinstance(self.length, jax.core.Tracer):
      if int(self.length) + T > S:
        raise ValueError(f"{rule} {int(self.length)}: it would run past its end")
    elif debug_enabled():
      chex.assert_trees_all_equal(
        self.length + T <= S, jnp.asarray(True), custom_message=f"{rule} too many"
      )
    start = (0, self.length, 0, 0)
    k_BSKH = jax.lax.dynamic_update_slice(self.k_BSKH, k_BTKH.astype(self.k_BSKH.dtype), start)
    v_BSKH = jax.lax.dynamic_update_slice(self.v_BSKH, v_BTKH.astype(self.v_BSKH.dtype), start)
    if valid_BT is None:
      valid_BT = jnp.ones((B, T), jnp.bool_)
    elif jnp.result_type(valid_BT) != jnp.bool_ or valid_BT.shape != (B, T):
      raise ValueError(
        f"valid_BT must be bool of shape {(B, T)}, got {jnp.result_type(valid_BT)} {valid_BT.shape}"
      )
    valid_BS = jax.lax.dynamic_update_slice(self.valid_BS, valid_BT, (0, self.length))
    return KVCache(k_BSKH, v_BSKH, self.length + T, valid_BS)

  def causal_mask(self, T: int, *, window: int | None = None):
    """[1, 1, T, S] bool for the T positions just appended: query t sees slot s <= p,
    p = length - T + t; with a `window` W only the W slots p - W < s <= p.

    Call after `append`; empty slots (s >= length) are never visible. The window counts
    slots, so the positions of a left-padded row's real tokens (the pads come first).
    """
    p_T1 = (self.length - T + jnp.arange(T))[:, None]
    s_1S = jnp.arange(self.max_len)[None, :]
    visible_TS = s_1S <= p_T1
    if window is not None:
      visible_TS &= s_1S > p_T1 - window
    return visible_TS[None, None]

  def key_mask(self):
    """[B, 1, 1, S] bool: the slots that hold a real token (not empty, not padding)."""
    return self.valid_BS[:, None, None, :]
