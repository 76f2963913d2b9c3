"""Attention speed and memory, every implementation side by side in one process.

COMMAND:  python experiments/bench_attention.py --quick   # T in {128, 512, 2048}
          python experiments/bench_attention.py           # T up to 32768; memory up to 131072
          python experiments/bench_attention.py --window-only   # sliding window 256, T 1k..8k
EXPECTED: writes experiments/results/bench_attention.{json,md,png}. On 2 CPU cores (float32,
          B=1, N=8, H=64) the tiled path runs 5-18x faster than jax.nn.dot_product_attention
          from T=2048 and trains at T=131072 in 2.5 GiB. --quick takes about 10 minutes on
          2 CPU cores; the full run about 45 minutes, 30 with --impls tiled auto xla.
          --window-only writes results/bench_attention_window.{json,md}: the window's ms per
          1k tokens about flat from T=1024 to 8192, full causal 4x slower per token at 8192.

Columns, per case (mode x causal x B x T), all timed in this process, interleaved
round by round so that a busy machine slows every column alike:
  reference  tj.attention(implementation="reference"), [B, N, T, S] logits
  tiled      tfmr_jax.ops.tiled_attention(is_causal=...), O(T) memory
  auto       tj.attention(is_causal=...), implementation=None: what a model gets (timed up
             to T=8192; beyond, it runs the tiled column's code)
  xla        jax.nn.dot_product_attention(implementation="xla"): the baseline of every ratio
  flax       flax.linen.dot_product_attention (flax.nnx's forwards to jax.nn)
  cudnn      jax.nn.dot_product_attention(implementation="cudnn"), GPU only

Times are medians of several calls after a warm-up, the columns in random order each
round. FLOPs: 4 B N T S H forward (half when causal), 3.5 times that for forward+backward.

The ceiling is the best rate of jnp.dot on square matrices (n = 2048..4096) measured in
the same process, before and after the cases. Peak memory is measured once per case in a
fresh child process (peak RSS during the call minus the RSS before it); cases whose
estimated memory would not fit are skipped and say so.

The window case (--window W; --window-only runs it alone, W=256 by default) times the
tiled kernel with is_causal=True and window=W beside the full causal rule, B=1, for T in
--window-T: its time per token should stay flat as T grows (the work is T * W), while
the full causal rule's grows with T.
"""

import argparse
import json
import math
import multiprocessing
import os
import platform
import resource
import statistics
import sys
import time
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np

N_HEADS, HEAD_DIM = 8, 64
RESULTS = Path(__file__).resolve().parent / "results"
IMPLS = ("reference", "tiled", "auto", "xla", "flax", "cudnn")
QUADRATIC = ("reference", "xla", "flax")  # hold [B, N, T, S] float32 logits
GIB = 2.0**30


# ----------------------------------------------------------------------------- cases
def attention_fn(impl: str, T: int, causal: bool, S: int | None = None, window=None):
  """(q, k, v) -> out for one implementation; causal masks built inside (no constants).

  window: a sliding window for "tiled" (the only column the window case times).
  """
  S = T if S is None else S
  import flax.linen

  import tfmr_jax as tj
  from tfmr_jax.ops.tiled_attention import tiled_attention

  def mask():
    return tj.causal_mask(T, S) if causal else None

  fns = {
    "reference": lambda q, k, v: tj.attention(q, k, v, mask=mask(), implementation="reference"),
    "tiled": lambda q, k, v: tiled_attention(q, k, v, is_causal=causal, window=window),
    "tiled-mask": lambda q, k, v: tj.attention(q, k, v, mask=mask(), implementation="tiled"),
    "auto": lambda q, k, v: tj.attention(q, k, v, is_causal=causal),
    "xla": lambda q, k, v: jax.nn.dot_product_attention(
      q, k, v, is_causal=causal, implementation="xla"
    ),
    "flax": lambda q, k, v: flax.linen.dot_product_attention(q, k, v, mask=mask()),
    "cudnn": lambda q, k, v: jax.nn.dot_product_attention(
      q, k, v, is_causal=causal, implementation="cudnn"
    ),
  }
  return fns[impl]


def compiled_case(
  impl: str,
  mode: str,
  B: int,
  T: int,
  causal: bool,
  dtype,
  S=None,
  window=None,
  heads: tuple[int, int] = (N_HEADS, HEAD_DIM),
):
  """AOT-compiled callable for one case and its inputs (S defaults to T; heads is (N, H)).

  fwd+bwd is the forward and the gradients (dq, dk, dv) for a random output cotangent,
  as a layer inside a model receives one: a constant one (the gradient of sum(out))
  would let XLA simplify autodiff's backward into reductions, which no training step gets.
  """
  S = T if S is None else S
  attend = attention_fn(impl, T, causal, S, window)
  keys = jax.random.split(jax.random.key(T), 4)
  q, k, v, dout = (
    jax.random.normal(key, (B, L, *heads), dtype) for key, L in zip(keys, (T, S, S, T), strict=True)
  )
  if mode == "fwd":
    return jax.jit(attend).lower(q, k, v).compile(), (q, k, v)

  def forward_backward(q, k, v, dout):
    out, pullback = jax.vjp(attend, q, k, v)
    return out, pullback(dout)

  return jax.jit(forward_backward).lower(q, k, v, dout).compile(), (q, k, v, dout)


def flops(mode: str, B: int, T: int, causal: bool) -> float:
  forward = 4.0 * B * N_HEADS * T * T * HEAD_DIM * (0.5 if causal else 1.0)
  return forward * (3.5 if mode == "fwd+bwd" else 1.0)


def estimated_bytes(impl: str, mode: str, B: int, T: int, causal: bool, dtype) -> float:
  """Rough peak memory of a case, to skip what cannot fit (not a measurement)."""
  io = 4 * B * T * N_HEADS * HEAD_DIM * 4 * (2 if mode == "fwd+bwd" else 1)
  mask = T * T if causal and impl in ("reference", "flax") else 0
  if impl in QUADRATIC or (impl == "auto" and resolved_auto(B, T, dtype) != "tiled"):
    logits = 4.0 * B * N_HEADS * T * T
    return io + mask + logits * (3.0 if mode == "fwd" else 6.5)
  return io


def resolved_auto(B: int, T: int, dtype) -> str:
  from tfmr_jax.ops.implementations import choose_implementation

  return choose_implementation(B=B, T=T, S=T, N=N_HEADS, H=HEAD_DIM, dtype=dtype)


def available_bytes() -> float:
  """Free memory where the arrays live: the device allocator's limit on an accelerator,
  else MemAvailable from /proc/meminfo (Linux), else total physical memory."""
  if jax.default_backend() != "cpu":
    stats = jax.devices()[0].memory_stats() or {}
    if "bytes_limit" in stats:
      return float(stats["bytes_limit"] - stats.get("bytes_in_use", 0))
  try:
    for line in Path("/proc/meminfo").read_text().splitlines():
      if line.startswith("MemAvailable:"):
        return float(line.split()[1]) * 1024
  except OSError:
    pass
  return float(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES"))


# -------------------------------------------------------------------------- ceiling
def cpu_description() -> dict:
  """The CPU's model name and the SIMD flags XLA's CPU code can use (Linux), and XLA_FLAGS."""
  model, flags = platform.processor() or "unknown", []
  try:
    for line in Path("/proc/cpuinfo").read_text().splitlines():
      if line.startswith("model name"):
        model = line.split(":", 1)[1].strip()
      if line.startswith("flags"):
        found = set(line.split(":", 1)[1].split())
        flags = sorted(f for f in found if f.startswith(("avx", "fma", "amx")))
        break
  except OSError:
    pass
  return {
    "cpu_model": model,
    "cpu_flags": " ".join(flags),
    "xla_flags": os.environ.get("XLA_FLAGS", ""),
  }


def environment(dtype, command: str) -> dict:
  """Where and how a benchmark ran, for the head of its report."""
  return {
    **cpu_description(),
    "backend": jax.default_backend(),
    "device": str(jax.devices()[0].device_kind),
    "jax": jax.__version__,
    "dtype": jnp.dtype(dtype).name,
    "python": platform.python_version(),
    "cpus": os.cpu_count(),
    "date": time.strftime("%Y-%m-%d %H:%M"),
    "command": command,
  }


def matmul_ceiling(dtype, reps: int) -> dict:
  """Best rate of jnp.dot on square matrices, n = 2048..4096, medians of `reps` calls."""
  rates = {}
  for n in (2048, 3072, 4096):
    a = jax.random.normal(jax.random.key(n), (n, n), dtype)
    dot = jax.jit(jnp.dot).lower(a, a).compile()
    jax.block_until_ready(dot(a, a))
    times = []
    for _ in range(reps):
      start = time.perf_counter()
      jax.block_until_ready(dot(a, a))
      times.append(time.perf_counter() - start)
    rates[n] = 2.0 * n**3 / statistics.median(times)
  return {"flops_per_s": max(rates.values()), "by_n": rates}


# --------------------------------------------------------------------------- timing
def time_case(mode, B, T, causal, impls, args) -> dict:
  """Median seconds per call of each runnable implementation, interleaved round by round."""
  dtype = jnp.dtype(args.dtype)
  rows, runnable = {}, {}
  for impl in impls:
    if B * T > args.max_tokens:
      rows[impl] = {"skipped": f"B*T above --max-tokens={args.max_tokens}"}
      continue
    if B > 1 and T > args.batch_max_T:
      rows[impl] = {"skipped": f"B > 1 timed up to T={args.batch_max_T}"}
      continue
    if impl == "auto" and T > args.auto_max_T and resolved_auto(B, T, dtype) == "tiled":
      rows[impl] = {"skipped": "same code as tiled here"}
      continue
    need = estimated_bytes(impl, mode, B, T, causal, dtype)
    budget = min(args.mem_budget_gib * GIB, available_bytes() - 2 * GIB)
    if need > budget:
      rows[impl] = {"skipped": f"would need ~{need / GIB:.0f} GiB"}
      continue
    # Rates assumed only to skip hopeless cases: quadratic paths at 5% of the ceiling,
    # the tiled ones at 40% (both measured well above that on CPU).
    estimate_s = flops(mode, B, T, causal) / (args.ceiling * (0.05 if impl in QUADRATIC else 0.4))
    if estimate_s > args.max_call_s:
      rows[impl] = {"skipped": f"would take ~{estimate_s:.0f} s per call"}
      continue
    try:
      compiled, inputs = compiled_case(impl, mode, B, T, causal, dtype)
      start = time.perf_counter()
      jax.block_until_ready(compiled(*inputs))  # warm-up
      first = time.perf_counter() - start
    except Exception as e:  # noqa: BLE001 - a column that cannot run says why
      rows[impl] = {"skipped": f"{type(e).__name__}: {str(e).splitlines()[0][:120]}"}
      continue
    runnable[impl] = (compiled, inputs)
    rows[impl] = {"times_s": [], "first_s": first}
  slowest = max((rows[i]["first_s"] for i in runnable), default=0.0)
  # Sub-millisecond calls jitter by 10-20% on a shared machine: three times the rounds
  # there; calls of seconds barely jitter: half the rounds, at least 3.
  reps = args.reps * 3 if slowest < 0.01 else args.reps if slowest < 5.0 else max(3, args.reps // 2)
  # Each round visits the columns in a fresh random order, and a column whose call takes
  # under 5 s gets an untimed call of its own first: a call right after another column's
  # (one that freed gigabytes, say) runs up to 30% slower here, paging its buffers in
  # again, while in training the same attention runs back to back. Calls of tens of
  # seconds barely feel that, and skip it.
  rng = np.random.default_rng(T * 31 + B)
  for _ in range(reps):
    for impl in rng.permutation(list(runnable)):
      compiled, inputs = runnable[impl]
      if rows[impl]["first_s"] < 5.0:
        jax.block_until_ready(compiled(*inputs))
      start = time.perf_counter()
      jax.block_until_ready(compiled(*inputs))
      rows[impl]["times_s"].append(time.perf_counter() - start)
  total = flops(mode, B, T, causal)
  base = rows.get("xla", {}).get("times_s")
  for impl in runnable:
    median = statistics.median(rows[impl]["times_s"])
    rows[impl].update(
      ms=1e3 * median,
      min_ms=1e3 * min(rows[impl]["times_s"]),
      gflops=total / median / 1e9,
      ceiling_fraction=total / median / args.ceiling,
      vs_xla=(statistics.median(base) / median) if base else None,
    )
  return rows


def accuracy(B: int, T: int, causal: bool) -> dict:
  """Max |tiled - reference| of outputs and of gradients (float32), same inputs."""
  ref, _ = compiled_case("reference", "fwd", B, T, causal, jnp.float32)
  tiled, inputs = compiled_case("tiled", "fwd", B, T, causal, jnp.float32)
  ref_g, _ = compiled_case("reference", "fwd+bwd", B, T, causal, jnp.float32)
  tiled_g, inputs_g = compiled_case("tiled", "fwd+bwd", B, T, causal, jnp.float32)
  fwd = float(jnp.max(jnp.abs(ref(*inputs) - tiled(*inputs))))
  grads = zip(ref_g(*inputs_g)[1], tiled_g(*inputs_g)[1], strict=True)
  bwd = max(float(jnp.max(jnp.abs(a - b))) for a, b in grads)
  return {"T": T, "causal": causal, "forward_max_abs": fwd, "gradient_max_abs": bwd}


CROSSOVER_IMPLS = ("reference", "tiled", "tiled-mask", "xla")


def crossover_sweep(args) -> list[dict]:
  """Short shapes, B=1 and B=8: which implementation is fastest where None must choose.

  "tiled" takes the causal rule from is_causal (what models pass), "tiled-mask" from a
  mask array (what a padded or custom mask gets). T=1 rows are decoding steps.
  """
  shapes = [(T, T) for T in (16, 32, 64, 128, 256, 512)] + [(1, S) for S in (64, 512, 4096)]
  rows = []
  for mode in args.modes:
    for B in args.B:
      for T, S in shapes:
        for causal in (False, True):
          runnable = {
            i: compiled_case(i, mode, B, T, causal, jnp.dtype(args.dtype), S)
            for i in CROSSOVER_IMPLS
          }
          times = {i: [] for i in runnable}
          for compiled, inputs in runnable.values():
            jax.block_until_ready(compiled(*inputs))
          rng = np.random.default_rng(T * 7 + S + B)
          for _ in range(max(args.reps, 9)):
            for i in rng.permutation(list(runnable)):
              compiled, inputs = runnable[i]
              jax.block_until_ready(compiled(*inputs))
              start = time.perf_counter()
              jax.block_until_ready(compiled(*inputs))
              times[i].append(time.perf_counter() - start)
          ms = {i: 1e3 * statistics.median(t) for i, t in times.items()}
          rows.append(
            {
              "mode": mode,
              "B": B,
              "T": T,
              "S": S,
              "causal": causal,
              "ms": ms,
              "fastest": min(ms, key=ms.get),
            }
          )
          print("crossover", rows[-1], flush=True)
  return rows


def window_sweep(args) -> list[dict]:
  """The tiled kernel, B=1, causal with a sliding window of args.window keys beside the
  full causal rule, for T in args.window_T, interleaved round by round.

  Each row: ms (median) and ms per 1024 tokens of each column; the window's stays about
  flat as T grows (its work is T * window), the full rule's grows like T.
  """
  rows = []
  dtype = jnp.dtype(args.dtype)
  for mode in args.modes:
    for T in args.window_T:
      columns = {"window": args.window, "causal": None}
      runnable = {
        name: compiled_case("tiled", mode, 1, T, True, dtype, window=window)
        for name, window in columns.items()
      }
      for compiled, inputs in runnable.values():
        jax.block_until_ready(compiled(*inputs))
      times = {name: [] for name in runnable}
      rng = np.random.default_rng(T * 13 + len(mode))
      for _ in range(max(args.reps, 3)):
        for name in rng.permutation(list(runnable)):
          compiled, inputs = runnable[name]
          jax.block_until_ready(compiled(*inputs))
          start = time.perf_counter()
          jax.block_until_ready(compiled(*inputs))
          times[name].append(time.perf_counter() - start)
      ms = {name: 1e3 * statistics.median(t) for name, t in times.items()}
      row = {
        "mode": mode,
        "T": T,
        "window": args.window,
        "ms": ms,
        "min_ms": {name: 1e3 * min(t) for name, t in times.items()},
        "ms_per_1k_tokens": {name: m * 1024 / T for name, m in ms.items()},
      }
      rows.append(row)
      print(
        f"window {mode} T={T} W={args.window}: "
        + ", ".join(
          f"{name} {ms[name]:.1f} ms ({row['ms_per_1k_tokens'][name]:.2f} ms / 1k tokens)"
          for name in ms
        ),
        flush=True,
      )
  return rows


def window_markdown(rows: list[dict]) -> list[str]:
  """The window case as a table: time and time per 1k tokens against T, each mode."""
  if not rows:
    return []
  lines = [
    "",
    f"Sliding window (tiled, causal, window={rows[0]['window']}, B=1) beside the full causal"
    " rule: ms, and ms per 1024 tokens (flat = linear in T):",
    "",
    "| mode | T | window ms (min) | window, per 1k tokens | full causal ms (min) |"
    " full, per 1k tokens | full / window |",
    "|---|---|---|---|---|---|---|",
  ]
  for r in rows:
    ms, low, per = r["ms"], r.get("min_ms", r["ms"]), r["ms_per_1k_tokens"]
    lines.append(
      f"| {r['mode']} | {r['T']} | {ms['window']:.1f} ({low['window']:.1f}) | "
      f"{per['window']:.2f} | {ms['causal']:.1f} ({low['causal']:.1f}) | {per['causal']:.2f} | "
      f"{ms['causal'] / ms['window']:.1f}x |"
    )
  return lines


# --------------------------------------------------------------------------- memory
def _memory_child(impl, mode, B, T, causal, dtype_name, queue):
  """Child process: compile, reset the peak-RSS mark, run once, report the peak above it.

  On an accelerator the device allocator's peak is reported instead of host RSS.
  """
  try:
    compiled, inputs = compiled_case(impl, mode, B, T, causal, jnp.dtype(dtype_name))
    jax.block_until_ready(inputs)
    if jax.default_backend() != "cpu":
      stats = jax.devices()[0].memory_stats() or {}
      base = stats.get("bytes_in_use", 0)
      start = time.perf_counter()
      jax.block_until_ready(compiled(*inputs))
      seconds = time.perf_counter() - start
      peak = (jax.devices()[0].memory_stats() or {}).get("peak_bytes_in_use", 0)
      queue.put({"peak_bytes": max(0, peak - base), "seconds": seconds, "peak_reset": False})
      return
    base = _rss_bytes()
    reset = _reset_peak_rss()
    if not reset:
      base = _peak_rss_bytes()
    start = time.perf_counter()
    jax.block_until_ready(compiled(*inputs))
    seconds = time.perf_counter() - start
    peak = _peak_rss_bytes()
    queue.put({"peak_bytes": max(0, peak - base), "seconds": seconds, "peak_reset": reset})
  except Exception as e:  # noqa: BLE001
    queue.put({"skipped": f"{type(e).__name__}: {str(e).splitlines()[0][:120]}"})


def _peak_rss_bytes() -> int:
  """Peak RSS of this process: VmHWM (Linux; clear_refs resets it), else getrusage.

  getrusage's ru_maxrss also remembers the parent's RSS from before exec, so in a
  spawned child it never drops below that; VmHWM does not.
  """
  try:
    for line in Path("/proc/self/status").read_text().splitlines():
      if line.startswith("VmHWM:"):
        return int(line.split()[1]) * 1024
  except OSError:
    pass
  scale = 1 if sys.platform == "darwin" else 1024  # bytes on macOS, KiB on Linux
  return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * scale


def _rss_bytes() -> int:
  with open("/proc/self/statm") as f:
    return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def _reset_peak_rss() -> bool:
  """Linux: writing 5 to clear_refs resets the peak-RSS mark (VmHWM) to the current RSS."""
  try:
    Path("/proc/self/clear_refs").write_text("5")
    return True
  except OSError:
    return False


def measure_memory(impl, mode, B, T, causal, args) -> dict:
  dtype = jnp.dtype(args.dtype)
  if B * T > args.max_tokens and not (B == 1 and impl == "tiled"):
    return {"skipped": f"B*T above --max-tokens={args.max_tokens}"}
  if B > 1 and T > args.batch_max_T:
    return {"skipped": f"B > 1 measured up to T={args.batch_max_T}"}
  if impl == "auto" and T > args.auto_max_T and resolved_auto(B, T, dtype) == "tiled":
    return {"skipped": "same code as tiled here"}
  need = estimated_bytes(impl, mode, B, T, causal, dtype)
  budget = min(args.mem_budget_gib * GIB, available_bytes() - 2 * GIB)
  if need > budget:
    return {"skipped": f"would need ~{need / GIB:.0f} GiB"}
  ctx = multiprocessing.get_context("spawn")
  queue = ctx.Queue()
  child = ctx.Process(target=_memory_child, args=(impl, mode, B, T, causal, dtype.name, queue))
  child.start()
  try:
    result = queue.get(timeout=args.child_timeout_s)
  except Exception:  # noqa: BLE001 - queue.Empty, or the child died
    result = {"skipped": f"child gave no result (exit code {child.exitcode})"}
  child.join(timeout=60)
  if child.is_alive():
    child.kill()
  return result


# -------------------------------------------------------------------------- targets
def target_checks(results: dict) -> list[dict]:
  """The issue's CPU targets (float32, B=1, N=8, H=64), each beside the measured figure."""

  def row(mode, B, T, causal):
    key = f"{mode}|{int(causal)}|{B}|{T}"
    return results["timing"].get(key, {})

  def val(r, impl, field):
    return r.get(impl, {}).get(field)

  checks = []
  for T in (2048, 8192):
    for causal in (False, True):
      r = row("fwd", 1, T, causal)
      need = 6.0 if (T == 8192 and causal) else 3.5
      checks.append(
        dict(
          target=f"fwd T={T} causal={causal}: tiled >= {need}x xla",
          measured=val(r, "tiled", "vs_xla"),
          bound=need,
          higher=True,
        )
      )
      checks.append(
        dict(
          target=f"fwd T={T} causal={causal}: tiled >= 0.65 of ceiling",
          measured=val(r, "tiled", "ceiling_fraction"),
          bound=0.65,
          higher=True,
        )
      )
  speedups = []
  for T in (2048, 8192):
    for causal in (False, True):
      r = row("fwd+bwd", 1, T, causal)
      speedups.append(val(r, "tiled", "vs_xla"))
      checks.append(
        dict(
          target=f"fwd+bwd T={T} causal={causal}: tiled >= 0.50 of ceiling",
          measured=val(r, "tiled", "ceiling_fraction"),
          bound=0.5,
          higher=True,
        )
      )
  geo = math.exp(sum(map(math.log, speedups)) / 4) if all(speedups) else None
  checks.append(
    dict(
      target="fwd+bwd T in {2048, 8192}, causal and not: geomean tiled >= 3x xla",
      measured=geo,
      bound=3.0,
      higher=True,
    )
  )
  for mode in ("fwd", "fwd+bwd"):
    for B in (1, 8):
      for T in (128, 512):
        for causal in (False, True):
          r = row(mode, B, T, causal)
          checks.append(
            dict(
              target=f"{mode} B={B} T={T} causal={causal}: auto >= 0.95x xla",
              measured=val(r, "auto", "vs_xla"),
              bound=0.95,
              higher=True,
            )
          )
  for acc in results.get("accuracy", []):
    checks.append(
      dict(
        target=f"accuracy T={acc['T']} causal={acc['causal']}: forward <= 1e-5",
        measured=acc["forward_max_abs"],
        bound=1e-5,
        higher=False,
      )
    )
    checks.append(
      dict(
        target=f"accuracy T={acc['T']} causal={acc['causal']}: gradients <= 5e-5",
        measured=acc["gradient_max_abs"],
        bound=5e-5,
        higher=False,
      )
    )
  for T, gib in ((8192, 1.0), (32768, 1.5), (131072, 6.0)):
    peak = results["memory"].get(f"fwd+bwd|1|1|{T}", {}).get("tiled", {}).get("peak_bytes")
    checks.append(
      dict(
        target=f"memory fwd+bwd causal T={T}: tiled <= {gib} GiB",
        measured=None if peak is None else peak / GIB,
        bound=gib,
        higher=False,
      )
    )
  for c in checks:
    m = c["measured"]
    c["met"] = None if m is None else (m >= c["bound"] if c["higher"] else m <= c["bound"])
  return checks


# -------------------------------------------------------------------------- reports
def rate(flops_per_s: float) -> str:
  """GFLOP/s on a CPU's scale, TFLOP/s on an accelerator's."""
  if flops_per_s >= 1e12:
    return f"{flops_per_s / 1e12:.1f} TFLOP/s"
  return f"{flops_per_s / 1e9:.0f} GFLOP/s"


def markdown(results: dict) -> str:
  env = results["environment"]
  unit, scale = ("TFLOP/s", 1e3) if results["ceiling_flops"] >= 1e12 else ("GFLOP/s", 1.0)
  lines = [
    f"# Attention benchmark ({env['backend']}, {env['dtype']}, N={N_HEADS}, H={HEAD_DIM})",
    "",
    f"`{env['command']}` on {env['device']}, jax {env['jax']}, {env['date']}. "
    f"Matmul ceiling (jnp.dot, same process): {rate(results['ceiling_flops'])}.",
    f"CPU: {env.get('cpu_model', '?')}, {env.get('cpus', '?')} cores visible; flags "
    f"{env.get('cpu_flags') or '-'}; XLA_FLAGS={env.get('xla_flags') or '(unset)'}.",
    "Each cell: median ms, and in brackets the speed-up over jax.nn.dot_product_attention"
    " (xla); tiled also shows its fraction of the matmul ceiling.",
    "",
  ]
  if not results["timing"]:  # --window-only
    return "\n".join(lines[:-2] + window_markdown(results.get("window", []))) + "\n"
  impls = [i for i in IMPLS if any(i in row for row in results["timing"].values())]
  lines.append("| mode | causal | B | T | " + " | ".join(impls) + " |")
  lines.append("|---|---|---|---|" + "---|" * len(impls))
  for key, row in results["timing"].items():
    mode, causal, B, T = key.split("|")
    cells = []
    for impl in impls:
      r = row.get(impl, {})
      if "ms" not in r:
        cells.append(r.get("skipped", "").replace("would need", "needs") or "-")
        continue
      cell = f"{r['ms']:.1f}"
      if r.get("vs_xla") is not None and impl != "xla":
        cell += f" ({r['vs_xla']:.2f}x)"
      if impl == "tiled":
        cell += f" [{r['ceiling_fraction']:.0%}]"
      cells.append(cell)
    lines.append(
      f"| {mode} | {'yes' if causal == '1' else 'no'} | {B} | {T} | " + " | ".join(cells) + " |"
    )
  lines += [
    "",
    f"<details><summary>Every column: ms, {unit}, fraction of the ceiling, "
    "speed-up over xla</summary>",
    "",
    f"| mode | causal | B | T | impl | ms | {unit} | of ceiling | vs xla |",
    "|---|---|---|---|---|---|---|---|---|",
  ]
  for key, row in results["timing"].items():
    mode, causal, B, T = key.split("|")
    for impl, r in row.items():
      if "ms" in r:
        vs = "-" if r.get("vs_xla") is None else f"{r['vs_xla']:.2f}x"
        lines.append(
          f"| {mode} | {'yes' if causal == '1' else 'no'} | {B} | {T} | {impl} | "
          f"{r['ms']:.2f} | {r['gflops'] / scale:.1f} | {r['ceiling_fraction']:.1%} | {vs} |"
        )
  lines += ["", "</details>"]
  lines += ["", "Peak memory above the inputs (MiB), one child process per case:", ""]
  mem_impls = [i for i in IMPLS if any(i in row for row in results["memory"].values())]
  lines.append("| mode | causal | B | T | " + " | ".join(mem_impls) + " |")
  lines.append("|---|---|---|---|" + "---|" * len(mem_impls))
  for key, row in results["memory"].items():
    mode, causal, B, T = key.split("|")
    cells = []
    for impl in mem_impls:
      r = row.get(impl, {})
      cells.append(
        f"{r['peak_bytes'] / 2**20:.0f}"
        if "peak_bytes" in r
        else (r.get("skipped", "-").replace("would need", "needs"))
      )
    lines.append(
      f"| {mode} | {'yes' if causal == '1' else 'no'} | {B} | {T} | " + " | ".join(cells) + " |"
    )
  if results.get("crossover"):
    lines += ["", "Crossovers (tiled vs reference, B=1):", ""]
    lines += [f"- {c}" for c in results["crossover"]]
  if results.get("crossover_sweep"):
    lines += [
      "",
      "Short shapes (ms; tiled-mask = the causal rule as a mask array, T=1 = decoding):",
      "",
      "| mode | B | T | S | causal | " + " | ".join(CROSSOVER_IMPLS) + " | fastest |",
      "|---|---|---|---|---|" + "---|" * len(CROSSOVER_IMPLS) + "---|",
    ]
    for r in results["crossover_sweep"]:
      cells = " | ".join(f"{r['ms'][i]:.3f}" for i in CROSSOVER_IMPLS)
      lines.append(
        f"| {r['mode']} | {r['B']} | {r['T']} | {r['S']} | {'yes' if r['causal'] else 'no'} | "
        f"{cells} | {r['fastest']} |"
      )
  lines += window_markdown(results.get("window", []))
  lines += ["", "Targets:", "", "| target | measured | met |", "|---|---|---|"]
  for c in results["targets"]:
    m = c["measured"]
    shown = "-" if m is None else (f"{m:.2e}" if abs(m) < 1e-2 else f"{m:.2f}")
    met = {True: "yes", False: "**no**", None: "not measured"}[c["met"]]
    lines.append(f"| {c['target']} | {shown} | {met} |")
  return "\n".join(lines) + "\n"


def crossovers(results: dict) -> list[str]:
  """First T at which tiled beats reference, per mode / causal / B (from the timings)."""
  found = []
  for mode in ("fwd", "fwd+bwd"):
    for causal in ("0", "1"):
      for B in ("1", "8"):
        Ts = sorted(
          int(k.split("|")[3]) for k in results["timing"] if k.startswith(f"{mode}|{causal}|{B}|")
        )
        first = None
        for T in Ts:
          row = results["timing"][f"{mode}|{causal}|{B}|{T}"]
          ref, tiled = row.get("reference", {}).get("ms"), row.get("tiled", {}).get("ms")
          if ref is not None and tiled is not None and tiled < ref:
            first = T
            break
        causal_word = "causal" if causal == "1" else "full"
        if first is not None:
          found.append(f"{mode}, {causal_word}, B={B}: tiled faster than reference from T={first}")
        elif Ts:
          found.append(f"{mode}, {causal_word}, B={B}: no crossover in T={Ts}")
  return found


def plot(results: dict, path: Path) -> None:
  import matplotlib

  matplotlib.use("Agg")
  import matplotlib.pyplot as plt

  fig, axes = plt.subplots(1, 3, figsize=(16, 4.8))
  for ax, mode in zip(axes[:2], ("fwd", "fwd+bwd"), strict=True):
    for impl in IMPLS:
      for causal, style in (("0", "--"), ("1", "-")):
        pts = sorted(
          (int(k.split("|")[3]), r[impl]["ms"])
          for k, r in results["timing"].items()
          if k.startswith(f"{mode}|{causal}|1|") and "ms" in r.get(impl, {})
        )
        if pts:
          label = f"{impl}{' causal' if causal == '1' else ''}"
          ax.plot(*zip(*pts, strict=True), style, marker="o", label=label)
    ax.set(
      xscale="log",
      yscale="log",
      xlabel="T",
      ylabel="ms (median)",
      title=f"{mode}, B=1, N={N_HEADS}, H={HEAD_DIM}",
    )
    ax.grid(True, which="both", alpha=0.3)
  if axes[1].get_legend_handles_labels()[0]:
    axes[1].legend(fontsize=7, ncol=2)
  ax = axes[2]
  for impl in IMPLS:
    pts = sorted(
      (int(k.split("|")[3]), r[impl]["peak_bytes"] / 2**20)
      for k, r in results["memory"].items()
      if k.startswith("fwd+bwd|1|1|") and "peak_bytes" in r.get(impl, {})
    )
    if pts:
      ax.plot(*zip(*pts, strict=True), marker="o", label=impl)
  ax.set(
    xscale="log",
    yscale="log",
    xlabel="T",
    ylabel="peak MiB above inputs",
    title="memory, fwd+bwd, causal, B=1",
  )
  ax.grid(True, which="both", alpha=0.3)
  if ax.get_legend_handles_labels()[0]:  # --no-memory: an empty panel
    ax.legend(fontsize=7)
  fig.tight_layout()
  fig.savefig(path, dpi=120)


# ----------------------------------------------------------------------------- main
def parse_args(argv=None):
  p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
  p.add_argument("--quick", action="store_true", help="T in {128, 512, 2048} only")
  p.add_argument("--T", type=int, nargs="*", help="override the sequence lengths")
  p.add_argument("--B", type=int, nargs="*", default=[1, 8])
  p.add_argument("--modes", nargs="*", default=["fwd", "fwd+bwd"])
  p.add_argument("--impls", nargs="*", default=None, help="default: all that run here")
  p.add_argument(
    "--memory-T",
    type=int,
    nargs="*",
    default=None,
    help="extra T for tiled memory only (default 131072 in the full run)",
  )
  p.add_argument("--no-memory", action="store_true")
  p.add_argument(
    "--crossover",
    action="store_true",
    help="also time short shapes (T=S<=512, and T=1 decode) for the None rule",
  )
  p.add_argument("--reps", type=int, default=7)
  p.add_argument("--dtype", default=None, help="default float32 on CPU, bfloat16 elsewhere")
  p.add_argument("--mem-budget-gib", type=float, default=16.0)
  p.add_argument("--max-call-s", type=float, default=300.0)
  p.add_argument("--max-tokens", type=int, default=65536, help="skip cases with B*T above this")
  p.add_argument("--batch-max-T", type=int, default=2048, help="time B > 1 only up to this T")
  p.add_argument(
    "--auto-max-T", type=int, default=8192, help="time auto up to this T where it runs tiled"
  )
  p.add_argument(
    "--window", type=int, default=None, help="add the sliding-window case with this window"
  )
  p.add_argument("--window-T", type=int, nargs="*", default=[1024, 2048, 4096, 8192])
  p.add_argument(
    "--window-only",
    action="store_true",
    help="time the window case only (window 256 unless --window), into bench_attention_window",
  )
  p.add_argument("--child-timeout-s", type=float, default=3600.0)
  p.add_argument("--out", default=str(RESULTS / "bench_attention"), help="path prefix")
  return p.parse_args(argv)


def main(argv=None):
  args = parse_args(argv)
  backend = jax.default_backend()
  args.dtype = args.dtype or ("float32" if backend == "cpu" else "bfloat16")
  Ts = args.T or ([128, 512, 2048] if args.quick else [128, 512, 2048, 8192, 32768])
  memory_Ts = args.memory_T if args.memory_T is not None else ([] if args.quick else [131072])
  impls = args.impls or [i for i in IMPLS if i != "cudnn" or backend == "gpu"]
  dtype = jnp.dtype(args.dtype)
  if args.window_only:
    Ts, memory_Ts, args.no_memory = [], [], True
    args.window = args.window or 256
    if args.out == str(RESULTS / "bench_attention"):
      args.out = str(RESULTS / "bench_attention_window")
  print(f"backend={backend} dtype={dtype} T={Ts} B={args.B} impls={impls}", flush=True)
  env = environment(dtype, " ".join(["python"] + sys.argv))
  print(f"cpu {env['cpu_model']} flags [{env['cpu_flags']}] XLA_FLAGS={env['xla_flags']!r}")

  before = matmul_ceiling(dtype, args.reps)
  args.ceiling = before["flops_per_s"]
  print(f"matmul ceiling {rate(args.ceiling)}", flush=True)
  results = {
    "environment": env,
    "ceiling_before": before,
    "timing": {},
    "memory": {},
    "accuracy": [],
  }
  if args.window:
    results["window"] = window_sweep(args)
  for mode in args.modes:
    for causal in (False, True):
      for B in args.B:
        for T in Ts:
          key = f"{mode}|{int(causal)}|{B}|{T}"
          rows = time_case(mode, B, T, causal, impls, args)
          results["timing"][key] = rows
          print(
            key,
            {
              i: (f"{r['ms']:.1f}ms x{r['vs_xla'] or 0:.2f}" if "ms" in r else r["skipped"])
              for i, r in rows.items()
            },
            flush=True,
          )
  if args.crossover:
    results["crossover_sweep"] = crossover_sweep(args)
  if backend == "cpu" and dtype == jnp.float32:
    for T in [t for t in Ts if t <= 2048]:
      for causal in (False, True):
        results["accuracy"].append(accuracy(1, T, causal))
        print("accuracy", results["accuracy"][-1], flush=True)
  after = matmul_ceiling(dtype, args.reps)
  results["ceiling_after"] = after
  # The higher of the two ceilings: the fractions reported are the conservative ones.
  results["ceiling_flops"] = max(before["flops_per_s"], after["flops_per_s"])
  for row in results["timing"].values():
    for r in row.values():
      if "ms" in r:
        r["ceiling_fraction"] = r["gflops"] * 1e9 / results["ceiling_flops"]
  if not args.no_memory:
    for mode in args.modes:
      for causal in (False, True):
        for B in args.B:
          for T in Ts + [t for t in memory_Ts if mode == "fwd+bwd" and causal and B == 1]:
            key = f"{mode}|{int(causal)}|{B}|{T}"
            mem_impls = impls if T in Ts else ["tiled"]
            results["memory"][key] = {
              i: measure_memory(i, mode, B, T, causal, args) for i in mem_impls
            }
            print(
              "memory",
              key,
              {
                i: (f"{r['peak_bytes'] / 2**20:.0f} MiB" if "peak_bytes" in r else r["skipped"])
                for i, r in results["memory"][key].items()
              },
              flush=True,
            )
  results["crossover"] = crossovers(results)
  results["targets"] = target_checks(results) if backend == "cpu" else []
  out = Path(args.out)
  out.parent.mkdir(parents=True, exist_ok=True)
  out.with_suffix(".json").write_text(json.dumps(results, indent=1, default=float))
  out.with_suffix(".md").write_text(markdown(results))
  if not args.window_only:  # the plot is of the main table
    plot(results, out.with_suffix(".png"))
  print(markdown(results))
  print(f"wrote {out}.json, .md" + ("" if args.window_only else ", .png"))


if __name__ == "__main__":
  main()
