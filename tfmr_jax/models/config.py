"""One architecture config for every model family: `TransformerConfig`.

Every family takes it as its first argument: `GPT2(config, rngs=...)`,
`TransformerEncoder(config, rngs=...)`, `EncoderDecoderTransformer(config, rngs=...)`.
Each field is an architecture choice; fields a family has no use for are ignored by
it (the docstring of each field says who reads it). All rules are checked here,
once, in `__post_init__`: a bad value raises `ModelConfigError` naming the field,
the value and the rule, e.g. `num_heads=5: must divide d_model=64`.

The family defaults are named constructors: `gpt2_124m()`, `gpt(...)` (the GPT-2
architecture at any size), `llama(...)` (the Llama architecture at any size) and
`paper_base(...)`. The defaults of the fields themselves are the paper's Transformer.
"""

import dataclasses
import math
import numbers

from tfmr_jax.nn.embeddings import POSITIONS
from tfmr_jax.nn.feed_forward import ACTIVATIONS, GATED, gated_d_ff
from tfmr_jax.nn.norms import NORM_KINDS, NORMS
from tfmr_jax.ops.implementations import DROPOUT_IMPLEMENTATIONS, IMPLEMENTATIONS

WINDOW_KINDS = ("local", "global")  # the names of `window_pattern`


class ModelConfigError(ValueError):
  """A `TransformerConfig` field broke a rule; `field`, `value` and `rule` say which."""

  def __init__(self, field: str, value, rule: str):
    self.field, self.value, self.rule = field, value, rule
    super().__init__(f"{field}={value!r}: {rule}")


@dataclasses.dataclass(frozen=True, kw_only=True)
class TransformerConfig:
  """The architecture of a Transformer. Sizes: V vocab, P max_len, L layers, D, N, K, F.

  Attributes:
    vocab_size: V; the source vocabulary of the encoder-decoder.
    max_len: P, the longest sequence (source or target) the model takes.
    num_layers: L, the layers of the stack; the encoder's in the encoder-decoder.
    d_model: D.  num_heads: N (must divide D).
    num_kv_heads: K for grouped-query attention (must divide N); None = N.
    d_ff: F, the feed-forward width; None = 4 D, or for a gated activation 2/3 of
      that rounded up to a multiple of 8 (resolved here).
    dropout: residual and embedding dropout rate (the paper's P_drop).
    attention_dropout: dropout rate on the attention probabilities (GPT-2's attn_pdrop),
      in every attention layer, in training mode only (`model.eval()` turns it off);
      needs an attention implementation that has it (None, "reference", "tiled").
    window: None (every query sees every key it may), or W, sliding-window attention in
      the self-attention of the layers `window_pattern` marks local: a causal query sees
      itself and the W - 1 positions before it; a non-causal one (the encoder) the band
      |t - s| < W. Cross-attention is never windowed.
    window_pattern: which layers `window` applies to: comma-separated "local" / "global"
      names, repeated over the layers from layer 0. "local" = every layer (Mistral);
      "local,global" alternates (Gemma 2); "local,local,local,local,local,global" is
      Gemma 3's 5:1. Global layers see the whole context. Read only with a window.
    norm: "post" (the norm after each residual add, the paper) or "pre" (before
      each sublayer, plus a final norm: GPT-2, Llama).
    norm_kind: "layernorm" or "rmsnorm" (no centring, no bias: Llama); every norm of
      the model, QK-norm's too.
    positions: "sinusoidal", "learned", "rope" (rotary: queries and keys rotated in
      every self-attention layer, nothing added to the embeddings) or "none".
    rope_base: RoPE's base (Llama 2: 10000; Llama 3: 500000); read with "rope" only.
    activation: "relu", "gelu" (tanh approximation), "swiglu" or "geglu" (gated:
      a third matrix, see `tfmr_jax.nn.FeedForward`).
    qk_norm: a norm (`norm_kind`) over the head dim of every query and key before
      RoPE and the dot product (one scale per layer for q, one for k).
    ln_eps: the norms' epsilon.
    scale_embeddings: token embeddings times sqrt(D) (the paper).
    use_bias: biases in the attention and feed-forward projections.
    init_std: None = Flax's default initializers; a number = GPT-2's: every weight
      normal(init_std), the projections that write into the residual stream
      normal(init_std / sqrt(2 L)), biases 0.
    attention_implementation: None = `tj.attention`'s own choice; a name is bound
      into `tj.attention(implementation=...)` for every layer.
    tie_output: the output layer is the (target) token embedding transposed
      (GPT, encoder-decoder); otherwise a Linear head.
    num_outputs: the encoder's per-position head width; None = no head (the
      encoder returns its hidden states [B, T, D]).
    tgt_vocab_size: the encoder-decoder's target vocabulary; None = vocab_size.
    num_decoder_layers: the encoder-decoder's decoder layers; None = num_layers.
    share_embeddings: the encoder-decoder's source and target share one table.
    dtype: the compute dtype of activations and matmuls, "float32" or "bfloat16".
      LayerNorm statistics, the attention softmax, the logits and the loss stay
      float32 whatever it is. "float16" is refused: it needs dynamic loss scaling.
    param_dtype: the dtype parameters are stored in (and so the optimizer state):
      "float32" (master weights; the usual choice with bfloat16 compute) or "bfloat16".
  """

  vocab_size: int
  max_len: int
  num_layers: int
  d_model: int
  num_heads: int
  num_kv_heads: int | None = None
  d_ff: int | None = None
  dropout: float = 0.0
  attention_dropout: float = 0.0
  window: int | None = None
  window_pattern: str = "local"
  norm: str = "post"
  norm_kind: str = "layernorm"
  positions: str = "sinusoidal"
  rope_base: float = 10000.0
  activation: str = "relu"
  qk_norm: bool = False
  ln_eps: float = 1e-6
  scale_embeddings: bool = True
  use_bias: bool = True
  init_std: float | None = None
  attention_implementation: str | None = None
  tie_output: bool = False
  num_outputs: int | None = None
  tgt_vocab_size: int | None = None
  num_decoder_layers: int | None = None
  share_embeddings: bool = False
  dtype: str = "float32"
  param_dtype: str = "float32"

  def __post_init__(self):
    for name in ("vocab_size", "max_len", "num_layers", "d_model", "num_heads"):
      _check_positive_int(name, getattr(self, name))
    for name in ("num_kv_heads", "d_ff", "num_outputs", "tgt_vocab_size", "num_decoder_layers"):
      if getattr(self, name) is not None:
        _check_positive_int(name, getattr(self, name), optional=True)
    if self.d_model % self.num_heads:
      raise ModelConfigError("num_heads", self.num_heads, f"must divide d_model={self.d_model}")
    kv = self.num_kv_heads
    if kv is not None and self.num_heads % kv:
      raise ModelConfigError(
        "num_kv_heads", kv, f"must divide num_heads={self.num_heads} (grouped-query attention)"
      )
    for name in ("dropout", "attention_dropout"):
      if not (_is_number(getattr(self, name)) and 0.0 <= getattr(self, name) < 1.0):
        raise ModelConfigError(name, getattr(self, name), "must be a rate in [0, 1)")
    self._check_window()
    for name, choices in (
      ("norm", NORMS),
      ("norm_kind", NORM_KINDS),
      ("positions", POSITIONS),
      ("activation", tuple(ACTIVATIONS)),
    ):
      if getattr(self, name) not in choices:
        raise ModelConfigError(name, getattr(self, name), f"must be one of {choices}")
    if not (_is_number(self.rope_base) and self.rope_base > 1):
      raise ModelConfigError("rope_base", self.rope_base, "must be a number > 1")
    H = self.d_model // self.num_heads
    if self.positions == "rope" and H % 2:
      raise ModelConfigError(
        "positions",
        "rope",
        f"rotary embeddings rotate channel pairs, so they need an even head dim; "
        f"d_model / num_heads = {self.d_model} / {self.num_heads} = {H}",
      )
    if not (_is_number(self.ln_eps) and self.ln_eps > 0):
      raise ModelConfigError("ln_eps", self.ln_eps, "must be a number > 0")
    if self.init_std is not None and not (_is_number(self.init_std) and self.init_std > 0):
      raise ModelConfigError("init_std", self.init_std, "must be a number > 0 or None")
    for name in ("scale_embeddings", "use_bias", "qk_norm", "tie_output", "share_embeddings"):
      if not isinstance(getattr(self, name), bool):
        raise ModelConfigError(name, getattr(self, name), "must be a bool")
    impl = self.attention_implementation
    if impl is not None and impl not in IMPLEMENTATIONS:
      raise ModelConfigError(
        "attention_implementation", impl, f"must be None or one of {IMPLEMENTATIONS}"
      )
    if self.attention_dropout > 0 and impl is not None and impl not in DROPOUT_IMPLEMENTATIONS:
      raise ModelConfigError(
        "attention_dropout",
        self.attention_dropout,
        f"attention_implementation={impl!r} has no attention dropout; with a rate > 0 "
        f"use None or one of {DROPOUT_IMPLEMENTATIONS}",
      )
    _check_dtypes(self.dtype, self.param_dtype)
    default_d_ff = gated_d_ff(self.d_model) if self.activation in GATED else 4 * self.d_model
    resolved = {
      "d_ff": default_d_ff if self.d_ff is None else self.d_ff,
      "tgt_vocab_size": self.vocab_size if self.tgt_vocab_size is None else self.tgt_vocab_size,
      "num_decoder_layers": self.num_layers
      if self.num_decoder_layers is None
      else self.num_decoder_layers,
    }
    for name, value in resolved.items():
      object.__setattr__(self, name, value)
    if self.share_embeddings and self.tgt_vocab_size != self.vocab_size:
      raise ModelConfigError(
        "share_embeddings",
        True,
        f"needs tgt_vocab_size == vocab_size, got {self.tgt_vocab_size} and {self.vocab_size}",
      )

  def _check_window(self) -> None:
    if self.window is not None:
      _check_positive_int("window", self.window, optional=True)
    pattern = self.window_pattern
    kinds = pattern.split(",") if isinstance(pattern, str) else None
    if kinds is None or any(k not in WINDOW_KINDS for k in kinds):
      raise ModelConfigError(
        "window_pattern",
        pattern,
        f"must be comma-separated names from {WINDOW_KINDS}, e.g. 'local,global'",
      )
    if "local" not in kinds:
      raise ModelConfigError(
        "window_pattern", pattern, "names no 'local' layer; for no window set window=None"
      )
    if self.window is None and pattern != "local":
      raise ModelConfigError(
        "window_pattern", pattern, "marks local layers, but window=None: set a window"
      )

  def layer_windows(self, num_layers: int) -> tuple[int | None, ...]:
    """The window of each of `num_layers` layers: `window` where `window_pattern` (repeated)
    says "local", None where it says "global" (and everywhere without a window)."""
    kinds = self.window_pattern.split(",")
    return tuple(
      self.window if kinds[i % len(kinds)] == "local" else None for i in range(num_layers)
    )

  @classmethod
  def gpt2_124m(cls, **overrides) -> "TransformerConfig":
    """GPT-2 small: 12 layers, 12 heads, D 768, 1024 context, 50257 tokens; 124,439,808 params."""
    return cls.gpt(
      **{
        "vocab_size": 50257,
        "max_len": 1024,
        "num_layers": 12,
        "num_heads": 12,
        "d_model": 768,
        **overrides,
      }
    )

  @classmethod
  def gpt(cls, **fields) -> "TransformerConfig":
    """The GPT-2 architecture at any size: pre-LN, learned positions, GELU-tanh, tied head,
    LayerNorm eps 1e-5, unscaled embeddings, GPT-2's normal(0.02) init. Sizes are required."""
    gpt2 = {
      "norm": "pre",
      "positions": "learned",
      "activation": "gelu",
      "ln_eps": 1e-5,
      "scale_embeddings": False,
      "init_std": 0.02,
      "tie_output": True,
    }
    return cls(**{**gpt2, **fields})

  @classmethod
  def llama(cls, **fields) -> "TransformerConfig":
    """The Llama architecture at any size: pre-RMSNorm (eps 1e-5), SwiGLU (d_ff by the 2/3
    rule unless given), RoPE (base 10000), no biases, an untied head, unscaled
    embeddings, normal(0.02) init. Grouped-query attention through num_kv_heads.
    Sizes are required."""
    llama = {
      "norm": "pre",
      "norm_kind": "rmsnorm",
      "positions": "rope",
      "rope_base": 10000.0,
      "activation": "swiglu",
      "ln_eps": 1e-5,
      "scale_embeddings": False,
      "use_bias": False,
      "init_std": 0.02,
      "tie_output": False,
    }
    return cls(**{**llama, **fields})

  @classmethod
  def paper_base(cls, **overrides) -> "TransformerConfig":
    """The paper's base encoder-decoder: D 512, 8 heads, F 2048, 6 + 6 layers, dropout 0.1,
    post-LN, sinusoidal positions, ReLU. vocab_size and max_len are required."""
    base = {"num_layers": 6, "d_model": 512, "num_heads": 8, "d_ff": 2048, "dropout": 0.1}
    return cls(**{**base, **overrides})


DTYPES = ("float32", "bfloat16")


def _check_dtypes(dtype, param_dtype) -> None:
  if dtype == "float16":
    raise ModelConfigError(
      "dtype",
      dtype,
      "float16 compute needs dynamic loss scaling, which is not built; use 'bfloat16' "
      "(float32's exponent range, no scaling needed) or 'float32'",
    )
  for name, value in (("dtype", dtype), ("param_dtype", param_dtype)):
    if not isinstance(value, str) or value not in DTYPES:
      raise ModelConfigError(name, value, f"must be one of {DTYPES}")


def _is_number(value) -> bool:
  """A finite real number (NaN and inf would pass no range check, silently)."""
  return isinstance(value, numbers.Real) and not isinstance(value, bool) and math.isfinite(value)


def _check_positive_int(name: str, value, *, optional: bool = False) -> None:
  if not isinstance(value, numbers.Integral) or isinstance(value, bool) or value < 1:
    raise ModelConfigError(name, value, "must be a positive int" + (" or None" if optional else ""))
