"""The speed work's GPU targets in one prepared run: bfloat16 attention and the baby GPT.

COMMAND:  python experiments/gpu_targets.py           # on a machine with an NVIDIA GPU
          python experiments/gpu_targets.py --smoke   # anywhere: tiny sizes, the same code path
EXPECTED: writes experiments/results/gpu/gpu.{json,md}. On one H200 the attention part
          takes about a minute and the baby GPT (5,000 steps) a few more; nothing has been
          measured yet (no GPU was available).

Part 1, attention: B=4, N=16, H=128, T=S=8192, bfloat16, causal and not, forward and
forward+backward (a random output cotangent), each implementation side by side round by
round: `None` (what a model gets), "cudnn", "tiled" (our portable kernel); "xla" holds
the [B, N, T, S] logits, so it runs only with --with-xla. FLOPs: 4 B N T^2 H forward,
half when causal, 3.5 times that forward+backward. Targets: `None` picks cuDNN; forward,
non-causal, at least 550 TFLOP/s; the tiled kernel's forward+backward at least 0.8x
cuDNN's speed.

Part 2, the baby GPT of configs/char_lm.py:baby in bfloat16 (parameters float32), trained
from scratch for its 5,000 steps with the held-out loss every 250: best held-out loss
(target <= 1.47; nanoGPT reports 1.4697 in about 3 minutes on one A100), wall time and
training tokens per second. --smoke shrinks both parts (T=256, a 1-layer 32-wide GPT for
20 steps) so that a CPU can check the script end to end.
"""

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

import jax
import jax.numpy as jnp

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:  # python experiments/gpu_targets.py: make `experiments` importable
  sys.path.insert(0, str(ROOT))

RESULTS = ROOT / "experiments" / "results" / "gpu"
NANOGPT_BEST_VAL_LOSS = 1.4697  # nanoGPT shakespeare_char, one A100 (its README)
TARGETS = {"fwd_tflops": 550.0, "tiled_vs_cudnn": 0.8, "best_val_loss": 1.47}
FULL = {"B": 4, "N": 16, "H": 128, "T": 8192}
SMOKE = {"B": 1, "N": 2, "H": 128, "T": 256}


def attention_case(impl: str, mode: str, causal: bool, shape: dict):
  """(compiled call, its inputs) of one bench_attention column ("auto" is `None`)."""
  from experiments.bench_attention import compiled_case

  heads = (shape["N"], shape["H"])
  return compiled_case(impl, mode, shape["B"], shape["T"], causal, jnp.bfloat16, heads=heads)


def time_attention(shape: dict, impls: list, rounds: int, calls: int) -> list[dict]:
  """Median seconds per call of each implementation, per (mode, causal), interleaved."""
  B, N, H, T = shape["B"], shape["N"], shape["H"], shape["T"]
  rows = []
  for mode in ("fwd", "fwd+bwd"):
    for causal in (False, True):
      cases = {impl: attention_case(impl, mode, causal, shape) for impl in impls}
      times = {impl: [] for impl in impls}
      for compiled, args in cases.values():
        jax.block_until_ready(compiled(*args))
      for _ in range(rounds):
        for impl, (compiled, args) in cases.items():
          start = time.perf_counter()
          for _ in range(calls):
            out = compiled(*args)
          jax.block_until_ready(out)
          times[impl].append((time.perf_counter() - start) / calls)
      flops = 4.0 * B * N * T * T * H * (0.5 if causal else 1.0) * (3.5 if mode != "fwd" else 1)
      for impl in impls:
        seconds = statistics.median(times[impl])
        name = "None" if impl == "auto" else impl
        row = {"mode": mode, "causal": causal, "impl": name, "ms": 1e3 * seconds}
        rows.append(row | {"tflops": flops / seconds / 1e12})
  return rows


def baby_config(smoke: bool, corpus_path: str | None):
  from experiments.bench_train import load_recipe
  from tfmr_jax import config as config_lib

  config = load_recipe("baby")
  config.model.dtype = "bfloat16"
  if corpus_path is not None:
    config.task.corpus_path = corpus_path
  if smoke:
    config.task.block_size = 32
    config.model.update(num_layers=1, num_heads=2, d_model=32)
    config.train.update(num_steps=20, batch_size=4, eval_every=10, eval_batch_size=4)
    config.train.update(checkpoint_every=20, log_every=10)
    config.train.update(progress_bar=False, tensorboard=False)
    config.optim.warmup_steps = 5
  return config_lib.validate(config)


def train_baby(smoke: bool, corpus_path: str | None) -> dict:
  """Best held-out loss, wall time and training tokens per second of the baby GPT."""
  from tfmr_jax.train import train
  from tfmr_jax.train.metrics_log import read_metrics

  config = baby_config(smoke, corpus_path)
  with tempfile.TemporaryDirectory() as workdir:
    final = train(config, workdir)
    held_out = read_metrics(workdir, final["split"])
  t = config.train
  tokens = t.num_steps * t.batch_size * config.task.block_size
  best = min(held_out, key=lambda r: r["loss"])
  return {
    "steps": t.num_steps,
    "best_val_loss": best["loss"],
    "best_step": best["step"],
    "final_val_loss": final["loss"],
    "wall_time_s": final["wall_time_s"],
    "tokens_per_s": tokens / final["wall_time_s"],
  }


def checks(results: dict) -> list[dict]:
  """Each target beside what was measured."""
  rows = {(r["mode"], r["causal"], r["impl"]): r for r in results["attention"]}
  out = [{"target": "None picks cuDNN", "measured": results["none_picks"]}]
  out[0]["met"] = results["none_picks"] == "cudnn"
  fwd = rows.get(("fwd", False, "None"))
  if fwd:
    out.append(
      {
        "target": f"forward, non-causal, >= {TARGETS['fwd_tflops']:.0f} TFLOP/s",
        "measured": f"{fwd['tflops']:.0f} TFLOP/s",
        "met": fwd["tflops"] >= TARGETS["fwd_tflops"],
      }
    )
  for causal in (False, True):
    tiled, cudnn = rows.get(("fwd+bwd", causal, "tiled")), rows.get(("fwd+bwd", causal, "cudnn"))
    if tiled and cudnn:
      ratio = cudnn["ms"] / tiled["ms"]
      out.append(
        {
          "target": f"tiled forward+backward{' (causal)' if causal else ''} >= 0.8x cuDNN",
          "measured": f"{ratio:.2f}x",
          "met": ratio >= TARGETS["tiled_vs_cudnn"],
        }
      )
  baby = results["baby"]
  out.append(
    {
      "target": f"baby GPT best val loss <= {TARGETS['best_val_loss']}",
      "measured": f"{baby['best_val_loss']:.4f} (step {baby['best_step']})",
      "met": baby["best_val_loss"] <= TARGETS["best_val_loss"],
    }
  )
  return out


def markdown(results: dict) -> str:
  lines = [
    "# GPU targets",
    "",
    f"`{results['command']}`, {results['date']}; jax {results['jax']}; device: "
    f"{results['device']}; attention B={results['shape']['B']}, N={results['shape']['N']}, "
    f"H={results['shape']['H']}, T={results['shape']['T']}, bfloat16.",
    "",
    "| mode | causal | implementation | ms | TFLOP/s |",
    "|---|---|---|---|---|",
  ]
  lines += [
    f"| {r['mode']} | {'yes' if r['causal'] else 'no'} | {r['impl']} | {r['ms']:.2f} "
    f"| {r['tflops']:.3g} |"
    for r in results["attention"]
  ]
  baby = results["baby"]
  lines += [
    "",
    f"Baby GPT, bfloat16: best val loss {baby['best_val_loss']:.4f} at step "
    f"{baby['best_step']} (nanoGPT: {NANOGPT_BEST_VAL_LOSS}), {baby['steps']} steps in "
    f"{baby['wall_time_s']:.0f} s with compilation and evaluation, "
    f"{baby['tokens_per_s']:,.0f} training tokens/s.",
    "",
    "| target | measured | met |",
    "|---|---|---|",
  ]
  lines += [
    f"| {c['target']} | {c['measured']} | {'yes' if c['met'] else '**no**'} |"
    for c in results["checks"]
  ]
  return "\n".join(lines) + "\n"


def main(argv=None) -> dict:
  parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
  parser.add_argument("--smoke", action="store_true", help="tiny sizes: check the script")
  parser.add_argument("--with-xla", action="store_true", help="also time jax.nn's XLA path")
  parser.add_argument("--rounds", type=int, default=5)
  parser.add_argument("--calls", type=int, default=10, help="calls per round")
  parser.add_argument("--corpus-path", default=None, help="the char-LM corpus (default: its own)")
  parser.add_argument("--out", type=Path, default=RESULTS)
  args = parser.parse_args(argv)
  if args.rounds < 1 or args.calls < 1:
    parser.error(f"--rounds and --calls must be at least 1, got {args.rounds}, {args.calls}")
  from tfmr_jax.ops.implementations import choose_implementation

  shape = SMOKE if args.smoke else FULL
  gpu = jax.default_backend() == "gpu"
  impls = ["auto", "tiled"] + (["cudnn"] if gpu else []) + (["xla"] if args.with_xla else [])
  picks = choose_implementation(
    B=shape["B"], T=shape["T"], S=shape["T"], N=shape["N"], H=shape["H"], dtype=jnp.bfloat16
  )
  results = {
    "command": " ".join(["python experiments/gpu_targets.py", *(argv or sys.argv[1:])]),
    "date": time.strftime("%Y-%m-%d %H:%M"),
    "jax": jax.__version__,
    "device": jax.devices()[0].device_kind,
    "shape": shape,
    "none_picks": picks,
    "attention": time_attention(shape, impls, args.rounds, args.calls),
    "baby": train_baby(args.smoke, args.corpus_path),
  }
  results["checks"] = checks(results)
  args.out.mkdir(parents=True, exist_ok=True)
  (args.out / "gpu.json").write_text(json.dumps(results, indent=2) + "\n")
  (args.out / "gpu.md").write_text(markdown(results))
  print(markdown(results))
  return results


if __name__ == "__main__":
  main()
