"""experiments/bench_peer.py: our side end to end on tiny cases, its flag errors, and (only
where torch is installed, never in the default install) the PyTorch peer itself."""

import json
import os
import sys

import numpy as np
import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if ROOT not in sys.path:
  sys.path.insert(0, ROOT)

from experiments import bench_peer  # noqa: E402

TEXT = "to be or not to be, that is the question.\n" * 40


def tiny_run(tmp_path, frameworks, cases, extra=()):
  corpus = tmp_path / "corpus.txt"
  corpus.write_text(TEXT)
  out = tmp_path / "peer"
  bench_peer.main(
    ["--cases", *cases, "--T", "32", "--rounds", "1", "--steps", "2", "--warmup", "1"]
    + ["--ceiling-reps", "0", "--corpus-path", str(corpus), "--out", str(out)]
    + ["--frameworks", *frameworks, *extra]
  )
  return json.loads((out / "peer.json").read_text()), out


def tiny_params(V: int) -> int:
  """GPT-2 parameters of the tiny case by hand: L=1, D=16, F=64, T=16, vocabulary V."""
  L, D, F, T = 1, 16, 64, 16
  return V * D + T * D + L * (4 * D + 4 * (D * D + D) + 2 * D * F + F + D) + 2 * D


def test_our_side_alone_writes_json_markdown_and_plot(tmp_path):
  results, out = tiny_run(tmp_path, ["jax"], ["tiny"])
  assert set(results["cases"]) == {"tiny"}
  tiny = results["cases"]["tiny"]
  assert "torch" not in tiny and "speedup" not in tiny
  assert len(tiny["rounds"]) == 1 and len(tiny["rounds"][0]["jax"]["times_s"]) == 2
  assert tiny["jax"]["ms"] > 0 and tiny["jax"]["n_params"] == tiny_params(len(set(TEXT)))
  assert tiny["jax"]["mfu"] is None  # --ceiling-reps 0: no matmul rate, no MFU
  assert results["targets"] == []  # tiny has none; a faster-by figure needs both sides
  assert results["machine"]["threads"] >= 1 and "cpu_flags" in results["machine"]
  assert tiny["jax"]["cpu_ms"] > 0
  assert "| tiny | - |" in (out / "peer.md").read_text()
  assert (out / "peer.png").stat().st_size > 0


def test_our_step_over_two_cpu_devices_is_a_case_of_its_own_with_the_same_loss(tmp_path):
  results, _ = tiny_run(tmp_path, ["jax"], ["tiny"], extra=["--host-devices", "1", "2"])
  one, two = results["cases"]["tiny"], results["cases"]["tiny, 2 devices"]
  assert two["spec"]["host_devices"] == 2 and two["jax"]["n_params"] == one["jax"]["n_params"]
  np.testing.assert_allclose(two["jax"]["first_loss"], one["jax"]["first_loss"], rtol=1e-6)


@pytest.mark.parametrize(
  "flags, named",
  [
    (["--cases", "cpu", "huge", "--frameworks", "jax"], ["'huge'", "baby", "fwd+bwd"]),
    (["--frameworks", "jax", "tf"], ["'tf'", "torch"]),
    (["--threads", "999", "--frameworks", "jax"], ["999"]),
  ],
)
def test_bad_flags_fail_before_any_child(flags, named, monkeypatch, capsys):
  monkeypatch.setattr(bench_peer, "run_child", lambda *a: pytest.fail("started a child"))
  with pytest.raises(SystemExit):
    bench_peer.main(flags)
  err = capsys.readouterr().err
  for word in named:
    assert word in err


def test_missing_torch_says_how_to_install_it(monkeypatch, capsys):
  real_find_spec = bench_peer.importlib.util.find_spec
  monkeypatch.setattr(
    bench_peer.importlib.util,
    "find_spec",
    lambda name, *a: None if name == "torch" else real_find_spec(name, *a),
  )
  monkeypatch.setattr(bench_peer, "run_child", lambda *a: pytest.fail("started a child"))
  with pytest.raises(SystemExit) as exit_info:
    bench_peer.main(["--cases", "cpu"])
  assert exit_info.value.code != 0
  err = capsys.readouterr().err
  assert ".[bench]" in err and "--frameworks jax" in err


def test_peer_model_has_our_parameter_count_and_decay_mask():
  pytest.importorskip("torch")
  import jax
  from flax import nnx

  from experiments import peer_torch
  from tfmr_jax.models import GPT2, TransformerConfig, count_params
  from tfmr_jax.nn import state as model_state

  V, T, L, N, D = 13, 17, 2, 3, 15  # odd sizes, so that no two dimensions coincide
  ours = GPT2(
    TransformerConfig.gpt(vocab_size=V, max_len=T, num_layers=L, num_heads=N, d_model=D),
    rngs=nnx.Rngs(0),
  )
  peer = peer_torch.GPT(vocab_size=V, block_size=T, num_layers=L, num_heads=N, d_model=D)
  assert peer_torch.count_params(peer) == count_params(ours)
  optimizer = peer_torch.build_optimizer(peer, b1=0.9, b2=0.99, eps=1e-8, weight_decay=0.1)
  decayed = sum(p.numel() for p in optimizer.param_groups[0]["params"])
  params = model_state.split(ours).params
  ours_decayed = sum(x.size for x in jax.tree.leaves(params) if x.ndim >= 2)
  assert decayed == ours_decayed and optimizer.param_groups[1]["weight_decay"] == 0.0


def test_both_sides_run_and_compare(tmp_path):
  pytest.importorskip("torch")
  results, _ = tiny_run(tmp_path, ["jax", "torch"], ["tiny", "fwd"])
  attention = results["cases"]["fwd@32"]
  assert attention["spec"] | {"B": 1, "N": 8, "H": 64, "T": 32, "mode": "fwd"} == attention["spec"]
  assert attention["flops_per_call"] == 4 * 8 * 32 * 32 * 64 / 2
  tiny = results["cases"]["tiny"]
  assert tiny["jax"]["n_params"] == tiny["torch"]["n_params"]
  assert tiny["torch"]["first_loss"] == pytest.approx(tiny["jax"]["first_loss"], rel=0.1)
  for row in results["cases"].values():
    assert row["speedup"] == pytest.approx(row["ratios"][0]) and row["speedup"] > 0
  assert [c["target"] for c in results["targets"]] == [
    "fwd@32: tfmr_jax >= 1.2x faster than PyTorch"
  ]
  assert results["targets"][0]["met"] == (attention["speedup"] >= 1.2)


def test_attention_cases_come_causal_and_unmasked_on_request(tmp_path):
  args = bench_peer.parse_args(["--cases", "fwd", "--T", "32", "64", "--frameworks", "jax"])
  assert [s["case"] for s in bench_peer.case_specs(args, tmp_path)] == ["fwd@32", "fwd@64"]
  argv = ["--cases", "fwd+bwd", "--T", "32", "--attention-masks", "causal", "none"]
  specs = bench_peer.case_specs(bench_peer.parse_args(argv + ["--frameworks", "jax"]), tmp_path)
  assert [(s["case"], s["causal"]) for s in specs] == [
    ("fwd+bwd@32", True),
    ("fwd+bwd@32 (not causal)", False),
  ]
