"""The encoder-decoder Transformer of "Attention Is All You Need" (Vaswani et al. 2017).

Dimension key: B batch, S source length, T target length, D model dim, N heads,
K kv heads, H head dim, V vocabulary.

    memory = TransformerEncoder(src)                                         (padding-masked)
    y = Dropout(E_tgt[tgt] * sqrt(D) + PE)
    M x [y = AddNorm(y, CausalSelfAttention(y)); y = AddNorm(y, CrossAttention(y, memory));
         y = AddNorm(y, FFN(y))]
    logits = y @ E_tgt^T (tied) or Linear(y)

`TransformerConfig.paper_base(...)` is the paper's base model: D 512, 8 heads, FFN 2048,
6 + 6 layers, dropout 0.1. Decoding (`init_cache` + `extend`) computes the
cross-attention keys and values once from the memory and caches the decoder's
self-attention keys and values.
"""

import dataclasses
from collections.abc import Callable

import jax
import jax.numpy as jnp
from flax import nnx

from tfmr_jax.models.config import TransformerConfig
from tfmr_jax.models.encoder import TransformerEncoder
from tfmr_jax.models.parts import (
  attention_fn_of,
  check_config,
  check_tokens,
  constrain_logits,
  embedding_init,
  extend_layers,
  final_norm,
  key_padding_mask,
  logits_head,
  make_layers,
  precision,
  run_layers,
)
from tfmr_jax.nn import (
  DecoderBlock,
  KVCache,
  PositionEmbedding,
  TokenEmbedding,
  make_dropout,
)
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

  Reads from `config` what `TransformerEncoder` reads (its num_outputs aside: the
  encoder here has no head), and tgt_vocab_size, num_decoder_layers,
  share_embeddings (one table for source and target) and tie_output (the output
  layer is the target embedding transposed; the paper shares all three matrices),
  dtype and param_dtype (the logits are float32 whatever the compute dtype).
  `attention_fn` overrides the op every layer runs.
  """

  def __init__(
    self, config: TransformerConfig, *, rngs: nnx.Rngs, attention_fn: Callable | None = None
  ):
    c = self.config = check_config(config)
    self.encoder = TransformerEncoder(
      dataclasses.replace(c, num_outputs=None), attention_fn=attention_fn, rngs=rngs
    )
    init, dtypes = embedding_init(c), precision(c)
    self.tgt_embedding = (
      None
      if c.share_embeddings
      else TokenEmbedding(
        c.tgt_vocab_size,
        c.d_model,
        scale=c.scale_embeddings,
        embedding_init=init,
        **dtypes,
        rngs=rngs,
      )
    )
    self.tgt_positions = PositionEmbedding(
      c.max_len, c.d_model, kind=c.positions, embedding_init=init, **dtypes, rngs=rngs
    )
    self.tgt_dropout = make_dropout(c.dropout, rngs)
    self.decoder_layers = make_layers(
      DecoderBlock,
      c.num_decoder_layers,
      c,
      attention_fn=attention_fn_of(c, attention_fn),
      rngs=rngs,
    )
    self.decoder_norm = final_norm(c, rngs=rngs)
    self.output = None if c.tie_output else logits_head(c.tgt_vocab_size, c, rngs=rngs)

  @property
  def _tgt_embedding(self) -> TokenEmbedding:
    return self.encoder.token_embedding if self.tgt_embedding is None else self.tgt_embedding

  def encode(self, src_BS, src_valid_BS=None):
    """memory_BSD: the encoder's final hidden states; src_valid_BS bool, True = real token."""
    check_tokens(
      "src_BS", src_BS, max_len=self.config.max_len, vocab_size=self.config.vocab_size
    )  # errors in this method's names
    key_padding_mask("src_valid_BS", src_valid_BS, src_BS)
    return self.encoder(src_BS, src_valid_BS)

  def _embed_target(self, tgt_BT, offset):
    T = tgt_BT.shape[1]
    y_BTD = self._tgt_embedding(tgt_BT) + self.tgt_positions(offset + jnp.arange(T))[None]
    return self.tgt_dropout(y_BTD)

  def _logits(self, y_BTD):
    if self.decoder_norm is not None:
      y_BTD = self.decoder_norm(y_BTD)
    head = self._tgt_embedding.attend if self.output is None else self.output
    return constrain_logits(head(y_BTD))

  def decode(self, tgt_BT, memory_BSD, *, src_valid_BS=None, tgt_valid_BT=None):
    """Teacher-forced decoder: logits_BTV, position t seeing tgt[:t+1] and the whole memory."""
    check_tokens(
      "tgt_BT", tgt_BT, max_len=self.config.max_len, vocab_size=self.config.tgt_vocab_size
    )
    check_rank("memory_BSD", memory_BSD, 3, "[B, S, D]")
    # Target padding only: the causal rule comes from is_causal=True, without a [T, T] mask.
    self_mask = key_padding_mask("tgt_valid_BT", tgt_valid_BT, tgt_BT)
    cross_mask = None
    if src_valid_BS is not None:
      cross_mask = key_padding_mask("src_valid_BS", src_valid_BS, memory_BSD[..., 0])
    cross_kv = [layer.cross_attention.project_kv(memory_BSD) for layer in self.decoder_layers]
    y_BTD = run_layers(
      self.decoder_layers,
      self._embed_target(tgt_BT, 0),
      cross_kv,
      self_mask=self_mask,
      is_causal=True,
      cross_mask=cross_mask,
    )
    return self._logits(y_BTD)

  def __call__(self, src_BS, tgt_BT, src_valid_BS=None, tgt_valid_BT=None):
    """Teacher forcing: logits_BTV for decoder inputs tgt_BT (already shifted right)."""
    memory_BSD = self.encode(src_BS, src_valid_BS)
    return self.decode(tgt_BT, memory_BSD, src_valid_BS=src_valid_BS, tgt_valid_BT=tgt_valid_BT)

  def init_cache(self, memory_BSD, src_valid_BS=None, *, max_len: int) -> Seq2SeqCache:
    """Decoder state for up to `max_len` target positions; cross K/V computed here, once."""
    check_rank("memory_BSD", memory_BSD, 3, "[B, S, D]")
    check_positive("max_len", max_len)
    if max_len > self.config.max_len:
      raise ValueError(f"cache max_len={max_len} exceeds the model's max_len={self.config.max_len}")
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
    check_tokens(
      "tgt_BT", tgt_BT, max_len=self.config.max_len, vocab_size=self.config.tgt_vocab_size
    )
    if tgt_BT.shape[1] > cache.self_kv[0].max_len:
      raise ValueError(
        f"cannot extend by T={tgt_BT.shape[1]} tokens: the cache holds {cache.self_kv[0].max_len}"
      )
    # Causal through the caches' own masks (over their filled slots).
    y_BTD, self_kv = extend_layers(
      self.decoder_layers,
      self._embed_target(tgt_BT, cache.self_kv[0].length),
      cache.self_kv,
      cache.cross_kv,
      cross_mask=cache.cross_mask,
    )
    return self._logits(y_BTD), dataclasses.replace(cache, self_kv=self_kv)
