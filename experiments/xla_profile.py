"""Reading XLA:CPU's own profile: each traced operation under one kind and one phase.

Used by experiments/profile_step.py. An XLA:CPU operation traced by jax.profiler (with
--xla_cpu_enable_xprof_traceme) is one event that lasts its own wall time; its HLO
instruction, found in the compiled module's text, says what it does:
  matmul       a dot, or a fusion around one (XLA:CPU hands these to its YNNPACK library)
  data moves   copies, transposes, slices, pads, broadcasts: no arithmetic
  elementwise  every other fusion (layer norms, GELU, softmax, the optimizer's updates)
  collective   all-reduce and its kin (a batch split over several CPU devices)
and its JAX name says the phase: forward (jvp), backward (transpose of jvp), or outside
autodiff (the optimizer and clipping of a step; all of a forward-only call). Loops
(while) are containers: their bodies' operations are counted, not the loop.
"""

import collections
import glob
import gzip
import json
import os
import re

KINDS = ("matmul", "elementwise", "data moves", "collective")
PHASES = ("forward", "backward", "outside autodiff")
DATA_MOVES = set(
  "bitcast broadcast concatenate constant copy dynamic-slice dynamic-update-slice "
  "get-tuple-element iota pad parameter reshape slice transpose tuple".split()
)
COLLECTIVES = {"all-reduce", "all-gather", "reduce-scatter", "all-to-all", "collective-permute"}
CONTAINERS = {"while", "conditional", "call"}
# `  %name = shape opcode(...)`: ROOT optional; a tuple shape is in parentheses.
INSTRUCTION = re.compile(r"^\s*(?:ROOT )?%([\w.\-]+) = (?:\(.*?\)|\S+) ([\w\-]+)\((.*)$")
COMPUTATION = re.compile(r"^(?:ENTRY )?%([\w.\-]+) ")


def hlo_ops(hlo_text: str) -> dict:
  """{instruction name: (kind or "container", phase)} from a compiled module's text."""
  opcodes_of = collections.defaultdict(set)  # computation -> the opcodes in it
  instructions = []  # (name, opcode, rest of the line)
  computation = None
  for line in hlo_text.splitlines():
    header = COMPUTATION.match(line)
    if header and line.rstrip().endswith("{"):
      computation = header.group(1)
      continue
    found = INSTRUCTION.match(line)
    if found:
      opcodes_of[computation].add(found.group(2))
      instructions.append(found.groups())
  ops = {}
  for name, opcode, rest in instructions:
    called = re.search(r"calls=%([\w.\-]+)", rest)
    inner = opcodes_of.get(called.group(1), set()) if called else {opcode}
    if opcode in CONTAINERS:
      kind = "container"
    elif "dot" in inner or "convolution" in inner:
      kind = "matmul"
    elif inner & COLLECTIVES or opcode in COLLECTIVES:
      kind = "collective"
    elif inner <= DATA_MOVES:
      kind = "data moves"
    else:
      kind = "elementwise"
    op_name = re.search(r'op_name="([^"]*)"', rest)
    op_name = op_name.group(1) if op_name else ""
    phase = PHASES[2]
    if "transpose(jvp" in op_name:
      phase = "backward"
    elif "jvp(" in op_name:
      phase = "forward"
    ops[name] = (kind, phase)
  return ops


def traced_ops(trace_dir: str) -> list[tuple[str, float]]:
  """(HLO op, microseconds) of every XLA operation in a jax.profiler trace."""
  (path,) = glob.glob(os.path.join(trace_dir, "**", "*.trace.json.gz"), recursive=True)
  with gzip.open(path) as f:
    events = json.load(f)["traceEvents"]
  return [
    (e["args"]["hlo_op"], e["dur"])
    for e in events
    if e.get("ph") == "X" and "hlo_op" in e.get("args", {})
  ]


def summarize(ops: dict, events, calls: int) -> dict:
  """Milliseconds per call by kind, by kind and phase, and the ten costliest operations."""
  by_kind, by_phase, by_op, runs = (collections.Counter() for _ in range(4))
  for op, micros in events:
    kind, phase = ops.get(op, ("elementwise", PHASES[2]))
    if kind == "container":
      continue
    ms = micros / 1000.0 / calls
    by_kind[kind] += ms
    by_phase[f"{kind}, {phase}"] += ms
    by_op[op] += ms
    runs[op] += 1
  return {
    "ops_ms": sum(by_kind.values()),
    "by_kind_ms": {k: by_kind[k] for k in KINDS},
    "by_kind_phase_ms": {f"{k}, {p}": by_phase[f"{k}, {p}"] for k in KINDS for p in PHASES},
    "top_ops": [
      {"op": op, "ms": ms, "kind": ops.get(op, ("elementwise",))[0], "runs": runs[op] // calls}
      for op, ms in by_op.most_common(10)
    ],
  }
