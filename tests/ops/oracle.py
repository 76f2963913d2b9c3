"""NumPy oracles for attention and masks, written independently of tfmr_jax.ops."""

import numpy as np


def np_attention(q_BTNH, k_BSKH, v_BSKH, mask_BNTS=None, bias_BNTS=None, scale=None):
  """float64 NumPy attention with the fully-masked-row-is-zero rule. Returns [B, T, N, H]."""
  q, k, v = (np.asarray(a, np.float64) for a in (q_BTNH, k_BSKH, v_BSKH))
  B, T, N, H = q.shape
  S, K = k.shape[1], k.shape[2]
  scale = 1.0 / np.sqrt(H) if scale is None else scale
  out = np.zeros((B, T, N, H))
  for b in range(B):
    for n in range(N):
      kv = n // (N // K)
      logits = q[b, :, n] @ k[b, :, kv].T * scale
      if bias_BNTS is not None:
        logits = logits + np.broadcast_to(bias_BNTS, (B, N, T, S))[b, n]
      allowed = np.ones((T, S), bool)
      if mask_BNTS is not None:
        allowed = np.broadcast_to(mask_BNTS, (B, N, T, S))[b, n]
      for t in range(T):
        if not allowed[t].any():
          continue
        row = np.where(allowed[t], logits[t], -np.inf)
        p = np.exp(row - row.max())
        p /= p.sum()
        out[b, t, n] = p @ v[b, :, kv]
  return out


def np_causal(T, S):
  """[T, S] bool by the definition: query t sees key s iff s <= t + (S - T)."""
  return np.array([[s <= t + (S - T) for s in range(S)] for t in range(T)])


def np_window(T, S, window, causal):
  """[T, S] bool by the definition: query t stands at p = t + (S - T) and sees key s iff
  p - window < s <= p (causal), or |p - s| < window (not causal)."""
  allowed = np.zeros((T, S), bool)
  for t in range(T):
    p = t + S - T
    for s in range(S):
      allowed[t, s] = (p - window < s <= p) if causal else abs(p - s) < window
  return allowed


def jnp_attention(q_BTNH, k_BSKH, v_BSKH, allowed_BNTS):
  """Plain jnp softmax attention, for gradients by autodiff; rows with no key give zeros."""
  import jax
  import jax.numpy as jnp

  G = q_BTNH.shape[2] // k_BSKH.shape[2]
  k_BSNH, v_BSNH = (jnp.repeat(x, G, axis=2) for x in (k_BSKH, v_BSKH))
  logits_BNTS = jnp.einsum("BTNH,BSNH->BNTS", q_BTNH, k_BSNH) / np.sqrt(q_BTNH.shape[-1])
  allowed_BNTS = jnp.asarray(allowed_BNTS)
  probs_BNTS = jax.nn.softmax(jnp.where(allowed_BNTS, logits_BNTS, -1e30), axis=-1)
  probs_BNTS = jnp.where(allowed_BNTS, probs_BNTS, 0.0)
  return jnp.einsum("BNTS,BSNH->BTNH", probs_BNTS, v_BSNH)
