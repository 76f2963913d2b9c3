"""The switch behind `tj.attention(..., implementation=...)`: choose one, run it.

Dimension key: B batch, T query length, S key/value length, N query heads, K kv heads,
H head dim.

  "reference"  tfmr_jax.ops.reference: einsum + softmax over [B, N, T, S] logits
  "tiled"      tfmr_jax.ops.tiled_attention: online softmax, O(T) memory
  "xla"        jax.nn.dot_product_attention(implementation="xla"), via tfmr_jax.ops.jax_nn
  "cudnn"      jax.nn.dot_product_attention(implementation="cudnn"), GPU only
  None         the fastest correct one for the backend and shape: `choose_implementation`

Every implementation keeps our mask semantics: a query row whose keys are all
masked returns zeros and passes zero gradient (jax.nn alone would return the mean
of the values there). And every one takes `is_causal=True` (query t sees key
s <= t + (S - T)) with the same result as the mask `causal_mask(T, S)`, and `window=`
with the same result as `sliding_window_mask(T, S, window=..., causal=is_causal)`.

Attention dropout (`dropout_rate > 0`) runs in "reference" and "tiled" only, and both
drop the same entries for the same key (the keep-mask is drawn on the tiled kernel's
block grid, tfmr_jax.ops.dropout). jax.nn.dot_product_attention has no dropout, so
"xla" and "cudnn" refuse it, and None chooses between "reference" and "tiled".
"""

import jax
import jax.numpy as jnp

from tfmr_jax.ops.jax_nn import jax_nn_attention
from tfmr_jax.ops.reference import reference_attention
from tfmr_jax.ops.tiled_attention import block_lengths, tiled_attention

IMPLEMENTATIONS = ("reference", "tiled", "xla", "cudnn")
DROPOUT_IMPLEMENTATIONS = ("reference", "tiled")  # jax.nn has no attention dropout

# CPU crossover, found by experiments/bench_attention.py --crossover (B=1 and 8, N=8,
# H=64; the timings are in the README's performance section): from T * S = 64 * 64 on,
# the tiled path is the fastest or close to it, forward and forward+backward, causal or
# not; below it no implementation wins reliably, so the plain reference path runs.
CPU_TILED_MIN_LOGITS = 64 * 64

# Elsewhere (GPU, TPU; not measured here): XLA's attention while its [B, N, T, S]
# float32 logits stay under this many elements (1 GiB), tiled beyond, so memory stays O(T).
ACCELERATOR_TILED_MIN_LOGITS = 256 * 1024 * 1024

_CUDNN_DTYPES = (jnp.bfloat16, jnp.float16)


def check_implementation(implementation) -> None:
  """Raise ValueError unless `implementation` is None or one of IMPLEMENTATIONS."""
  if implementation is not None and implementation not in IMPLEMENTATIONS:
    raise ValueError(
      f"implementation must be None or one of {IMPLEMENTATIONS}, got {implementation!r}"
    )


def cudnn_supports(*, dtype, H: int, backend: str) -> bool:
  """Whether jax's cuDNN attention takes this: GPU, fp16/bf16, H % 8 == 0, H <= 128."""
  return backend == "gpu" and jnp.dtype(dtype) in _CUDNN_DTYPES and H % 8 == 0 and H <= 128


def choose_implementation(
  *,
  B: int,
  T: int,
  S: int,
  N: int,
  H: int,
  dtype,
  backend: str | None = None,
  dropout: bool = False,
) -> str:
  """The implementation `implementation=None` runs for this shape on `backend`.

  CPU: "tiled" from T * S = CPU_TILED_MIN_LOGITS on, "reference" below (the
  crossover measured by experiments/bench_attention.py). GPU: "cudnn" where it takes
  the problem. Otherwise (not measured here): "xla" while the [B, N, T, S] logits stay
  under ACCELERATOR_TILED_MIN_LOGITS, "tiled" beyond. With dropout, "reference" in
  place of "xla" and "cudnn" (the same einsum and softmax, plus the keep-mask).
  """
  backend = jax.default_backend() if backend is None else backend
  if backend == "cpu":
    return "tiled" if T * S >= CPU_TILED_MIN_LOGITS else "reference"
  if dropout:
    return "tiled" if B * N * T * S >= ACCELERATOR_TILED_MIN_LOGITS else "reference"
  if cudnn_supports(dtype=dtype, H=H, backend=backend):
    return "cudnn"
  return "tiled" if B * N * T * S >= ACCELERATOR_TILED_MIN_LOGITS else "xla"


def resolve_implementation(implementation, q_BTNH, k_BSKH, *, dropout: bool = False) -> str:
  """Validate `implementation` and turn None into a concrete choice for these shapes.

  dropout: whether attention dropout is on (dropout_rate > 0); then only
  DROPOUT_IMPLEMENTATIONS may run.
  """
  check_implementation(implementation)
  B, T, N, H = q_BTNH.shape
  S = k_BSKH.shape[1]
  if implementation is None:
    return choose_implementation(B=B, T=T, S=S, N=N, H=H, dtype=q_BTNH.dtype, dropout=dropout)
  if dropout and implementation not in DROPOUT_IMPLEMENTATIONS:
    raise ValueError(
      f"implementation={implementation!r} (jax.nn.dot_product_attention) has no attention "
      f"dropout; with dropout_rate > 0 use one of {DROPOUT_IMPLEMENTATIONS} or None"
    )
  if implementation == "cudnn" and not cudnn_supports(
    dtype=q_BTNH.dtype, H=H, backend=jax.default_backend()
  ):
    raise ValueError(
      f"implementation='cudnn' needs a GPU backend, float16 or bfloat16 inputs and a head dim "
      f"H that is a multiple of 8 and at most 128; got backend={jax.default_backend()!r}, "
      f"dtype={q_BTNH.dtype}, H={H}"
    )
  return implementation


def run_implementation(
  implementation: str,
  q_BTNH,
  k_BSKH,
  v_BSKH,
  *,
  mask,
  bias,
  scale,
  is_causal: bool = False,
  window: int | None = None,
  dropout_rate: float = 0.0,
  dropout_rng=None,
):
  """Attention by a resolved implementation name. Returns [B, T, N, H] in q's dtype.

  Arguments must already have passed `check_attention_args` and `check_dropout`, and
  the name `resolve_implementation` (with dropout, "reference" or "tiled").
  """
  options = dict(mask=mask, bias=bias, scale=scale, is_causal=is_causal, window=window)
  dropout = dict(dropout_rate=dropout_rate, dropout_rng=dropout_rng) if dropout_rate > 0 else {}
  if implementation == "reference":
    if dropout:  # on the tiled kernel's block grid: the same entries dropped as there
      T, S = q_BTNH.shape[1], k_BSKH.shape[1]
      dropout["dropout_blocks"] = block_lengths(T, S)
    return reference_attention(q_BTNH, k_BSKH, v_BSKH, **options, **dropout)
  if implementation == "tiled":
    return tiled_attention(q_BTNH, k_BSKH, v_BSKH, **options, **dropout)
  return jax_nn_attention(q_BTNH, k_BSKH, v_BSKH, **options, implementation=implementation)
