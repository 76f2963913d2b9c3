"""Does a trained layer's attention logit depend on t - s only? Shift every position and see.

Dimension key: B batch, W window positions, D model dim, N heads, H head dim.

The pre-softmax logit of query t and key s in the first layer, q_t . k_s / sqrt(H), is
computed from a model's own modules: the embedding at int positions (the learned or
sinusoidal vector added there; nothing for RoPE), the layer's sublayer input (its
norm, pre-norm), the attention's query and key projections, and for RoPE
`tfmr_jax.ops.apply_rope` at those positions with the layer's own base. Shifting
every position by the same offset k leaves t - s unchanged, so with RoPE the logits
must not move (float round-off), while an absolute encoding changes them.
"""

import jax.numpy as jnp
import numpy as np

from tfmr_jax.ops import apply_rope


def first_layer_logits(model, tokens_BW, positions_W):
  """[B, N, W, W] float32 pre-softmax logits of `model`'s first self-attention layer.

  model: an encoder or GPT stack (`embed`, `layers`); tokens_BW int ids placed at
  int positions_W. With RoPE the queries and keys are rotated by positions_W.
  """
  positions_W = jnp.asarray(positions_W, jnp.int32)
  x_BWD = model.embed(jnp.asarray(tokens_BW), positions_W[None])
  layer = model.layers[0]
  attention = layer.attention
  if attention.query_norm is not None:
    raise ValueError("first_layer_logits does not apply QK-norm; use a model without qk_norm")
  h_BWD = layer.attention_residual.sublayer_input(x_BWD)
  B, W, _ = h_BWD.shape
  N, K, H = attention.num_heads, attention.num_kv_heads, attention.head_dim
  q_BWNH = attention.query(h_BWD).reshape(B, W, N, H).astype(jnp.float32)
  k_BWKH = attention.key(h_BWD).reshape(B, W, K, H).astype(jnp.float32)
  if attention.rope_base is not None:
    q_BWNH = apply_rope(q_BWNH, positions_W, base=attention.rope_base)
    k_BWKH = apply_rope(k_BWKH, positions_W, base=attention.rope_base)
  k_BWNH = jnp.repeat(k_BWKH, N // K, axis=2)
  return jnp.einsum("BTNH,BSNH->BNTS", q_BWNH, k_BWNH) / jnp.sqrt(jnp.float32(H))


def measure_shift(model, tokens_BW, offsets) -> dict:
  """How far the first layer's logits move when every position is shifted by k.

  Positions arange(W) against k + arange(W), per offset k in `offsets`. Returns
  "k" (the offsets), "max_change" (max |logits(k) - logits(0)|), "relative_change"
  (that over max |logits(0)|) and "logit_scale" (max |logits(0)|).
  """
  W = np.asarray(tokens_BW).shape[1]
  base_BNWW = first_layer_logits(model, tokens_BW, np.arange(W))
  scale = float(jnp.max(jnp.abs(base_BNWW)))
  out = {"k": list(offsets), "max_change": [], "relative_change": [], "logit_scale": scale}
  for k in offsets:
    shifted_BNWW = first_layer_logits(model, tokens_BW, k + np.arange(W))
    change = float(jnp.max(jnp.abs(shifted_BNWW - base_BNWW)))
    out["max_change"].append(change)
    out["relative_change"].append(change / scale)
  return out
