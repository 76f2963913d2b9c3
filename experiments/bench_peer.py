"""The char-LM training step and the attention kernel against a PyTorch peer.

COMMAND:  pip install -e ".[bench]"                  # torch==2.13.0, CPU; never a default
          python experiments/bench_peer.py            # cpu step, attention at T=2048, 8192
          python experiments/bench_peer.py --cases baby   # the 6-layer 384-wide step
          python experiments/bench_peer.py --frameworks jax   # our side only, no torch
EXPECTED: writes experiments/results/peer/peer.{json,md,png}; the four cases took 6 minutes
          on 2 idle CPU cores (baby about 10 s a step there). Measured: the steps 0.78-0.79x
          PyTorch's speed, attention 0.78-1.00x causal and 0.88-0.95x unmasked, MFU below
          the targets (README).

The peer is experiments/peer_torch.py: eager PyTorch, nanoGPT's architecture (pre-LN,
GELU-tanh, tied head), AdamW with decay on matrices only, clipping 1.0, attention through
F.scaled_dot_product_attention. Cases:
  cpu, baby    one training step of configs/char_lm.py:<recipe> (cpu: 4 layers, 128
               wide, block 64, batch 12; baby: 6 layers, 384 wide, block 256, batch 64,
               dropout 0.2): ours is tfmr_jax.train.step's, compiled ahead of time as
               experiments/bench_train.py builds it
  tiny         the cpu recipe shrunk to 1 layer, 16 wide, block 16, batch 2 (smoke tests)
  fwd, fwd+bwd attention alone, B=1, N=8, H=64, float32, at each --T, causal (and with
               --attention-masks none, also unmasked, "(not causal)"): ours is
               tj.attention (what a model gets; the tiled kernel on CPU), theirs SDPA;
               fwd+bwd is the forward and (dq, dk, dv) for a random output cotangent

Fairness: both sides get the same batches (drawn once from the recipe's corpus, written
to a file both read) or the same q, k, v (NumPy, seeded by T); the same threads
(--threads: the child's CPU affinity, torch.set_num_threads, OMP_NUM_THREADS, and for
one thread XLA's intra-op setting); each framework in a fresh child process per case
and round, the rounds alternating A B A B so that drift of a shared machine hits both.
In a child: build (ours: compile), --warmup untimed calls, then --steps timed calls.
A round's figure is the median of its timed calls; a case's figure is the median over
rounds, and "faster by" is the median over rounds of the round's PyTorch / tfmr_jax.

MFU: model FLOPs per step (experiments/bench_train.model_flops_per_token, the PaLM
count) / time / the fp32 matmul rate of jnp.dot (experiments/bench_attention's
matmul_ceiling, measured in a child with the same threads before and after; the higher).
Attention rates count 4 B N T^2 H FLOPs forward (half causal), 3.5 times that forward+backward.
"""

import argparse
import importlib.util
import json
import os
import statistics
import subprocess
import sys
import tempfile
import textwrap
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:  # python experiments/bench_peer.py: make `experiments` importable
  sys.path.insert(0, str(ROOT))

RESULTS = ROOT / "experiments" / "results" / "peer"
FRAMEWORKS = ("jax", "torch")
NAMES = {"jax": "tfmr_jax", "torch": "PyTorch"}
STEP_CASES = ("cpu", "baby", "tiny")
ATTENTION_MODES = ("fwd", "fwd+bwd")
NUM_BATCHES = 4
ATTENTION_SHAPE = {"B": 1, "N": 8, "H": 64}
# The targets: PyTorch time / ours at least this; our MFU at least that.
SPEEDUP_TARGETS = {"cpu": 1.3, "baby": 1.3, "fwd": 1.2, "fwd+bwd": 1.2}
MFU_TARGETS = {"cpu": 0.55, "baby": 0.65}
CPU_FLAGS = (
  "avx",
  "avx2",
  "fma",
  "avx512f",
  "avx512bw",
  "avx512vl",
  "avx512_vnni",
  "avx512_bf16",
  "amx_tile",
  "amx_bf16",
)


# ---------------------------------------------------------------------------- cases
def step_config(case: str, corpus_path: str | None):
  """The validated config of a step case: a configs/char_lm.py recipe (tiny: cpu shrunk)."""
  from experiments.bench_train import load_recipe
  from tfmr_jax import config as config_lib

  config = load_recipe("cpu" if case == "tiny" else case)
  if case == "tiny":
    config.task.block_size = 16
    config.model.update(num_layers=1, num_heads=2, d_model=16)
    config.train.batch_size = 2
  if corpus_path is not None:
    config.task.corpus_path = corpus_path
  return config_lib.validate(config)


def default_schedule(case: str, T: int | None) -> tuple[int, int, int]:
  """(rounds, timed steps per round, warm-up calls) of a case unless the flags say."""
  if case == "cpu":
    return 5, 20, 3
  if case == "baby":
    return 2, 2, 1
  if case == "tiny":
    return 2, 3, 1
  long = T > 2048
  steps = {("fwd", False): 10, ("fwd+bwd", False): 5, ("fwd", True): 3, ("fwd+bwd", True): 2}
  return (3 if long else 5), steps[case, long], 1


def case_specs(args, data_dir: Path) -> list[dict]:
  """Everything a child needs for each case, as JSON-able dicts; batches written to files."""
  from tfmr_jax.tasks import make_task

  specs = []
  for case in args.cases:
    if case in STEP_CASES:
      config = step_config(case, args.corpus_path)
      task = make_task(**config.task)
      B, T = config.train.batch_size, config.task.block_size
      batches = [task.train_batch(config.train.seed, s, B) for s in range(NUM_BATCHES)]
      data = data_dir / f"{case}.npz"
      np.savez(data, **{k: np.stack([np.asarray(b[k]) for b in batches]) for k in batches[0]})
      m, o = config.model, config.optim
      specs.extend(
        {
          "case": case if n == 1 else f"{case}, {n} devices",
          "mode": case,
          "host_devices": n,
          "kind": "step",
          "data": str(data),
          "corpus_path": args.corpus_path,
          "model": {
            "vocab_size": task.vocab_size,
            "block_size": T,
            "num_layers": m.num_layers,
            "num_heads": m.num_heads,
            "d_model": m.d_model,
            "d_ff": 4 * m.d_model if m.d_ff is None else m.d_ff,
            "dropout": m.dropout,
          },
          "batch_size": B,
          "optim": {
            "learning_rate": o.learning_rate,
            "b1": o.b1,
            "b2": o.b2,
            "eps": o.eps,
            "weight_decay": o.weight_decay,
            "warmup_steps": o.warmup_steps,
            "min_lr_ratio": o.min_lr_ratio,
            "grad_clip_norm": o.grad_clip_norm,
            "num_steps": config.train.num_steps,
          },
        }
        for n in args.host_devices
      )
    else:
      for T in args.T:
        for causal in (m == "causal" for m in args.attention_masks):
          name = f"{case}@{T}" if causal else f"{case}@{T} (not causal)"
          specs.append(
            {"case": name, "kind": "attention", "mode": case, "T": T, "causal": causal}
            | ATTENTION_SHAPE
          )
  for spec in specs:
    rounds, steps, warmup = default_schedule(spec.get("mode", spec["case"]), spec.get("T"))
    spec["rounds"] = args.rounds or rounds
    spec["steps"] = args.steps or steps
    spec["warmup"] = warmup if args.warmup is None else args.warmup
    spec["threads"] = args.threads
  return specs


# --------------------------------------------------------------------------- children
def child_env(threads: int, framework: str, host_devices: int = 1) -> dict:
  """The environment of a child: every thread pool sized to `threads`; for ours with
  host_devices > 1, the CPU split into that many XLA devices."""
  env = dict(os.environ)
  for name in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS"):
    env[name] = str(threads)
  if framework == "jax" and threads == 1:
    flags = "--xla_cpu_multi_thread_eigen=false intra_op_parallelism_threads=1"
    env["XLA_FLAGS"] = f"{env.get('XLA_FLAGS', '')} {flags}".strip()
  if framework == "jax" and host_devices > 1:
    flags = f"--xla_force_host_platform_device_count={host_devices}"
    env["XLA_FLAGS"] = f"{env.get('XLA_FLAGS', '')} {flags}".strip()
  env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), env.get("PYTHONPATH")]))
  return env


def run_child(framework: str, spec: dict, timeout_s: float) -> dict:
  """Runs one case in a fresh process of `framework`; returns its result dict."""
  with tempfile.TemporaryDirectory() as tmp:
    result = Path(tmp) / "result.json"
    command = [
      sys.executable,
      str(Path(__file__).resolve()),
      "--worker",
      framework,
      "--spec",
      json.dumps(spec),
      "--result",
      str(result),
    ]
    done = subprocess.run(
      command,
      env=child_env(spec["threads"], framework, spec.get("host_devices", 1)),
      capture_output=True,
      text=True,
      timeout=timeout_s,
    )
    if done.returncode != 0 or not result.exists():
      tail = "\n".join((done.stdout + done.stderr).splitlines()[-15:])
      raise RuntimeError(f"{framework} child for {spec['case']} failed:\n{tail}")
    return json.loads(result.read_text())


def pin_threads(threads: int) -> None:
  """This process (and the threads it starts) on `threads` CPUs."""
  cpus = sorted(os.sched_getaffinity(0))
  if threads > len(cpus):
    raise ValueError(f"--threads {threads}: this process may use only {len(cpus)} CPUs")
  os.sched_setaffinity(0, cpus[:threads])


def timed_calls(call, *, warmup: int, steps: int) -> dict:
  """{"first_s": seconds of the first call, "times_s": wall seconds of each timed call,
  "cpu_s": CPU seconds this process (all its threads) spent on each}; `call` blocks."""
  start = time.perf_counter()
  call()
  out = {"first_s": time.perf_counter() - start, "times_s": [], "cpu_s": []}
  for _ in range(warmup - 1):
    call()
  for _ in range(steps):
    start, cpu_start = time.perf_counter(), time.process_time()
    call()
    out["times_s"].append(time.perf_counter() - start)
    out["cpu_s"].append(time.process_time() - cpu_start)
  return out


def attention_inputs(spec: dict) -> list[np.ndarray]:
  """q, k, v, dout [B, T, N, H] float32, the same for both frameworks (seeded by T)."""
  rng = np.random.default_rng(spec["T"])
  shape = (spec["B"], spec["T"], spec["N"], spec["H"])
  return [rng.standard_normal(shape, dtype=np.float32) for _ in range(4)]


def jax_worker(spec: dict) -> dict:
  import jax
  import jax.numpy as jnp

  from experiments import bench_attention, bench_train

  out = {"jax": jax.__version__}
  if spec["kind"] == "matmul":
    out["flops_per_s"] = bench_attention.matmul_ceiling(jnp.float32, spec["reps"])["flops_per_s"]
    return out
  start = time.perf_counter()
  if spec["kind"] == "step":
    from tfmr_jax.tasks import make_task

    config = step_config(spec["mode"], spec["corpus_path"])
    arrays = np.load(spec["data"])
    host_batches = [{k: arrays[k][i] for k in arrays.files} for i in range(NUM_BATCHES)]
    task = make_task(**config.task)
    column, built = bench_train.placed_step(config, task, host_batches, spec.get("host_devices", 1))
    losses = []

    def call():
      column.call()
      losses.append(column.loss)

    out["n_params"] = built["n_params"]
  else:
    inputs = attention_inputs(spec)
    mode, B, T = spec["mode"], spec["B"], spec["T"]
    compiled, _ = bench_attention.compiled_case("auto", mode, B, T, spec["causal"], jnp.float32)
    args = [jnp.asarray(x) for x in inputs[: 3 if mode == "fwd" else 4]]

    def call():
      jax.block_until_ready(compiled(*args))

  out["build_s"] = time.perf_counter() - start
  out |= timed_calls(call, warmup=spec["warmup"], steps=spec["steps"])
  if spec["kind"] == "step":
    out["first_loss"], out["last_loss"] = losses[0], losses[-1]
  return out


def torch_worker(spec: dict) -> dict:
  import torch

  from experiments import peer_torch

  torch.set_num_threads(spec["threads"])
  torch.manual_seed(0)
  out = {"torch": torch.__version__, "cpu_capability": torch.backends.cpu.get_cpu_capability()}
  if spec["kind"] == "matmul":
    rates = []
    for n in (2048, 3072, 4096):
      a = torch.randn(n, n)
      times_s = timed_calls(lambda a=a: a @ a, warmup=1, steps=spec["reps"])["times_s"]
      rates.append(2.0 * n**3 / statistics.median(times_s))
    out["flops_per_s"] = max(rates)
    return out
  start = time.perf_counter()
  if spec["kind"] == "step":
    m, o = spec["model"], spec["optim"]
    model = peer_torch.GPT(**m)
    optimizer = peer_torch.build_optimizer(
      model, b1=o["b1"], b2=o["b2"], eps=o["eps"], weight_decay=o["weight_decay"]
    )

    def schedule(step):
      return peer_torch.warmup_cosine(
        step,
        peak=o["learning_rate"],
        warmup=o["warmup_steps"],
        total=o["num_steps"],
        end=o["learning_rate"] * o["min_lr_ratio"],
      )

    train_step = peer_torch.TrainStep(
      model, optimizer, schedule=schedule, grad_clip_norm=o["grad_clip_norm"]
    )
    arrays = np.load(spec["data"])
    batches = [
      (torch.from_numpy(arrays["inputs"][i]).long(), torch.from_numpy(arrays["targets"][i]).long())
      for i in range(NUM_BATCHES)
    ]
    if not np.all(arrays["weights"] == 1.0):
      raise ValueError("the peer's loss is a plain mean: every target weight must be 1")
    losses = []

    def call():
      losses.append(train_step(*batches[train_step.step % NUM_BATCHES]))

    out["n_params"] = peer_torch.count_params(model)
  else:
    inputs_BNTH = [torch.from_numpy(x).transpose(1, 2).contiguous() for x in attention_inputs(spec)]
    call = peer_torch.attention_call(spec["mode"], *inputs_BNTH, causal=spec["causal"])
  out["build_s"] = time.perf_counter() - start
  out |= timed_calls(call, warmup=spec["warmup"], steps=spec["steps"])
  if spec["kind"] == "step":
    out["first_loss"], out["last_loss"] = losses[0], losses[-1]
  return out


def worker_main(framework: str, spec: dict, result: str) -> None:
  pin_threads(spec["threads"])
  out = (jax_worker if framework == "jax" else torch_worker)(spec)
  Path(result).write_text(json.dumps(out))


# ---------------------------------------------------------------------------- summary
def summarize(spec: dict, rounds: list[dict]) -> dict:
  """Medians per framework and the median of the per-round PyTorch / tfmr_jax ratios."""
  row = {"spec": spec, "rounds": rounds}
  for fw in FRAMEWORKS:
    runs = [r[fw] for r in rounds if fw in r]
    if not runs:
      continue
    medians_s = [statistics.median(run["times_s"]) for run in runs]
    row[fw] = {
      "ms": 1e3 * statistics.median(medians_s),
      "round_ms": [1e3 * s for s in medians_s],
      "min_ms": 1e3 * min(min(run["times_s"]) for run in runs),
      "build_s": statistics.median(run["build_s"] for run in runs),
    }
    if all("cpu_s" in run for run in runs):  # CPU time: less sensitive to a busy machine
      row[fw]["cpu_ms"] = 1e3 * statistics.median(statistics.median(r["cpu_s"]) for r in runs)
    for key in ("n_params", "first_loss", "last_loss"):
      if key in runs[0]:
        row[fw][key] = runs[-1][key] if key == "last_loss" else runs[0][key]
  if "jax" in row and "torch" in row:
    ratios = [
      statistics.median(r["torch"]["times_s"]) / statistics.median(r["jax"]["times_s"])
      for r in rounds
    ]
    row["ratios"] = ratios
    row["speedup"] = statistics.median(ratios)
  return row


def add_rates(results: dict) -> None:
  """Model FLOPs per call, each framework's rate and its fraction of the matmul ceiling."""
  from experiments.bench_attention import flops as attention_flops
  from experiments.bench_train import model_flops_per_token

  ceiling = results["machine"]["matmul_flops_per_s"]
  for row in results["cases"].values():
    spec = row["spec"]
    if spec["kind"] == "step":
      m = spec["model"]
      per_token = model_flops_per_token(
        num_layers=m["num_layers"],
        d_model=m["d_model"],
        num_heads=m["num_heads"],
        num_kv_heads=None,
        d_ff=m["d_ff"],
        vocab_size=m["vocab_size"],
        block_size=m["block_size"],
      )["train"]
      row["flops_per_call"] = per_token * spec["batch_size"] * m["block_size"]
    else:
      row["flops_per_call"] = attention_flops(spec["mode"], spec["B"], spec["T"], spec["causal"])
    for fw in FRAMEWORKS:
      if fw in row:
        row[fw]["flops_per_s"] = row["flops_per_call"] / (row[fw]["ms"] / 1e3)
        row[fw]["mfu"] = row[fw]["flops_per_s"] / ceiling if ceiling else None


def target_checks(results: dict) -> list[dict]:
  checks = []
  for name, row in results["cases"].items():
    kind = row["spec"].get("mode", name)
    if kind in SPEEDUP_TARGETS:
      bound = SPEEDUP_TARGETS[kind]
      measured = row.get("speedup")
      checks.append(
        {
          "target": f"{name}: tfmr_jax >= {bound}x faster than PyTorch",
          "measured": measured,
          "shown": None if measured is None else f"{measured:.2f}x",
          "met": None if measured is None else measured >= bound,
        }
      )
    if kind in MFU_TARGETS and "jax" in row:
      bound, measured = MFU_TARGETS[kind], row["jax"].get("mfu")
      checks.append(
        {
          "target": f"{name}: tfmr_jax MFU >= {bound:.0%}",
          "measured": measured,
          "shown": None if measured is None else f"{measured:.1%}",
          "met": None if measured is None else measured >= bound,
        }
      )
  return checks


# ---------------------------------------------------------------------------- reports
def machine_info(args) -> dict:
  flags, model = [], "unknown"
  try:
    for line in Path("/proc/cpuinfo").read_text().splitlines():
      if line.startswith("flags") and not flags:
        present = set(line.split(":", 1)[1].split())
        flags = [f for f in CPU_FLAGS if f in present]
      if line.startswith("model name") and model == "unknown":
        model = line.split(":", 1)[1].strip()
  except OSError:
    pass
  return {
    "cpu": model,
    "cpus": os.cpu_count(),
    "threads": args.threads,
    "cpu_flags": flags,
  }


def machine_line(results: dict) -> str:
  m = results["machine"]
  rate = m.get("matmul_flops_per_s")
  shown = "not measured" if not rate else f"{rate / 1e9:.0f} GFLOP/s"
  torch_rate = m.get("torch_matmul_flops_per_s")
  torch_shown = f" (torch.mm {torch_rate / 1e9:.0f} GFLOP/s)" if torch_rate else ""
  return (
    f"{m['cpu']}, {m['cpus']} CPUs, {m['threads']} thread(s); flags "
    f"{' '.join(m['cpu_flags']) or 'none of note'}; fp32 matmul (jnp.dot) {shown}{torch_shown}; "
    f"load average {m['load_before']:.1f} before, {m['load_after']:.1f} after"
  )


def markdown(results: dict) -> str:
  env = results["environment"]
  lines = [
    "# tfmr_jax against a PyTorch peer",
    "",
    f"`{env['command']}`, {env['date']}; jax {env.get('jax', '-')}, "
    f"torch {env.get('torch', '-')}; {env['wall_s']:.0f} s in all.",
    "",
    f"Machine: {machine_line(results)}.",
    "",
    "| case | PyTorch | tfmr_jax | tfmr_jax faster by | MFU PyTorch | MFU tfmr_jax | CPU ms PyTorch"
    " / tfmr_jax | rounds x steps |",
    "|---|---|---|---|---|---|---|---|",
  ]
  for name, row in results["cases"].items():
    cells = []
    for fw in FRAMEWORKS:
      cells.append(f"{row[fw]['ms']:.1f} ms" if fw in row else "-")
    speedup = f"{row['speedup']:.2f}x" if "speedup" in row else "-"
    if "ratios" in row:
      speedup += f" ({min(row['ratios']):.2f}-{max(row['ratios']):.2f})"
    mfus = [
      f"{row[fw]['mfu']:.1%}" if fw in row and row[fw].get("mfu") is not None else "-"
      for fw in FRAMEWORKS
    ]
    cpu = " / ".join(
      f"{row[fw]['cpu_ms']:.0f}" if "cpu_ms" in row.get(fw, {}) else "-" for fw in ("torch", "jax")
    )
    spec = row["spec"]
    lines.append(
      f"| {name} | {cells[1]} | {cells[0]} | {speedup} | {mfus[1]} | {mfus[0]} | {cpu} | "
      f"{spec['rounds']} x {spec['steps']} |"
    )
  lines += [
    "",
    "Times: medians over rounds of each round's median; faster by: the median over rounds",
    "of PyTorch / tfmr_jax (range in brackets). MFU: model FLOPs / time / the jnp.dot rate",
    "(for attention: 4 B N T^2 H FLOPs forward, half causal, 3.5x that forward+backward). CPU ms:",
    "the CPU time of the process (all threads) per call, medians likewise: on a shared",
    "machine it moves less than wall time, but it also counts threads that spin waiting.",
  ]
  params = [
    f"{name}: {row['jax']['n_params']:,} (tfmr_jax), {row['torch']['n_params']:,} (PyTorch)"
    for name, row in results["cases"].items()
    if "n_params" in row.get("jax", {}) and "n_params" in row.get("torch", {})
  ]
  if params:
    lines += ["", "Parameters: " + "; ".join(params) + "."]
  lines += ["", "| target | measured | met |", "|---|---|---|"]
  for c in results["targets"]:
    met = {True: "yes", False: "**no**", None: "not measured"}[c["met"]]
    lines.append(f"| {c['target']} | {c['shown'] or '-'} | {met} |")
  return "\n".join(lines) + "\n"


def plot(results: dict, path: Path) -> None:
  import matplotlib

  matplotlib.use("Agg")
  import matplotlib.pyplot as plt

  names = list(results["cases"])
  fig, (left, right) = plt.subplots(1, 2, figsize=(12, 4.5))
  width = 0.38
  for i, fw in enumerate(("torch", "jax")):
    xs = [j + (i - 0.5) * width for j, n in enumerate(names) if fw in results["cases"][n]]
    ms = [results["cases"][n][fw]["ms"] for n in names if fw in results["cases"][n]]
    left.bar(xs, ms, width, label=NAMES[fw])
  left.set(yscale="log", ylabel="ms per call (median)", title="time per call")
  left.set_xticks(range(len(names)), names, rotation=20)
  left.legend()
  compared = [n for n in names if "speedup" in results["cases"][n]]
  if compared:
    right.bar(range(len(compared)), [results["cases"][n]["speedup"] for n in compared])
    for j, n in enumerate(compared):
      kind = results["cases"][n]["spec"].get("mode", n)
      if kind in SPEEDUP_TARGETS:
        right.plot([j - 0.4, j + 0.4], [SPEEDUP_TARGETS[kind]] * 2, "r--")
    right.set_xticks(range(len(compared)), compared, rotation=20)
  right.axhline(1.0, color="k", lw=0.8)
  right.set(ylabel="PyTorch time / tfmr_jax time", title="tfmr_jax faster by (red: target)")
  fig.suptitle("\n".join(textwrap.wrap(machine_line(results), 170)), fontsize=8)
  fig.tight_layout()
  fig.savefig(path, dpi=110)


# ------------------------------------------------------------------------------- main
def parse_args(argv=None):
  p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
  cases = STEP_CASES + ATTENTION_MODES
  p.add_argument(
    "--cases",
    nargs="+",
    default=["cpu", "fwd", "fwd+bwd"],
    help=f"of {cases}; baby is slow (about 25 s a step on 2 cores), so not a default",
  )
  p.add_argument("--T", type=int, nargs="+", default=[2048, 8192], help="attention lengths")
  p.add_argument(
    "--attention-masks",
    nargs="+",
    choices=("causal", "none"),
    default=["causal"],
    help="attention cases: causal, and/or with no mask (none)",
  )
  p.add_argument("--frameworks", nargs="+", default=list(FRAMEWORKS), help=f"of {FRAMEWORKS}")
  p.add_argument("--rounds", type=int, default=None, help="rounds per case (default: by case)")
  p.add_argument("--steps", type=int, default=None, help="timed calls per child (default: by case)")
  p.add_argument("--warmup", type=int, default=None, help="untimed calls first (default: by case)")
  p.add_argument("--threads", type=int, default=len(os.sched_getaffinity(0)))
  p.add_argument(
    "--host-devices",
    type=int,
    nargs="+",
    default=[1],
    help="training steps: one case per value, ours data parallel over that many XLA CPU "
    "devices (e.g. 1 2: one device, and one per core)",
  )
  p.add_argument("--ceiling-reps", type=int, default=3, help="0: skip the matmul rate (no MFU)")
  p.add_argument("--corpus-path", default=None, help="overrides the recipes' task.corpus_path")
  p.add_argument("--child-timeout-s", type=float, default=1800.0)
  p.add_argument("--out", default=str(RESULTS), help="directory for peer.{json,md,png}")
  p.add_argument("--worker", choices=FRAMEWORKS, help=argparse.SUPPRESS)
  p.add_argument("--spec", help=argparse.SUPPRESS)
  p.add_argument("--result", help=argparse.SUPPRESS)
  args = p.parse_args(argv)
  if args.worker is None:
    check_args(p, args)
  return args


def check_args(parser: argparse.ArgumentParser, args) -> None:
  """Every flag checked before any child starts; parser.error names value and choices."""
  cases = STEP_CASES + ATTENTION_MODES
  for case in args.cases:
    if case not in cases:
      parser.error(f"--cases: unknown case {case!r}; choose from {cases}")
  for fw in args.frameworks:
    if fw not in FRAMEWORKS:
      parser.error(f"--frameworks: unknown framework {fw!r}; choose from {FRAMEWORKS}")
  if len(set(args.cases)) != len(args.cases) or len(set(args.frameworks)) != len(args.frameworks):
    parser.error("--cases and --frameworks name each entry at most once")
  if "torch" in args.frameworks and importlib.util.find_spec("torch") is None:
    parser.error(
      "PyTorch is not installed here: pip install -e '.[bench]' brings torch==2.13.0 (CPU), "
      "or run our side alone with --frameworks jax"
    )
  for name in ("rounds", "steps"):
    value = getattr(args, name)
    if value is not None and value < 1:
      parser.error(f"--{name} must be at least 1, got {value}")
  if args.warmup is not None and args.warmup < 1:
    parser.error(f"--warmup must be at least 1 (the first call is never timed), got {args.warmup}")
  if any(T < 1 for T in args.T):
    parser.error(f"--T must be positive, got {args.T}")
  available = len(os.sched_getaffinity(0))
  if not 1 <= args.threads <= available:
    parser.error(f"--threads {args.threads}: choose 1 to {available} (the CPUs this process has)")
  if args.corpus_path is not None and not os.path.exists(args.corpus_path):
    parser.error(f"--corpus-path {args.corpus_path!r} does not exist")


def measure_matmul(args, results: dict, key: str) -> None:
  if args.ceiling_reps < 1:
    return
  spec = {"case": "matmul", "kind": "matmul", "reps": args.ceiling_reps, "threads": args.threads}
  for fw in args.frameworks:
    rate = run_child(fw, spec, args.child_timeout_s)["flops_per_s"]
    results["machine"].setdefault(f"{fw}_matmul", {})[key] = rate


def write_reports(results: dict, out: Path, wall_start: float, *, with_plot: bool) -> None:
  """Rates, targets and the files (the plot only if asked) from what `results` holds."""
  m = results["machine"]
  m["matmul_flops_per_s"] = max(m["jax_matmul"].values()) if "jax_matmul" in m else None
  m["torch_matmul_flops_per_s"] = max(m["torch_matmul"].values()) if "torch_matmul" in m else None
  m["load_after"] = os.getloadavg()[0]
  add_rates(results)
  results["targets"] = target_checks(results)
  results["environment"]["wall_s"] = time.perf_counter() - wall_start
  out.mkdir(parents=True, exist_ok=True)
  for row in results["cases"].values():  # the batches' temporary file is gone by now
    row["spec"].pop("data", None)
  (out / "peer.json").write_text(json.dumps(results, indent=1))
  (out / "peer.md").write_text(markdown(results))
  if with_plot:
    plot(results, out / "peer.png")


def main(argv=None) -> dict:
  args = parse_args(argv)
  if args.worker is not None:
    worker_main(args.worker, json.loads(args.spec), args.result)
    return {}
  wall_start = time.perf_counter()
  command = " ".join(["python"] + (sys.argv if argv is None else ["bench_peer.py", *argv]))
  results = {
    "environment": {"command": command, "date": time.strftime("%Y-%m-%d %H:%M")},
    "machine": machine_info(args) | {"load_before": os.getloadavg()[0]},
    "cases": {},
  }
  out = Path(args.out)
  print(f"frameworks={args.frameworks} cases={args.cases} threads={args.threads}", flush=True)
  measure_matmul(args, results, "before")
  with tempfile.TemporaryDirectory() as data_dir:
    for spec in case_specs(args, Path(data_dir)):
      rounds = []
      for r in range(spec["rounds"]):
        round_result = {}
        for fw in args.frameworks:  # A B A B: the same order every round
          round_result[fw] = run_child(fw, spec, args.child_timeout_s)
          ms = 1e3 * statistics.median(round_result[fw]["times_s"])
          print(f"{spec['case']} round {r + 1}: {NAMES[fw]} {ms:.1f} ms", flush=True)
        rounds.append(round_result)
      results["cases"][spec["case"]] = summarize(spec, rounds)
      for fw in args.frameworks:
        results["environment"][fw] = rounds[0][fw].get(fw)
        if fw == "torch":
          results["machine"]["torch_cpu_capability"] = rounds[0][fw]["cpu_capability"]
      write_reports(results, out, wall_start, with_plot=False)  # a long run keeps what it has
  measure_matmul(args, results, "after")
  write_reports(results, out, wall_start, with_plot=True)
  print(markdown(results))
  print(f"wrote {out}/peer.json, .md, .png")
  return results


if __name__ == "__main__":
  main()
