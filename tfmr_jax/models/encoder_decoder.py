"""The encoder-decoder Transformer of "Attention Is All You Need" (Vaswani et al. 2017).

Dimension key: B batch, S source length, T target length, D model dim, N heads,
K kv heads, H head dim, V vocabulary.

    memory = Encoder(Dropout(E_src[src] * sqrt(D) + PE))                    (padding-masked)
    y = Dropout(E_tgt[tgt] * sqrt(D) + PE)
    M x [y = AddNorm(y, CausalSelfAttention(y)); y = AddNorm(y, CrossAttention(y, memory));
         y = AddNorm(y, FFN(y))]
    logits = y @ E_tgt^T (tied) or Linear(y)

Defaults are the paper's base model: D 512, 8 heads, FFN 2048, 6 + 6 layers, dropout 0.1.
Decoding (`init_cache` + `extend`) computes the cross-attention keys and values once
from the memory and caches the decoder's self-attention keys and values.
"""

import dataclasses
from collections.abc import Callable

import jax
import jax.numpy as jnp
from flax import nnx

from tfmr_jax.models.encoder import check_tokens, key_padding_mask
from tfmr_jax.nn import (
  DecoderBlock,
  EncoderBlock,
  KVCache,
  PositionEmbedding,
  TokenEmbedding,
  make_dropout,
)
from tfmr_jax.nn.residual import check_norm
from tfmr_jax.ops import attention
from tfmr_jax.ops.guards import check_positive, check_rank


@jax.tree_util.register_dataclass
@dataclasses.dataclass(frozen=True)
class Seq2SeqCache:
  """Decoder state for generation.

  Attributes:
    self_kv: one self-attention `KVCache` per decoder layer.
    cross_kv: one (k_BSKH, v_BSKH) pair per decoder layer, from the memory.
    cross_mask: [B, 1, 1, S] bool source-padding mask.
  """

  self_kv: tuple[KVCache, ...]
  cross_kv: tuple[tuple[jax.Array, jax.Array], ...]
  cross_mask: jax.Array


class EncoderDecoderTransformer(nnx.Module):
  """Encoder-decoder Transformer; `model(src_BS, tgt_BT)` -> logits_BTV by teacher forcing.

  Args:
    src_vocab_size, tgt_vocab_size: vocabularies.
    num_encoder_layers, num_decoder_layers, d_model, num_heads, d_ff: sizes.
    dropout: residual and embedding dropout.
    max_len: longest source and target.
    share_embeddings: one embedding for source and target (needs equal vocabularies).
    tie_output: output layer = target embedding transposed; default: share_embeddings
      (the paper shares all three matrices).
    norm, positions, activation, num_kv_heads, attention_fn, ln_eps, scale_embeddings:
      as in `TransformerEncoder`.
  """

  def __init__(
    self,
    *,
    src_vocab_size: int,
    tgt_vocab_size: int,
    num_encoder_layers: int = 6,
    num_decoder_layers: int = 6,
    d_model: int = 512,
    num_heads: int = 8,
    d_ff: int = 2048,
    dropout: float = 0.1,
    max_len: int,
    share_embeddings: bool = False,
    tie_output: bool | None = None,
    norm: str = "post",
    positions: str = "sinusoidal",
    activation: str = "relu",
    num_kv_heads: int | None = None,
    attention_fn: Callable = attention,
    ln_eps: float = 1e-6,
    scale_embeddings: bool = True,
    rngs: nnx.Rngs,
  ):
    check_positive("num_encoder_layers", num_encoder_layers)
    check_positive("num_decoder_layers", num_decoder_layers)
    check_positive("max_len", max_len)
    check_norm(norm)
    if share_embeddings and src_vocab_size != tgt_vocab_size:
      raise ValueError(
        f"share_embeddings needs src_vocab_size == tgt_vocab_size, got {src_vocab_size} "
        f"and {tgt_vocab_size}"
      )
    tie_output = share_embeddings if tie_output is None else tie_output
    self.max_len = max_len
    self.src_vocab_size, self.tgt_vocab_size = src_vocab_size, tgt_vocab_size

    def layer_norm():
      return nnx.LayerNorm(d_model, epsilon=ln_eps, use_fast_variance=False, rngs=rngs)

    block_args = dict(
      num_kv_heads=num_kv_heads,
      dropout=dropout,
      norm=norm,
      activation=activation,
      ln_eps=ln_eps,
      attention_fn=attention_fn,
      rngs=rngs,
    )
    self.src_embedding = TokenEmbedding(src_vocab_size, d_model, scale=scale_embeddings, rngs=rngs)
    self.tgt_embedding = (
      None
      if share_embeddings
      else TokenEmbedding(tgt_vocab_size, d_model, scale=scale_embeddings, rngs=rngs)
    )
    self.src_positions = PositionEmbedding(max_len, d_model, kind=positions, rngs=rngs)
    self.tgt_positions = PositionEmbedding(max_len, d_model, kind=positions, rngs=rngs)
    self.src_dropout = make_dropout(dropout, rngs)
    self.tgt_dropout = make_dropout(dropout, rngs)
    self.encoder_layers = nnx.List(
      [EncoderBlock(d_model, num_heads, d_ff, **block_args) for _ in range(num_encoder_layers)]
    )
    self.decoder_layers = nnx.List(
      [DecoderBlock(d_model, num_heads, d_ff, **block_args) for _ in range(num_decoder_layers)]
    )
    self.encoder_norm = layer_norm() if norm == "pre" else None
    self.decoder_norm = layer_norm() if norm == "pre" else None
    self.output = None if tie_output else nnx.Linear(d_model, tgt_vocab_size, rngs=rngs)

  @property
  def _tgt_embedding(self) -> TokenEmbedding:
    return self.src_embedding if self.tgt_embedding is None else self.tgt_embedding

  def encode(self, src_BS, src_valid_BS=None, *, return_attention: bool = False):
    """memory_BSD; with return_attention also a list over layers of [B, N, S, S]."""
    check_tokens("src_BS", src_BS, self.max_len)
    mask = key_padding_mask("src_valid_BS", src_valid_BS, src_BS)
    S = src_BS.shape[1]
    x_BSD = self.src_embedding(src_BS) + self.src_positions(jnp.arange(S))[None]
    x_BSD = self.src_dropout(x_BSD)
    maps = []
    for layer in self.encoder_layers:
      x_BSD, attn_BNSS, _ = layer(x_BSD, mask=mask, return_attention=return_attention)
      maps.append(attn_BNSS)
    if self.encoder_norm is not None:
      x_BSD = self.encoder_norm(x_BSD)
    return (x_BSD, maps) if return_attention else x_BSD

  def _decoder_stack(
    self, tgt_BT, offset, cross_kv, *, self_mask, is_causal, cross_mask, caches, return_attention
  ):
    T = tgt_BT.shape[1]
    y_BTD = self._tgt_embedding(tgt_BT) + self.tgt_positions(offset + jnp.arange(T))[None]
    y_BTD = self.tgt_dropout(y_BTD)
    maps, new_caches = [], []
    for layer, kv, cache in zip(self.decoder_layers, cross_kv, caches, strict=True):
      y_BTD, attn, cache = layer(
        y_BTD,
        kv,
        self_mask=self_mask,
        is_causal=is_causal,
        cross_mask=cross_mask,
        cache=cache,
        return_attention=return_attention,
      )
      maps.append(attn)
      new_caches.append(cache)
    if self.decoder_norm is not None:
      y_BTD = self.decoder_norm(y_BTD)
    logits_BTV = self._tgt_embedding.attend(y_BTD) if self.output is None else self.output(y_BTD)
    return logits_BTV, maps, tuple(new_caches)

  def decode(
    self,
    tgt_BT,
    memory_BSD,
    *,
    src_valid_BS=None,
    tgt_valid_BT=None,
    return_attention: bool = False,
  ):
    """Teacher-forced decoder: logits_BTV, position t seeing tgt[:t+1] and the whole memory.

    With return_attention also a list over layers of (self [B, N, T, T], cross [B, N, T, S]).
    """
    check_tokens("tgt_BT", tgt_BT, self.max_len)
    check_rank("memory_BSD", memory_BSD, 3, "[B, S, D]")
    # Target padding only: the causal rule comes from is_causal=True, without a [T, T] mask.
    self_mask = key_padding_mask("tgt_valid_BT", tgt_valid_BT, tgt_BT)
    cross_mask = None
    if src_valid_BS is not None:
      cross_mask = key_padding_mask("src_valid_BS", src_valid_BS, memory_BSD[..., 0])
    cross_kv = [layer.cross_attention.project_kv(memory_BSD) for layer in self.decoder_layers]
    logits_BTV, maps, _ = self._decoder_stack(
      tgt_BT,
      0,
      cross_kv,
      self_mask=self_mask,
      is_causal=True,
      cross_mask=cross_mask,
      caches=[None] * len(self.decoder_layers),
      return_attention=return_attention,
    )
    return (logits_BTV, maps) if return_attention else logits_BTV

  def __call__(
    self, src_BS, tgt_BT, src_valid_BS=None, tgt_valid_BT=None, *, return_attention: bool = False
  ):
    """Teacher forcing: logits_BTV for decoder inputs tgt_BT (already shifted right).

    With return_attention also a dict {"encoder": [...], "decoder": [(self, cross), ...]}.
    """
    encoded = self.encode(src_BS, src_valid_BS, return_attention=return_attention)
    memory_BSD = encoded[0] if return_attention else encoded
    decoded = self.decode(
      tgt_BT,
      memory_BSD,
      src_valid_BS=src_valid_BS,
      tgt_valid_BT=tgt_valid_BT,
      return_attention=return_attention,
    )
    if not return_attention:
      return decoded
    return decoded[0], {"encoder": encoded[1], "decoder": decoded[1]}

  def init_cache(self, memory_BSD, src_valid_BS=None, *, max_len: int) -> Seq2SeqCache:
    """Decoder state for up to `max_len` target positions; cross K/V computed here, once."""
    check_rank("memory_BSD", memory_BSD, 3, "[B, S, D]")
    check_positive("max_len", max_len)
    if max_len > self.max_len:
      raise ValueError(f"cache max_len={max_len} exceeds the model's max_len={self.max_len}")
    B, S, _ = memory_BSD.shape
    if src_valid_BS is None:
      cross_mask = jnp.ones((B, 1, 1, S), jnp.bool_)
    else:
      cross_mask = key_padding_mask("src_valid_BS", src_valid_BS, memory_BSD[..., 0])
    return Seq2SeqCache(
      self_kv=tuple(
        layer.self_attention.init_cache(B, max_len, dtype=memory_BSD.dtype)
        for layer in self.decoder_layers
      ),
      cross_kv=tuple(layer.cross_attention.project_kv(memory_BSD) for layer in self.decoder_layers),
      cross_mask=cross_mask,
    )

  def extend(self, tgt_BT, cache: Seq2SeqCache):
    """Decode T new target tokens after the cached ones. Returns (logits_BTV, new cache)."""
    check_tokens("tgt_BT", tgt_BT, self.max_len)
    if tgt_BT.shape[1] > cache.self_kv[0].max_len:
      raise ValueError(
        f"cannot extend by T={tgt_BT.shape[1]} tokens: the cache holds {cache.self_kv[0].max_len}"
      )
    # Causal through the caches' own masks (over their filled slots).
    logits_BTV, _, self_kv = self._decoder_stack(
      tgt_BT,
      cache.self_kv[0].length,
      cache.cross_kv,
      self_mask=None,
      is_causal=False,
      cross_mask=cache.cross_mask,
      caches=cache.self_kv,
      return_attention=False,
    )
    return logits_BTV, dataclasses.replace(cache, self_kv=self_kv)
