"""Where a compiled step's time goes: XLA's own per-operation profile, summed by kind.

COMMAND:  python experiments/profile_step.py                    # cpu step, attention T=2048
          python experiments/profile_step.py --cases baby --calls 2   # the baby GPT step
EXPECTED: writes experiments/results/profile/profile.{json,md}; about 2 minutes on 2 CPU
          cores for the default cases (the baby step adds 2 minutes).

Each case is compiled once (the char-LM recipes' real training step as
experiments/bench_train.py builds it, or tj.attention at B=1, N=8, H=64, float32,
causal unless --unmasked), warmed up, then timed over --calls calls for its wall time
and the process's CPU time (all threads): CPU / wall is how many cores it kept busy on
average, spinning included. The same calls are then traced with jax.profiler, XLA:CPU
reporting every operation it runs (--xla_cpu_enable_xprof_traceme), and each operation
counted under one kind (matmul, elementwise, data moves, collective) and one phase (forward,
backward, outside autodiff), as experiments/xla_profile.py defines them.

Ops in flight: the operations' summed time over the wall time (1 when they run one after
the other). Matmul time: the matmul operations' summed time, which the call cannot beat
unless XLA runs matmuls side by side; the matmul rate is the model FLOPs over it.
"""

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:  # python experiments/profile_step.py: make `experiments` importable
  sys.path.insert(0, str(ROOT))

from experiments.xla_profile import hlo_ops, summarize, traced_ops  # noqa: E402

TRACE_FLAG = "--xla_cpu_enable_xprof_traceme=true"
RESULTS = ROOT / "experiments" / "results" / "profile"
STEP_CASES = ("cpu", "baby", "tiny")
ATTENTION_CASES = ("fwd", "fwd+bwd")


def build_case(
  case: str, T: int, corpus_path: str | None, host_devices: int = 1, causal: bool = True
):
  """(call, model FLOPs per call, compiled HLO text) of one case, ready to run.

  host_devices > 1: a step case trains data parallel over that many CPU devices (the
  process must have started with them, as main() arranges), as bench_peer.py times it.
  """
  import jax

  from experiments import bench_attention, bench_peer, bench_train

  if case in STEP_CASES:
    from tfmr_jax.tasks import make_task

    config = bench_peer.step_config(case, corpus_path)
    task = make_task(**config.task)
    B, L = config.train.batch_size, config.task.block_size
    host_batches = [task.train_batch(0, s, B) for s in range(4)]
    column, _ = bench_train.placed_step(config, task, host_batches, host_devices)
    per_token = bench_train.config_flops_per_token(config, task.vocab_size)["train"]
    return column.call, per_token * B * L, column.compiled.as_text()
  compiled, args = bench_attention.compiled_case("auto", case, 1, T, causal, jax.numpy.float32)
  flops = bench_attention.flops(case, 1, T, causal)
  return lambda: jax.block_until_ready(compiled(*args)), flops, compiled.as_text()


def profile_case(case: str, args) -> dict:
  """Time `case` over args.calls calls, then trace as many and sum the operations."""
  import jax

  causal = not args.unmasked
  call, flops, hlo_text = build_case(case, args.T, args.corpus_path, args.host_devices, causal)
  for _ in range(args.warmup):
    call()
  wall, cpu = time.perf_counter(), time.process_time()
  for _ in range(args.calls):
    call()
  wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
  with tempfile.TemporaryDirectory() as trace_dir:
    jax.profiler.start_trace(trace_dir)
    for _ in range(args.calls):
      call()
    jax.profiler.stop_trace()
    events = traced_ops(trace_dir)
  if case in STEP_CASES:
    name = case if args.host_devices == 1 else f"{case}, {args.host_devices} devices"
  else:
    name = f"{case}@{args.T}" + ("" if causal else " (not causal)")
  row = {
    "case": name,
    "wall_ms": 1000 * wall / args.calls,
    "cpu_ms": 1000 * cpu / args.calls,
    "flops": flops,
  }
  row |= summarize(hlo_ops(hlo_text), events, args.calls)
  row["busy_cores"] = row["cpu_ms"] / row["wall_ms"]
  row["ops_in_flight"] = row["ops_ms"] / row["wall_ms"]
  row["matmul_flops_per_s"] = flops / (row["by_kind_ms"]["matmul"] / 1e3)
  return row


def markdown(results: dict) -> str:
  machine = results["machine"]
  ceiling = machine["matmul_flops_per_s"]

  def of_ceiling(flops_per_s: float, style: str) -> str:
    return "-" if not ceiling else format(flops_per_s / ceiling, style)

  rate_shown = f"{ceiling / 1e9:.0f} GFLOP/s" if ceiling else "not measured"
  lines = [
    "# Where the time goes",
    "",
    f"`{results['command']}`, {results['date']}; jax {results['jax']}.",
    "",
    f"Machine: {machine['cpu']}, {machine['cores']} cores; flags {machine['flags']}; fp32 "
    f"matmul (jnp.dot) {rate_shown}; load average "
    f"{machine['load_before']:.1f} before, {machine['load_after']:.1f} after.",
    "",
    "| case | wall ms | MFU | busy cores | ops in flight | matmul ms (rate) "
    "| elementwise ms | data moves ms | collective ms |",
    "|---|---|---|---|---|---|---|---|---|",
  ]
  for row in results["cases"]:
    kinds = row["by_kind_ms"]
    mfu = of_ceiling(row["flops"] / (row["wall_ms"] / 1e3), ".1%")
    rate = of_ceiling(row["matmul_flops_per_s"], ".0%")
    lines.append(
      f"| {row['case']} | {row['wall_ms']:.1f} | {mfu} | {row['busy_cores']:.2f} "
      f"| {row['ops_in_flight']:.2f} | {kinds['matmul']:.1f} ({rate} of the "
      f"ceiling) | {kinds['elementwise']:.1f} | {kinds['data moves']:.1f} "
      f"| {kinds['collective']:.1f} |"
    )
  lines += [
    "",
    "Each kind: the summed wall time of its operations per call. Ops in flight: all "
    "operations' time over the wall time. The matmul rate is the model FLOPs over the "
    "matmul time, against the jnp.dot rate above.",
    "",
  ]
  for row in results["cases"]:
    lines += [f"## {row['case']}", "", "| kind, phase | ms per call |", "|---|---|"]
    lines += [f"| {k} | {ms:.2f} |" for k, ms in row["by_kind_phase_ms"].items() if ms >= 0.01]
    lines += ["", "| costliest operations | kind | runs per call | ms per call |"]
    lines.append("|---|---|---|---|")
    lines += [
      f"| `{o['op']}` | {o['kind']} | {o['runs']} | {o['ms']:.2f} |" for o in row["top_ops"]
    ]
    lines.append("")
  return "\n".join(lines)


def machine_info(reps: int) -> dict:
  import jax.numpy as jnp

  from experiments import bench_attention, bench_peer

  info = bench_peer.machine_info(argparse.Namespace(threads=os.cpu_count()))
  return {
    "cpu": info["cpu"],
    "cores": os.cpu_count(),
    "flags": " ".join(info["cpu_flags"]) or "none of note",
    "matmul_flops_per_s": (
      bench_attention.matmul_ceiling(jnp.float32, reps)["flops_per_s"] if reps else None
    ),
  }


def parse_args(argv=None):
  parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
  parser.add_argument(
    "--cases", nargs="+", default=["cpu", "fwd", "fwd+bwd"], choices=STEP_CASES + ATTENTION_CASES
  )
  parser.add_argument("--T", type=int, default=2048, help="attention length")
  parser.add_argument("--unmasked", action="store_true", help="attention without the causal mask")
  parser.add_argument("--calls", type=int, default=10, help="timed calls, and as many traced")
  parser.add_argument("--warmup", type=int, default=3, help="untimed calls first")
  parser.add_argument(
    "--ceiling-reps", type=int, default=5, help="jnp.dot calls per size (0: not measured)"
  )
  parser.add_argument("--corpus-path", default=None, help="the char-LM corpus (default: its own)")
  parser.add_argument(
    "--host-devices", type=int, default=1, help="steps: data parallel over this many CPU devices"
  )
  parser.add_argument("--out", type=Path, default=RESULTS)
  args = parser.parse_args(argv)
  for name in ("T", "calls", "host_devices"):
    if getattr(args, name) < 1:
      parser.error(f"--{name.replace('_', '-')} must be at least 1, got {getattr(args, name)}")
  for name in ("warmup", "ceiling_reps"):
    if getattr(args, name) < 0:
      parser.error(f"--{name.replace('_', '-')} must be at least 0, got {getattr(args, name)}")
  return args


def main(argv=None) -> dict:
  args = parse_args(argv)
  flags = [TRACE_FLAG]  # set before jax starts its backend
  if args.host_devices > 1:
    flags.append(f"--xla_force_host_platform_device_count={args.host_devices}")
  os.environ["XLA_FLAGS"] = " ".join([os.environ.get("XLA_FLAGS", ""), *flags]).strip()
  import jax

  load_before = os.getloadavg()[0]
  machine = machine_info(args.ceiling_reps)
  cases = []
  for case in args.cases:
    print(f"profiling {case} ...", flush=True)
    cases.append(profile_case(case, args))
  machine |= {"load_before": load_before, "load_after": os.getloadavg()[0]}
  shown = argv if argv is not None else sys.argv[1:]
  results = {
    "command": " ".join(["python experiments/profile_step.py", *shown]),
    "date": time.strftime("%Y-%m-%d %H:%M"),
    "jax": jax.__version__,
    "machine": machine,
    "cases": cases,
  }
  args.out.mkdir(parents=True, exist_ok=True)
  (args.out / "profile.json").write_text(json.dumps(results, indent=2) + "\n")
  (args.out / "profile.md").write_text(markdown(results))
  print(markdown(results))
  print(f"wrote {args.out}/profile.json, .md")
  return results


if __name__ == "__main__":
  main()
