"""experiments/profile_step.py and xla_profile.py: kinds and phases read from HLO text, and
a tiny profile end to end (its own process, which XLA's trace flag must start with)."""

import json
import os
import subprocess
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if ROOT not in sys.path:
  sys.path.insert(0, ROOT)

from experiments.xla_profile import hlo_ops, summarize  # noqa: E402

# A hand-written module in the shape of XLA:CPU's compiled text: a dot fusion, a transpose
# fusion, an exp fusion, an all-reduce and a while loop, from three phases.
HLO = """HloModule jit_step, entry_computation_layout={(f32[8,4]{1,0})->f32[8,4]{1,0}}

%fused_dot (p0: f32[8,4], p1: f32[4,4]) -> f32[8,4] {
  %p0 = f32[8,4]{1,0} parameter(0)
  %p1 = f32[4,4]{1,0} parameter(1)
  ROOT %dot.1 = f32[8,4]{1,0} dot(%p0, %p1), lhs_contracting_dims={1}, rhs_contracting_dims={0}
}

%fused_moves (p0: f32[8,4]) -> f32[4,8] {
  %p0 = f32[8,4]{1,0} parameter(0)
  %bitcast.2 = f32[8,4]{1,0} bitcast(%p0)
  ROOT %transpose.3 = f32[4,8]{1,0} transpose(%bitcast.2), dimensions={1,0}
}

%fused_exp (p0: f32[8,4]) -> f32[8,4] {
  %p0 = f32[8,4]{1,0} parameter(0)
  ROOT %exponential.4 = f32[8,4]{1,0} exponential(%p0)
}

%body (t: (s32[], f32[8,4])) -> (s32[], f32[8,4]) {
  %t = (s32[], f32[8,4]{1,0}) parameter(0)
  ROOT %tuple.5 = (s32[], f32[8,4]{1,0}) tuple(%t)
}

ENTRY %main (x: f32[8,4], w: f32[4,4]) -> f32[8,4] {
  %x = f32[8,4]{1,0} parameter(0)
  %w = f32[4,4]{1,0} parameter(1)
  %ynn_fusion.7 = f32[8,4] fusion(%x, %w), calls=%fused_dot, metadata={op_name="jit(f)/jvp()/dot"}
  %copy_fusion.8 = f32[4,8] fusion(%x), calls=%fused_moves, metadata={op_name="transpose(jvp())"}
  %exp_fusion.9 = f32[8,4]{1,0} fusion(%x), kind=kLoop, calls=%fused_exp, metadata={op_name="exp"}
  %all-reduce.10 = f32[8,4]{1,0} all-reduce(%exp_fusion.9), to_apply=%fused_exp
  %while.11 = (s32[], f32[8,4], /*index=2*/f32[8,4]) while(%t), condition=%body, body=%body
  ROOT %add.12 = f32[8,4]{1,0} add(%x, %x)
}
"""


def test_each_operation_gets_its_kind_and_phase():
  ops = hlo_ops(HLO)
  assert ops["ynn_fusion.7"] == ("matmul", "forward")
  assert ops["copy_fusion.8"] == ("data moves", "backward")
  assert ops["exp_fusion.9"] == ("elementwise", "outside autodiff")
  assert ops["all-reduce.10"][0] == "collective"
  assert ops["while.11"][0] == "container"
  assert ops["add.12"][0] == "elementwise"


def test_summary_counts_per_call_and_skips_loops():
  ops = hlo_ops(HLO)
  events = [("ynn_fusion.7", 3000.0), ("ynn_fusion.7", 1000.0), ("while.11", 9000.0)]
  events += [("exp_fusion.9", 2000.0)]
  summary = summarize(ops, events, calls=2)
  assert summary["by_kind_ms"] == {
    "matmul": 2.0,
    "elementwise": 1.0,
    "data moves": 0.0,
    "collective": 0.0,
  }
  assert summary["ops_ms"] == 3.0  # the loop's 9 ms are its body's, counted there
  assert summary["top_ops"][0] == {"op": "ynn_fusion.7", "ms": 2.0, "kind": "matmul", "runs": 1}


def test_a_tiny_profile_finds_the_matmuls_of_a_real_step(tmp_path):
  corpus = tmp_path / "corpus.txt"
  corpus.write_text("to be or not to be, that is the question.\n" * 40)
  out = tmp_path / "profile"
  command = [sys.executable, os.path.join(ROOT, "experiments", "profile_step.py")]
  command += ["--cases", "tiny", "fwd", "--T", "32", "--calls", "2", "--warmup", "1"]
  command += ["--ceiling-reps", "0", "--corpus-path", str(corpus), "--out", str(out)]
  env = {**os.environ, "JAX_PLATFORMS": "cpu"}
  done = subprocess.run(command, env=env, capture_output=True, text=True, timeout=300)
  assert done.returncode == 0, done.stderr[-3000:]
  results = json.loads((out / "profile.json").read_text())
  step, attention = results["cases"]
  assert (step["case"], attention["case"]) == ("tiny", "fwd@32")
  phases = step["by_kind_phase_ms"]
  for phase in ("forward", "backward"):  # the step's matmuls, found in the trace
    assert phases[f"matmul, {phase}"] > 0, phases
  assert phases["elementwise, outside autodiff"] > 0  # the optimizer's update
  assert attention["by_kind_ms"]["matmul"] > 0
  assert 0 < step["ops_ms"] <= 2 * step["wall_ms"] * os.cpu_count()
  assert "| tiny |" in (out / "profile.md").read_text()
