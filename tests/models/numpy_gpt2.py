"""GPT-2's forward pass in plain NumPy from Hugging Face-named weights: an oracle that shares
no code with tfmr_jax, for checking both directions of the Hugging Face mapping.

Dimension key: B batch, T positions, D model dim, N heads, H head dim, V vocabulary.
"""

import numpy as np


def gpt2_logits(weights: dict, tokens_BT: np.ndarray, *, num_heads: int, ln_eps: float = 1e-5):
  """Logits [B, T, V] in float64 of GPT2LMHeadModel with `weights` (names with or without
  `transformer.`; Conv1D weights [in, out], y = x W + b; c_attn packs q, k, v)."""
  w = {k.removeprefix("transformer."): np.asarray(v, np.float64) for k, v in weights.items()}

  def ln(x, name):
    mu, var = x.mean(-1, keepdims=True), x.var(-1, keepdims=True)
    return (x - mu) / np.sqrt(var + ln_eps) * w[name + ".weight"] + w[name + ".bias"]

  def gelu(x):
    return 0.5 * x * (1 + np.tanh(np.sqrt(2 / np.pi) * (x + 0.044715 * x**3)))

  B, T = tokens_BT.shape
  D = w["wte.weight"].shape[1]
  N, H = num_heads, D // num_heads
  x = w["wte.weight"][tokens_BT] + w["wpe.weight"][:T]
  L = len({k.split(".")[1] for k in w if k.startswith("h.")})
  for i in range(L):
    p = f"h.{i}."
    qkv = ln(x, p + "ln_1") @ w[p + "attn.c_attn.weight"] + w[p + "attn.c_attn.bias"]
    q, k, v = (a.reshape(B, T, N, H) for a in np.split(qkv, 3, axis=-1))
    logits = np.einsum("BTNH,BSNH->BNTS", q, k) / np.sqrt(H)
    logits = np.where(np.tril(np.ones((T, T), bool)), logits, -np.inf)
    probs = np.exp(logits - logits.max(-1, keepdims=True))
    probs /= probs.sum(-1, keepdims=True)
    heads = np.einsum("BNTS,BSNH->BTNH", probs, v).reshape(B, T, D)
    x = x + heads @ w[p + "attn.c_proj.weight"] + w[p + "attn.c_proj.bias"]
    h = gelu(ln(x, p + "ln_2") @ w[p + "mlp.c_fc.weight"] + w[p + "mlp.c_fc.bias"])
    x = x + h @ w[p + "mlp.c_proj.weight"] + w[p + "mlp.c_proj.bias"]
  return ln(x, "ln_f") @ w["wte.weight"].T
