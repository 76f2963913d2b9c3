"""Training-step speed and model FLOPs utilisation (MFU), per attention implementation.

COMMAND:  python experiments/bench_train.py                      # recipes cpu and baby
          python experiments/bench_train.py --recipes cpu --reps 2   # a quick look
EXPECTED: writes experiments/results/bench_train.{json,md}; about 6 minutes on 2 idle CPU
          cores (baby takes about 10 s a step there, so --max-seconds leaves it 6 rounds).
          Measured there (float32, jnp.dot 196 GFLOP/s): cpu 51-53 ms/step, MFU 36-38%;
          baby 10.1-12.4 s/step, MFU 46-56%, best auto (tiled). The targets (cpu >= 55%,
          baby >= 65%) are not met; experiments/profile_step.py shows where the time goes.

Each recipe is configs/char_lm.py:<recipe> (cpu: 4 layers, 4 heads, 128 wide, block 64,
batch 12; baby: 6 layers, 6 heads, 384 wide, block 256, batch 64, dropout 0.2), trained
by its real step (tfmr_jax.train.step: AdamW, clipping, schedule, dropout as in the
recipe) on its real corpus batches, with `model.attention_implementation` set per column:
  auto       None: tj.attention's own choice (what a model gets by default)
  reference  the einsum + softmax with [B, N, T, T] logits
  tiled      the online-softmax kernel, O(T) memory
  xla        jax.nn.dot_product_attention(implementation="xla")
  cudnn      jax.nn.dot_product_attention(implementation="cudnn"), GPU only (needs bf16/fp16)

Every step is compiled ahead of time and run once before timing. Then rounds: each round
visits the implementations in a fresh random order; a step shorter than a second gets an
untimed call of its own first, then one timed call (blocked until its outputs are
ready). Each call is a real training step: the state it returns is the next call's, and
batches cycle through a fixed set drawn before timing, so input generation is not timed.
Rounds stop at --reps or when the next would overrun --max-seconds (at least one round).
Where auto resolves to one of the other columns (tiled on CPU), the two compile the same
step: their gap shows how noisy the run was.

Columns:
  ms/step   median over the rounds (min in the JSON)
  tokens/s  B * T / median step time
  rate      model FLOPs per step / median step time (GFLOP/s on CPU, TFLOP/s beyond)
  MFU       that rate / the matmul ceiling: the best rate of jnp.dot on square matrices
            (experiments.bench_attention.matmul_ceiling) measured in this process before
            and after the timings; the higher of the two, so MFU is the conservative one.
  vs auto   auto's median step time / this one's (above 1: faster than the default)

Model FLOPs (matmuls only; embeddings lookups, norms, softmax, biases, the optimizer
count 0), with L layers, D width, N heads, K kv heads, H = D / N head dim, F
feed-forward width, V vocabulary, T block size, B batch, per token of the forward pass:
  L * ( 4 D N H            query and output projections, 2 D N H each
      + 4 D K H            key and value projections, 2 D K H each
      + 4 D F              feed-forward, D -> F -> D
      + 2 N H (T + 1) )    q.k and p.v over the T (T + 1) / 2 (query, key) pairs the
                           causal mask admits per sequence: 2 * 2 N H * (T + 1) / 2
  + 2 D V                  LM head (tied to the token embedding)
and 3 times that for forward + backward (the PaLM convention), times B * T per step.
For comparison the nanoGPT estimate 6 N_params + 12 L D T per token (N_params without
the position table, as nanoGPT's get_num_params; attention counted without the causal
half) is printed beside it.

--dtype sets the models' compute dtype (`model.dtype`: float32 or bfloat16); parameters
and optimizer state stay float32, and the matmul ceiling is measured in the same dtype.
"""

import argparse
import importlib.util
import json
import os
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:  # python experiments/bench_train.py: make `experiments` importable
  sys.path.insert(0, str(ROOT))

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402

from experiments.bench_attention import environment, matmul_ceiling, rate  # noqa: E402
from tfmr_jax import config as config_lib  # noqa: E402
from tfmr_jax.models import count_params  # noqa: E402
from tfmr_jax.ops.implementations import (  # noqa: E402
  IMPLEMENTATIONS,
  choose_implementation,
  cudnn_supports,
)
from tfmr_jax.tasks import make_task  # noqa: E402
from tfmr_jax.train.build import build_model  # noqa: E402
from tfmr_jax.train.optim import build_optimizer  # noqa: E402
from tfmr_jax.train.sharding import place_state, step_out_shardings  # noqa: E402
from tfmr_jax.train.step import init_state, make_train_step  # noqa: E402

RESULTS = ROOT / "experiments" / "results"
RECIPE_FILE = ROOT / "configs" / "char_lm.py"
IMPLS = ("auto",) + IMPLEMENTATIONS
DTYPES = ("float32", "bfloat16")
NUM_BATCHES = 8
# The targets: fraction of the matmul ceiling for the best implementation and auto.
TARGETS = {"cpu": 0.55, "baby": 0.65}


# ---------------------------------------------------------------------------- FLOPs
def model_flops_per_token(
  *,
  num_layers: int,
  d_model: int,
  num_heads: int,
  num_kv_heads: int | None,
  d_ff: int | None,
  vocab_size: int,
  block_size: int,
) -> dict:
  """Matmul FLOPs per token of a causal GPT (the module docstring's formula), by part.

  Returns {"projections", "feed_forward", "attention", "lm_head", "forward", "train"}:
  the forward pass's parts (all layers), their sum, and 3 times the sum.
  """
  L, D, N, V, T = num_layers, d_model, num_heads, vocab_size, block_size
  K = N if num_kv_heads is None else num_kv_heads
  F = 4 * D if d_ff is None else d_ff
  H = D // N
  parts = {
    "projections": L * (4 * D * N * H + 4 * D * K * H),
    "feed_forward": L * 4 * D * F,
    "attention": L * 2 * N * H * (T + 1),
    "lm_head": 2 * D * V,
  }
  parts["forward"] = sum(parts.values())
  parts["train"] = 3 * parts["forward"]
  return parts


def config_flops_per_token(config, vocab_size: int) -> dict:
  """`model_flops_per_token` of a validated config's model and block size."""
  m = config.model
  return model_flops_per_token(
    num_layers=m.num_layers,
    d_model=m.d_model,
    num_heads=m.num_heads,
    num_kv_heads=m.num_kv_heads,
    d_ff=m.d_ff,
    vocab_size=vocab_size,
    block_size=config.task.block_size,
  )


def nanogpt_flops_per_token(*, n_params: int, num_layers: int, d_model: int, block_size: int):
  """nanoGPT's estimate_mfu: 6 N + 12 L D T per token (N without the position table)."""
  return 6 * n_params + 12 * num_layers * d_model * block_size


# -------------------------------------------------------------------------- recipes
def load_recipe(recipe: str):
  """configs/char_lm.py:get_config(recipe), unvalidated; ValueError names unknown presets."""
  spec = importlib.util.spec_from_file_location("char_lm_recipe", RECIPE_FILE)
  module = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(module)
  return module.get_config(recipe)


def recipe_config(recipe: str, impl: str, corpus_path: str | None, dtype: str = "float32"):
  """The validated config of `recipe` with the attention implementation of column `impl`,
  computing in `dtype`."""
  config = load_recipe(recipe)
  config.model.attention_implementation = None if impl == "auto" else impl
  config.model.dtype = dtype
  if corpus_path is not None:
    config.task.corpus_path = corpus_path
  return config_lib.validate(config)


def build_step(config, task, batches: list[dict], mesh=None) -> dict:
  """The recipe's real train step, AOT-compiled, with its initial state and parameter count.

  mesh: None = one device; else the state is placed on `mesh` as `tfmr-jax train` places
  it (`batches` must already be split over it).
  """
  model = build_model(config, task, seed=config.train.seed)
  n_params = count_params(model)
  tx, _ = build_optimizer(config)
  graphdef, _, state = init_state(model, tx)
  out_shardings = None
  if mesh is not None:
    state = place_state(state, mesh)
    out_shardings = step_out_shardings(state, mesh)
  step = make_train_step(
    graphdef,
    tx,
    data_format=task.format,
    label_smoothing=config.optim.label_smoothing,
    out_shardings=out_shardings,
  )
  start = time.perf_counter()
  compiled = step.lower(state, batches[0]).compile()
  return {
    "compiled": compiled,
    "state": state,
    "compile_s": time.perf_counter() - start,
    "n_params": n_params,
  }


def placed_step(config, task, host_batches: list[dict], host_devices: int = 1):
  """(Column, build_step's dict) of the config's step over `host_batches`: on one device,
  or data parallel over `host_devices` CPU devices (the process must have started with
  them), the batches placed as `tfmr-jax train` places them."""
  mesh = None
  if host_devices > 1:
    from tfmr_jax.train.mesh import DATA_PARALLEL, make_mesh
    from tfmr_jax.train.sharding import put_batch

    mesh = make_mesh(DATA_PARALLEL)
    batches = [put_batch(b, mesh) for b in host_batches]
  else:
    batches = [jax.device_put(b) for b in host_batches]
  built = build_step(config, task, batches, mesh=mesh)
  return Column(built, batches), built


class Column:
  """One implementation's compiled step, its evolving state and its batch counter."""

  def __init__(self, built: dict, batches: list[dict]):
    self.compiled, self.state, self.batches = built["compiled"], built["state"], batches
    self.calls, self.times_s, self.loss = 0, [], float("nan")

  def call(self) -> float:
    """One training step, blocked until its outputs are ready; returns its seconds."""
    batch = self.batches[self.calls % len(self.batches)]
    start = time.perf_counter()
    self.state, metrics = self.compiled(self.state, batch)
    jax.block_until_ready((self.state, metrics))
    seconds = time.perf_counter() - start
    self.calls += 1
    self.loss = float(metrics["loss"])
    return seconds


def bench_recipe(recipe: str, impls: list[str], args) -> dict:
  """Times the recipe's training step per implementation, interleaved round by round."""
  backend = jax.default_backend()
  base = recipe_config(recipe, "auto", args.corpus_path, args.dtype)
  task = make_task(**base.task)
  m, t = base.model, base.train
  B, T = t.batch_size, base.task.block_size
  device = jax.devices()[0]
  batches = [
    jax.device_put(task.train_batch(t.seed, step, B), device) for step in range(NUM_BATCHES)
  ]
  H = m.d_model // m.num_heads
  out = {
    "model": {
      "num_layers": m.num_layers,
      "num_heads": m.num_heads,
      "num_kv_heads": m.num_kv_heads,
      "d_model": m.d_model,
      "d_ff": 4 * m.d_model if m.d_ff is None else m.d_ff,
      "vocab_size": task.vocab_size,
      "block_size": T,
      "batch_size": B,
      "dropout": m.dropout,
    },
    "auto_resolves_to": choose_implementation(
      B=B, T=T, S=T, N=m.num_heads, H=H, dtype=jnp.dtype(args.dtype)
    ),
    "impls": {},
  }
  flops = config_flops_per_token(base, task.vocab_size)
  out["flops_per_token"] = flops
  out["model_flops_per_step"] = flops["train"] * B * T

  columns = {}
  for impl in impls:
    if impl == "cudnn" and not cudnn_supports(dtype=args.dtype, H=H, backend=backend):
      out["impls"][impl] = {"skipped": f"cudnn needs bf16/fp16 on a GPU; here {args.dtype}"}
      continue
    try:
      built = build_step(recipe_config(recipe, impl, args.corpus_path, args.dtype), task, batches)
      column = Column(built, batches)
      first_s = column.call()  # warm-up
    except Exception as e:  # noqa: BLE001 - a column that cannot run says why
      out["impls"][impl] = {"skipped": f"{type(e).__name__}: {str(e).splitlines()[0][:120]}"}
      continue
    out["n_params"] = built["n_params"]
    columns[impl] = column
    out["impls"][impl] = {"compile_s": built["compile_s"], "first_s": first_s}
    print(
      f"{recipe} {impl}: compiled in {built['compile_s']:.1f} s, first step {first_s * 1e3:.1f} ms",
      flush=True,
    )
  if "n_params" in out:
    n_non_embedding = out["n_params"] - T * m.d_model  # minus the learned position table
    out["nanogpt_flops_per_token"] = nanogpt_flops_per_token(
      n_params=n_non_embedding, num_layers=m.num_layers, d_model=m.d_model, block_size=T
    )
    out["nanogpt_flops_per_step"] = out["nanogpt_flops_per_token"] * B * T

  # Each round visits the columns in a fresh random order; a short step gets an untimed
  # call of its own first, as in training, where the same step runs back to back.
  rng = np.random.default_rng(sum(map(ord, recipe)))
  start, rounds, last_round_s = time.perf_counter(), 0, 0.0
  while columns and rounds < args.reps:
    if rounds and time.perf_counter() - start + last_round_s > args.max_seconds:
      break
    round_start = time.perf_counter()
    for impl in rng.permutation(list(columns)):
      column = columns[impl]
      if out["impls"][impl]["first_s"] < 1.0:
        column.call()
      column.times_s.append(column.call())
    last_round_s = time.perf_counter() - round_start
    rounds += 1
  out["rounds"] = rounds
  out["timed_s"] = time.perf_counter() - start

  for impl, column in columns.items():
    median = statistics.median(column.times_s)
    out["impls"][impl].update(
      times_s=column.times_s,
      ms=1e3 * median,
      min_ms=1e3 * min(column.times_s),
      tokens_per_s=B * T / median,
      flops_per_s=out["model_flops_per_step"] / median,
      nanogpt_flops_per_s=out["nanogpt_flops_per_step"] / median,
      last_loss=column.loss,
    )
  auto = out["impls"].get("auto", {}).get("ms")
  for r in out["impls"].values():
    if "ms" in r:
      r["vs_auto"] = auto / r["ms"] if auto else None
  return out


def add_fractions(results: dict) -> None:
  """MFU (and the nanoGPT-count figure) of every timed column, against results' ceiling."""
  ceiling = results["ceiling_flops"]
  for recipe in results["recipes"].values():
    for r in recipe["impls"].values():
      if "ms" in r:
        r["mfu"] = r["flops_per_s"] / ceiling
        r["mfu_nanogpt"] = r["nanogpt_flops_per_s"] / ceiling


# -------------------------------------------------------------------------- targets
def target_checks(results: dict) -> list[dict]:
  """The issue's MFU targets (best implementation, and auto), beside the measured figures."""
  checks = []
  for recipe, bound in TARGETS.items():
    result = results["recipes"].get(recipe, {})
    timed = {i: r for i, r in result.get("impls", {}).items() if "mfu" in r}
    best = max(timed, key=lambda i: timed[i]["mfu"], default=None)
    resolved = result.get("auto_resolves_to")
    labels = (
      ("best", best, f"best ({best})" if best else "best"),
      ("auto", "auto" if "auto" in timed else None, f"auto (the default; runs {resolved})"),
    )
    for kind, impl, label in labels:
      measured = timed[impl]["mfu"] if impl else None
      checks.append(
        {
          "target": f"{recipe}: {label} MFU >= {bound:.0%}",
          "recipe": recipe,
          "which": kind,
          "measured": measured,
          "bound": bound,
          "met": None if measured is None else measured >= bound,
        }
      )
  return checks


# -------------------------------------------------------------------------- reports
def markdown(results: dict) -> str:
  env = results["environment"]
  gpu_scale = results["ceiling_flops"] >= 1e12
  unit, scale = ("TFLOP/s", 1e12) if gpu_scale else ("GFLOP/s", 1e9)
  lines = [
    f"# Training-step benchmark ({env['backend']}, {env['dtype']})",
    "",
    f"`{env['command']}` on {env['device']} ({env['cpus']} CPUs), jax {env['jax']}, "
    f"{env['date']}; {env['wall_s']:.0f} s in all.",
    f"Matmul ceiling (jnp.dot, same process): {rate(results['ceiling_before']['flops_per_s'])}"
    f" before, {rate(results['ceiling_after']['flops_per_s'])} after; MFU uses the higher.",
    "",
    f"| recipe | impl | ms/step | tokens/s | {unit} | MFU | vs auto |",
    "|---|---|---|---|---|---|---|",
  ]
  for name, recipe in results["recipes"].items():
    for impl, r in recipe["impls"].items():
      if "ms" not in r:
        lines.append(f"| {name} | {impl} | {r['skipped']} | | | | |")
        continue
      vs = "-" if r.get("vs_auto") is None else f"{r['vs_auto']:.2f}x"
      lines.append(
        f"| {name} | {impl} | {r['ms']:.1f} | {r['tokens_per_s']:,.0f} | "
        f"{r['flops_per_s'] / scale:.1f} | {r['mfu']:.1%} | {vs} |"
      )
  lines += ["", "Per recipe:", ""]
  for name, recipe in results["recipes"].items():
    m, f = recipe["model"], recipe["flops_per_token"]
    lines.append(
      f"- {name}: L={m['num_layers']} N={m['num_heads']} D={m['d_model']} F={m['d_ff']} "
      f"V={m['vocab_size']} T={m['block_size']} B={m['batch_size']} dropout={m['dropout']}; "
      f"auto runs {recipe['auto_resolves_to']}; {recipe['rounds']} timed round(s) in "
      f"{recipe['timed_s']:.0f} s. Model FLOPs per token {f['train']:,} (3 x forward "
      f"{f['forward']:,}: projections {f['projections']:,}, feed-forward "
      f"{f['feed_forward']:,}, attention {f['attention']:,}, LM head {f['lm_head']:,}); "
      f"per step {recipe['model_flops_per_step'] / 1e9:.2f} GFLOP."
    )
    if "nanogpt_flops_per_token" in recipe:
      ratio = recipe["nanogpt_flops_per_token"] / f["train"]
      mfus = ", ".join(
        f"{i} {r['mfu_nanogpt']:.1%}" for i, r in recipe["impls"].items() if "mfu_nanogpt" in r
      )
      lines.append(
        f"  nanoGPT estimate 6 N + 12 L D T = {recipe['nanogpt_flops_per_token']:,} per token "
        f"(N = {recipe['n_params'] - m['block_size'] * m['d_model']:,} without the position "
        f"table), {ratio:.2f}x ours; MFU by it: {mfus}."
      )
  lines += ["", "Targets:", "", "| target | measured | met |", "|---|---|---|"]
  for c in results["targets"]:
    shown = "-" if c["measured"] is None else f"{c['measured']:.1%}"
    met = {True: "yes", False: "**no**", None: "not measured"}[c["met"]]
    lines.append(f"| {c['target']} | {shown} | {met} |")
  return "\n".join(lines) + "\n"


# ----------------------------------------------------------------------------- main
def parse_args(argv=None):
  p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
  p.add_argument(
    "--recipes", nargs="+", default=["cpu", "baby"], help="presets of configs/char_lm.py"
  )
  p.add_argument(
    "--impls", nargs="+", default=None, help=f"of {IMPLS}; default all but cudnn, plus cudnn on GPU"
  )
  p.add_argument("--reps", type=int, default=10, help="timed rounds (at most)")
  p.add_argument(
    "--max-seconds",
    type=float,
    default=300.0,
    help="per recipe: no new round once the rounds would pass this",
  )
  p.add_argument(
    "--corpus-path", default=None, help="overrides task.corpus_path (default: the recipe's)"
  )
  p.add_argument("--dtype", default="float32", help=f"compute dtype, one of {DTYPES}")
  p.add_argument("--out", default=str(RESULTS / "bench_train"), help="path prefix")
  args = p.parse_args(argv)
  check_args(p, args)
  return args


def check_args(parser: argparse.ArgumentParser, args) -> None:
  """Every flag checked before anything compiles; parser.error names value and choices."""
  backend = jax.default_backend()
  for recipe in args.recipes:
    try:
      load_recipe(recipe)
    except ValueError as e:
      parser.error(f"--recipes: {e}")
  if args.impls is None:
    args.impls = [i for i in IMPLS if i != "cudnn" or backend == "gpu"]
  for impl in args.impls:
    if impl not in IMPLS:
      parser.error(f"--impls: unknown implementation {impl!r}; choose from {IMPLS}")
    if impl == "cudnn" and backend != "gpu":
      parser.error(f"--impls: cudnn needs a GPU backend, this one is {backend!r}")
  if len(set(args.impls)) != len(args.impls):
    parser.error(f"--impls: {args.impls} names an implementation twice")
  if args.dtype not in DTYPES:
    parser.error(f"--dtype {args.dtype!r}: choose from {DTYPES}")
  if args.reps < 1:
    parser.error(f"--reps must be at least 1, got {args.reps}")
  if not args.max_seconds > 0:
    parser.error(f"--max-seconds must be positive, got {args.max_seconds}")
  if args.corpus_path is not None and not os.path.exists(args.corpus_path):
    parser.error(f"--corpus-path {args.corpus_path!r} does not exist")


def main(argv=None) -> dict:
  wall_start = time.perf_counter()
  args = parse_args(argv)
  backend = jax.default_backend()
  dtype = jnp.dtype(args.dtype)
  print(f"backend={backend} dtype={dtype} recipes={args.recipes} impls={args.impls}", flush=True)
  before = matmul_ceiling(dtype, min(args.reps, 5))
  print(f"matmul ceiling {rate(before['flops_per_s'])}", flush=True)
  command = " ".join(["python"] + (sys.argv if argv is None else ["bench_train.py", *argv]))
  results = {
    "environment": environment(dtype, command),
    "ceiling_before": before,
    "recipes": {},
  }
  for recipe in args.recipes:
    results["recipes"][recipe] = bench_recipe(recipe, args.impls, args)
    print(
      recipe,
      {
        i: (f"{r['ms']:.1f} ms" if "ms" in r else r["skipped"])
        for i, r in results["recipes"][recipe]["impls"].items()
      },
      flush=True,
    )
  after = matmul_ceiling(dtype, min(args.reps, 5))
  results["ceiling_after"] = after
  results["ceiling_flops"] = max(before["flops_per_s"], after["flops_per_s"])
  add_fractions(results)
  results["targets"] = target_checks(results)
  results["environment"]["wall_s"] = time.perf_counter() - wall_start
  out = Path(args.out)
  out.parent.mkdir(parents=True, exist_ok=True)
  out.with_suffix(".json").write_text(json.dumps(results, indent=1, default=float))
  out.with_suffix(".md").write_text(markdown(results))
  print(markdown(results))
  print(f"wrote {out}.json, .md")
  return results


if __name__ == "__main__":
  main()
