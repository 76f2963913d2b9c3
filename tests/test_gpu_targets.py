"""experiments/gpu_targets.py end to end at its --smoke sizes (on CPU: no cuDNN column)."""

import json
import math
import os
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if ROOT not in sys.path:
  sys.path.insert(0, ROOT)

from experiments import gpu_targets  # noqa: E402


def test_smoke_run_times_each_case_trains_and_checks_every_target(tmp_path):
  corpus = tmp_path / "corpus.txt"
  corpus.write_text("to be or not to be, that is the question.\n" * 200)
  out = tmp_path / "gpu"
  argv = ["--smoke", "--rounds", "1", "--calls", "1", "--corpus-path", str(corpus)]
  gpu_targets.main(argv + ["--out", str(out)])
  results = json.loads((out / "gpu.json").read_text())
  cases = {(r["mode"], r["causal"], r["impl"]) for r in results["attention"]}
  assert cases == {
    (mode, causal, impl)
    for mode in ("fwd", "fwd+bwd")
    for causal in (False, True)
    for impl in ("None", "tiled")
  }
  assert all(r["ms"] > 0 for r in results["attention"])
  baby = results["baby"]
  assert baby["steps"] == 20
  vocabulary = len(set(corpus.read_text()))
  assert baby["best_val_loss"] < math.log(vocabulary)  # below a uniform guess
  targets = [c["target"] for c in results["checks"]]
  assert targets[0] == "None picks cuDNN" and results["none_picks"] == "tiled"  # on CPU
  assert any("val loss" in t for t in targets)
  assert "| target | measured | met |" in (out / "gpu.md").read_text()
