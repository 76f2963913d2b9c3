"""The PyTorch peer of the char-LM recipes: what a nanoGPT user trains instead.

COMMAND:  none of its own: experiments/bench_peer.py runs it in a child process
          (pip install -e ".[bench]" brings torch; the default install never does).

The same architecture as tfmr_jax's GPT (`TransformerConfig.gpt`), written in eager
PyTorch the way nanoGPT lays it out:

    x = Dropout(wte[tokens] + wpe[positions])
    L x [x = x + Dropout(Attention(LN(x))); x = x + Dropout(MLP_gelu_tanh(LN(x)))]
    logits = LN_f(x) @ wte^T          (LM head tied to the token embedding)

Attention runs through `F.scaled_dot_product_attention(is_causal=True)`, without dropout
on the probabilities (ours has none either). Query, key and value come from one fused
D -> 3D projection (nanoGPT's c_attn): the same parameters as our three D -> D ones.
Every linear layer has a bias, LayerNorm eps is 1e-5, weights start normal(0.02) and
the projections into the residual stream normal(0.02 / sqrt(2 L)), as ours.

The optimizer is the one `tfmr_jax.train.optim.build_optimizer` builds: global-norm
clipping, then AdamW whose weight decay applies to tensors of 2 or more dimensions
(matrices and both embeddings), not to biases and LayerNorm parameters; the learning
rate follows the same warmup-cosine schedule, set before every step. AdamW is torch's
fused one, the fastest it has here (nanoGPT asks for it where available).

Dimension key: B batch, T positions, N heads, H head dim, D model dim, F feed-forward
dim, V vocabulary, L layers.
"""

import math

import torch
import torch.nn.functional as F
from torch import nn


class CausalSelfAttention(nn.Module):
  def __init__(self, d_model: int, num_heads: int, dropout: float):
    super().__init__()
    if d_model % num_heads:
      raise ValueError(f"d_model={d_model} must be a multiple of num_heads={num_heads}")
    self.num_heads = num_heads
    self.qkv = nn.Linear(d_model, 3 * d_model)
    self.out = nn.Linear(d_model, d_model)
    self.dropout = nn.Dropout(dropout)

  def forward(self, x_BTD: torch.Tensor) -> torch.Tensor:
    B, T, D = x_BTD.shape
    N, H = self.num_heads, D // self.num_heads
    q_BTD, k_BTD, v_BTD = self.qkv(x_BTD).split(D, dim=2)
    q_BNTH, k_BNTH, v_BNTH = (t.view(B, T, N, H).transpose(1, 2) for t in (q_BTD, k_BTD, v_BTD))
    out_BNTH = F.scaled_dot_product_attention(q_BNTH, k_BNTH, v_BNTH, is_causal=True)
    out_BTD = out_BNTH.transpose(1, 2).reshape(B, T, D)
    return self.dropout(self.out(out_BTD))


class FeedForward(nn.Module):
  def __init__(self, d_model: int, d_ff: int, dropout: float):
    super().__init__()
    self.hidden = nn.Linear(d_model, d_ff)
    self.out = nn.Linear(d_ff, d_model)
    self.dropout = nn.Dropout(dropout)

  def forward(self, x_BTD: torch.Tensor) -> torch.Tensor:
    h_BTF = F.gelu(self.hidden(x_BTD), approximate="tanh")
    return self.dropout(self.out(h_BTF))


class Block(nn.Module):
  """Pre-LN: x + attention(LN(x)), then x + feed-forward(LN(x))."""

  def __init__(self, d_model: int, num_heads: int, d_ff: int, dropout: float):
    super().__init__()
    self.attention_norm = nn.LayerNorm(d_model, eps=1e-5)
    self.attention = CausalSelfAttention(d_model, num_heads, dropout)
    self.feed_forward_norm = nn.LayerNorm(d_model, eps=1e-5)
    self.feed_forward = FeedForward(d_model, d_ff, dropout)

  def forward(self, x_BTD: torch.Tensor) -> torch.Tensor:
    x_BTD = x_BTD + self.attention(self.attention_norm(x_BTD))
    return x_BTD + self.feed_forward(self.feed_forward_norm(x_BTD))


class GPT(nn.Module):
  """`gpt(tokens_BT)` -> logits_BTV (float32)."""

  def __init__(
    self,
    *,
    vocab_size: int,
    block_size: int,
    num_layers: int,
    num_heads: int,
    d_model: int,
    d_ff: int | None = None,
    dropout: float = 0.0,
    init_std: float = 0.02,
  ):
    super().__init__()
    d_ff = 4 * d_model if d_ff is None else d_ff
    self.token_embedding = nn.Embedding(vocab_size, d_model)
    self.position_embedding = nn.Embedding(block_size, d_model)
    self.dropout = nn.Dropout(dropout)
    self.layers = nn.ModuleList(Block(d_model, num_heads, d_ff, dropout) for _ in range(num_layers))
    self.final_norm = nn.LayerNorm(d_model, eps=1e-5)
    self._init(init_std, num_layers)

  def _init(self, std: float, num_layers: int) -> None:
    for module in self.modules():
      if isinstance(module, (nn.Linear, nn.Embedding)):
        nn.init.normal_(module.weight, std=std)
      if isinstance(module, nn.Linear):
        nn.init.zeros_(module.bias)
    for layer in self.layers:  # the projections that write into the residual stream
      for linear in (layer.attention.out, layer.feed_forward.out):
        nn.init.normal_(linear.weight, std=std / math.sqrt(2 * num_layers))

  def forward(self, tokens_BT: torch.Tensor) -> torch.Tensor:
    T = tokens_BT.shape[1]
    positions_T = torch.arange(T, device=tokens_BT.device)
    x_BTD = self.dropout(self.token_embedding(tokens_BT) + self.position_embedding(positions_T))
    for layer in self.layers:
      x_BTD = layer(x_BTD)
    return F.linear(self.final_norm(x_BTD), self.token_embedding.weight)  # tied head


def count_params(model: nn.Module) -> int:
  return sum(p.numel() for p in model.parameters())


def warmup_cosine(step: int, *, peak: float, warmup: int, total: int, end: float) -> float:
  """optax.warmup_cosine_decay_schedule(0, peak, warmup, total, end) at update `step`."""
  if step < warmup:
    return peak * step / warmup
  progress = min(step - warmup, total - warmup) / max(total - warmup, 1)
  return end + (peak - end) * 0.5 * (1.0 + math.cos(math.pi * progress))


def build_optimizer(model: nn.Module, *, b1: float, b2: float, eps: float, weight_decay: float):
  """AdamW with decay on tensors of 2 or more dimensions only (as build_optimizer's mask)."""
  params = list(model.parameters())
  groups = [
    {"params": [p for p in params if p.dim() >= 2], "weight_decay": weight_decay},
    {"params": [p for p in params if p.dim() < 2], "weight_decay": 0.0},
  ]
  # fused: torch's one-kernel AdamW, on CPU too; it ran 1.2x faster than the default
  # (per-tensor loop) on the cpu recipe here, so the peer gets it.
  return torch.optim.AdamW(groups, lr=0.0, betas=(b1, b2), eps=eps, fused=True)


class TrainStep:
  """One training step of `model`: forward, mean cross-entropy, backward, clip, AdamW."""

  def __init__(self, model: GPT, optimizer, *, schedule, grad_clip_norm: float):
    self.model, self.optimizer, self.schedule = model, optimizer, schedule
    self.grad_clip_norm = grad_clip_norm
    self.step = 0
    model.train()

  def __call__(self, inputs_BT: torch.Tensor, targets_BT: torch.Tensor) -> float:
    for group in self.optimizer.param_groups:
      group["lr"] = self.schedule(self.step)
    logits_BTV = self.model(inputs_BT)
    loss = F.cross_entropy(logits_BTV.flatten(0, 1), targets_BT.flatten())
    self.optimizer.zero_grad(set_to_none=True)
    loss.backward()
    if self.grad_clip_norm > 0:
      nn.utils.clip_grad_norm_(self.model.parameters(), self.grad_clip_norm)
    self.optimizer.step()
    self.step += 1
    return loss.item()


def attention_call(mode: str, q_BNTH, k_BNTH, v_BNTH, dout_BNTH, *, causal: bool):
  """A no-argument callable: SDPA forward (no autograd), or forward and (dq, dk, dv)."""
  if mode == "fwd":

    def forward():
      with torch.no_grad():
        return F.scaled_dot_product_attention(q_BNTH, k_BNTH, v_BNTH, is_causal=causal)

    return forward
  inputs = [t.detach().clone().requires_grad_(True) for t in (q_BNTH, k_BNTH, v_BNTH)]

  def forward_backward():
    out_BNTH = F.scaled_dot_product_attention(*inputs, is_causal=causal)
    return out_BNTH, torch.autograd.grad(out_BNTH, inputs, dout_BNTH)

  return forward_backward
