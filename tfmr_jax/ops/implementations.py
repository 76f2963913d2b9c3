"""The switch behind `tj.attention(..., implementation=...)`.

Dimension key: B batch, T query length, S key/value length, N query heads, K kv heads,
H head dim.

  "reference"  the einsum + softmax in tfmr_jax.ops.attention: [B, N, T, S] logits
  "tiled"      tfmr_jax.ops.tiled_attention: online softmax, O(T) memory
  "xla"        jax.nn.dot_product_attention(implementation="xla")
  "cudnn"      jax.nn.dot_product_attention(implementation="cudnn"), GPU only
  None         the fastest correct one for the backend and shape: `choose_implementation`

Every implementation keeps our mask semantics: a query row whose keys are all
masked returns zeros and passes zero gradient (jax.nn alone would return the mean
of the values there). And every one takes `is_causal=True` (query t sees key
s <= t + (S - T)) with the same result as the mask `causal_mask(T, S)`.
"""

import jax
import jax.numpy as jnp

from tfmr_jax.ops.attention import check_is_causal
from tfmr_jax.ops.masks import causal_mask, combine_masks
from tfmr_jax.ops.tiled_attention import tiled_attention

IMPLEMENTATIONS = ("reference", "tiled", "xla", "cudnn")

# CPU crossover, measured by experiments/bench_attention.py --crossover (B=1 and B=8,
# N=8, H=64; README, performance section): from T * S = 64 * 64 on, the tiled path is the
# fastest or within 5% of the fastest, forward and forward+backward, causal or not; below
# it every implementation takes about 0.1 ms at B=1 and none wins reliably, so the plain
# reference path runs. Decoding steps (T = 1 with the cache's mask array) are a wash
# between the two from S = 512 on: within 10% either way.
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
  *, B: int, T: int, S: int, N: int, H: int, dtype, backend: str | None = None
) -> str:
  """The implementation `implementation=None` runs for this shape on `backend`.

  CPU: "tiled" from T * S = CPU_TILED_MIN_LOGITS on, "reference" below (the
  crossover measured by experiments/bench_attention.py). GPU: "cudnn" where it takes
  the problem. Otherwise (not measured here): "xla" while the [B, N, T, S] logits stay
  under ACCELERATOR_TILED_MIN_LOGITS, "tiled" beyond.
  """
  backend = jax.default_backend() if backend is None else backend
  if backend == "cpu":
    return "tiled" if T * S >= CPU_TILED_MIN_LOGITS else "reference"
  if cudnn_supports(dtype=dtype, H=H, backend=backend):
    return "cudnn"
  return "tiled" if B * N * T * S >= ACCELERATOR_TILED_MIN_LOGITS else "xla"


def resolve_implementation(implementation, q_BTNH, k_BSKH) -> str:
  """Validate `implementation` and turn None into a concrete choice for these shapes."""
  check_implementation(implementation)
  B, T, N, H = q_BTNH.shape
  S = k_BSKH.shape[1]
  if implementation is None:
    return choose_implementation(B=B, T=T, S=S, N=N, H=H, dtype=q_BTNH.dtype)
  if implementation == "cudnn" and not cudnn_supports(
    dtype=q_BTNH.dtype, H=H, backend=jax.default_backend()
  ):
    raise ValueError(
      f"implementation='cudnn' needs a GPU backend, float16 or bfloat16 inputs and a head dim "
      f"H that is a multiple of 8 and at most 128; got backend={jax.default_backend()!r}, "
      f"dtype={q_BTNH.dtype}, H={H}"
    )
  return implementation


def jax_nn_attention(
  q_BTNH,
  k_BSKH,
  v_BSKH,
  *,
  mask=None,
  bias=None,
  scale=None,
  is_causal: bool = False,
  implementation: str = "xla",
):
  """jax.nn.dot_product_attention with our fully-masked-row rule. Returns [B, T, N, H].

  jax.nn returns the mean of all values on a row whose keys are all masked; we
  select zeros there (a select, not a product, so a backend's NaN cannot leak), which
  also stops the gradient flowing through those rows.

  is_causal: our rule, query t sees key s <= t + (S - T). jax.nn's own `is_causal`
  aligns the diagonal top-left (s <= t), which is the same only for T == S; so it
  gets is_causal=True when T == S, and the mask `causal_mask(T, S)` when T < S.
  """
  B, T, N, _ = q_BTNH.shape
  S = k_BSKH.shape[1]
  check_is_causal(is_causal, T=T, S=S)
  rows_mask = mask  # what decides which rows see no key at all
  if is_causal:
    # The causal rule alone empties no row (S >= T); ANDed with a mask it may.
    rows_mask = None if mask is None else combine_masks(causal_mask(T, S), mask)
    if T != S:
      mask = combine_masks(causal_mask(T, S), mask)
  out_BTNH = jax.nn.dot_product_attention(
    q_BTNH,
    k_BSKH,
    v_BSKH,
    bias=_as_rank4(bias),
    mask=_as_rank4(mask),
    scale=scale,
    is_causal=is_causal and T == S,
    implementation=implementation,
  )
  if rows_mask is None:
    return out_BTNH
  seen_BNT = jnp.broadcast_to(jnp.any(_as_rank4(rows_mask), axis=-1), (B, N, T))
  seen_BTN1 = seen_BNT.transpose(0, 2, 1)[..., None]
  return jnp.where(seen_BTN1, out_BTNH, 0.0).astype(out_BTNH.dtype)


def _as_rank4(x):
  """None, or x with leading axes of size 1 added up to rank 4 (jax.nn wants [B, N, T, S])."""
  if x is None:
    return None
  x = jnp.asarray(x)
  return x.reshape((1,) * (4 - x.ndim) + x.shape)


def run_implementation(
  implementation: str, q_BTNH, k_BSKH, v_BSKH, *, mask, bias, scale, is_causal: bool = False
):
  """Attention by a resolved, non-reference implementation name. Returns [B, T, N, H]."""
  if implementation == "tiled":
    return tiled_attention(
      q_BTNH, k_BSKH, v_BSKH, mask=mask, bias=bias, scale=scale, is_causal=is_causal
    )
  return jax_nn_attention(
    q_BTNH,
    k_BSKH,
    v_BSKH,
    mask=mask,
    bias=bias,
    scale=scale,
    is_causal=is_causal,
    implementation=implementation,
  )
