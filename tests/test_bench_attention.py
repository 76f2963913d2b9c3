"""experiments/bench_attention.py: a tiny run of its whole path (the window case too), and
its FLOP convention."""

import json
import os
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if ROOT not in sys.path:
  sys.path.insert(0, ROOT)

from experiments import bench_attention  # noqa: E402


def test_flops_follow_the_flash_attention_convention():
  # 4 B N T^2 H forward, half when causal, 3.5 times that with the backward.
  N, H = bench_attention.N_HEADS, bench_attention.HEAD_DIM
  assert bench_attention.flops("fwd", 2, 10, False) == 4 * 2 * N * 100 * H
  assert bench_attention.flops("fwd", 2, 10, True) == 2 * 2 * N * 100 * H
  assert bench_attention.flops("fwd+bwd", 2, 10, True) == 3.5 * 2 * 2 * N * 100 * H


def test_tiny_run_writes_json_markdown_and_plot(tmp_path, monkeypatch):
  # The ceiling's own jnp.dot timing (n up to 4096) is slow and needs no test here.
  ceilings = iter([{"flops_per_s": 1e9, "by_n": {}}, {"flops_per_s": 2e9, "by_n": {}}])
  monkeypatch.setattr(bench_attention, "matmul_ceiling", lambda dtype, reps: next(ceilings))
  out = tmp_path / "bench"
  bench_attention.main(
    [
      "--T",
      "16",
      "--B",
      "1",
      "--reps",
      "1",
      "--no-memory",
      "--impls",
      "tiled",
      "auto",
      "xla",
      "--window",
      "4",
      "--window-T",
      "32",
      "--out",
      str(out),
    ]
  )
  results = json.loads(out.with_suffix(".json").read_text())
  for mode in ("fwd", "fwd+bwd"):
    for causal in (0, 1):
      row = results["timing"][f"{mode}|{causal}|1|16"]
      assert set(row) == {"tiled", "auto", "xla"}
      assert row["xla"]["vs_xla"] == 1.0
      assert row["tiled"]["ms"] > 0 and 0 < row["tiled"]["ceiling_fraction"]
  accuracy = {a["causal"]: a for a in results["accuracy"]}
  for causal in (False, True):  # tiled against the reference, outputs and gradients
    assert accuracy[causal]["forward_max_abs"] <= 1e-5
    assert accuracy[causal]["gradient_max_abs"] <= 5e-5
  # The window case: the tiled kernel with a window beside the full causal rule, each T.
  window = {(r["mode"], r["T"]): r for r in results["window"]}
  assert set(window) == {("fwd", 32), ("fwd+bwd", 32)}
  for r in window.values():
    assert r["window"] == 4 and set(r["ms"]) == {"window", "causal"}
    assert r["ms_per_1k_tokens"]["window"] == r["ms"]["window"] * 1024 / r["T"] > 0
  markdown = out.with_suffix(".md").read_text()
  assert "| target | measured | met |" in markdown
  assert "Sliding window (tiled, causal, window=4, B=1)" in markdown
  assert results["environment"]["cpu_model"]
  assert out.with_suffix(".png").stat().st_size > 0
