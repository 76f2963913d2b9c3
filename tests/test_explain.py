"""Quick checks of experiments/explain: each measurement against an independent computation."""

import itertools
import json
import math
import os
import sys
from collections import Counter

import numpy as np
import pytest
from flax import nnx

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if ROOT not in sys.path:
  sys.path.insert(0, ROOT)

from experiments.explain import (  # noqa: E402
  causal,
  choices,
  driver,
  heads,
  norms,
  positions,
  relative,
  scaling,
  worked_example,
)
from tfmr_jax.models import GPT2, TransformerConfig, TransformerEncoder  # noqa: E402
from tfmr_jax.nn import capture_attention  # noqa: E402


def test_scaling_variance_grows_as_d_k_and_unscaled_softmax_saturates():
  m = scaling.measure_scaling((4, 256), rows=256)
  for i, d_k in enumerate(m["d_k"]):
    assert m["unscaled"]["variance"][i] == pytest.approx(d_k, rel=0.15)
    assert m["scaled"]["variance"][i] == pytest.approx(1.0, rel=0.15)
  assert m["unscaled"]["max_weight"][1] > 0.85 > 0.5 > m["unscaled"]["max_weight"][0]
  assert m["unscaled"]["grad_norm"][1] < 0.1 * m["unscaled"]["grad_norm"][0]
  assert m["scaled"]["max_weight"][1] == pytest.approx(m["scaled"]["max_weight"][0], rel=0.2)


def test_worked_example_against_numpy_softmax():
  logits_TS = np.eye(3) / math.sqrt(3)
  expected_TS = np.exp(logits_TS) / np.exp(logits_TS).sum(-1, keepdims=True)
  weights_TS, out_TH = worked_example.worked_example()
  np.testing.assert_allclose(weights_TS, expected_TS, rtol=1e-6)
  np.testing.assert_allclose(out_TH, 10 * expected_TS, rtol=1e-6)
  assert round(float(weights_TS[0, 0]), 4) == 0.4711 and round(float(weights_TS[0, 1]), 4) == 0.2645
  # The printed 0.843 comes from none of the usual scales.
  for _, scale in worked_example.CANDIDATE_SCALES.values():
    assert abs(worked_example.worked_example(scale)[0][0, 0] - 0.843) > 0.05
  low, high = worked_example.printed_logit_gap()
  for gap in np.linspace(low, high, 7)[1:-1]:  # each gap inside prints as 0.843 / 0.078
    diag, off = math.exp(gap) / (math.exp(gap) + 2), 1 / (math.exp(gap) + 2)
    assert (round(diag, 3), round(off, 3)) == worked_example.PRINTED_WEIGHTS
  for gap in (low - 0.01, high + 0.01):  # and the range is tight
    diag, off = math.exp(gap) / (math.exp(gap) + 2), 1 / (math.exp(gap) + 2)
    assert (round(diag, 3), round(off, 3)) != worked_example.PRINTED_WEIGHTS


def test_encoder_without_positions_is_permutation_equivariant():
  errors = positions.measure_equivariance()
  assert errors["none"] < 1e-5 * max(errors["output_scale"], 1.0)
  assert errors["sinusoidal"] > 1e-2 and errors["learned"] > 1e-3


def test_rotation_map_shifts_a_numpy_sinusoid_table():
  P, D, k = 97, 10, 7
  pos_P1 = np.arange(P)[:, None]
  angle_PI = pos_P1 / 10000.0 ** (np.arange(0, D, 2)[None, :] / D)
  table_PD = np.stack([np.sin(angle_PI), np.cos(angle_PI)], axis=-1).reshape(P, D)
  np.testing.assert_allclose(table_PD[:-k] @ positions.rotation_map(k, D), table_PD[k:], atol=1e-10)
  shift = positions.measure_shift_map((1, 13), num_positions=128, d_model=16)
  assert max(shift["fit_error"]) < 1e-4 and max(shift["rotation_error"]) < 1e-4
  with pytest.raises(ValueError, match="even d_model"):
    positions.rotation_map(1, 7)


def test_equivariant_ceiling_matches_brute_force():
  V, T = 3, 4
  sequences = np.array(list(itertools.product(range(V), repeat=T)))
  groups = {}  # (x_t, multiset) -> Counter of mirror tokens, over every sequence and t
  for row in sequences:
    for t in range(T):
      groups.setdefault((row[t], tuple(sorted(row))), Counter())[row[T - 1 - t]] += 1
  best = sum(max(c.values()) for c in groups.values()) / (len(sequences) * T)
  assert positions.equivariant_ceiling(sequences) == pytest.approx(best, abs=1e-12)


def test_batchnorm_sees_padding_and_layernorm_does_not():
  m = norms.measure_norms(padded_lengths=(16, 64))
  x_BTD, _ = norms.padded_batch(norms.LENGTHS, 64)
  assert m["bn_mean"][1] == pytest.approx(float(np.mean(np.asarray(x_BTD)[..., 0])), abs=1e-5)
  assert m["bn_drift"][1] > 0.5
  assert m["ln_drift"][1] < 1e-5 and m["bn_masked_drift"][1] < 1e-4
  assert m["bn_batch_dependence"] > 1e-2 and m["ln_batch_dependence"] < 1e-5
  with pytest.raises(ValueError, match="padded length T=8"):
    norms.padded_batch(norms.LENGTHS, 8)


def test_future_tokens_do_not_move_past_logits_of_a_gpt():
  config = TransformerConfig.gpt(vocab_size=11, max_len=13, num_layers=2, num_heads=2, d_model=14)
  model = GPT2(config, rngs=nnx.Rngs(3))
  tokens_T = np.random.default_rng(0).integers(0, 11, 13)
  change_PT = causal.measure_causality(model, tokens_T, vocab_size=11, draws=2)
  past_PT = np.arange(13)[None, :] <= np.arange(13)[:, None]
  assert change_PT[past_PT].max() < 1e-5
  assert change_PT[~past_PT].min() > 1e-4


def test_pointer_task_targets_by_brute_force():
  task = heads.Pointers(num_symbols=3, length=7, offsets=(-2, 3), test_size=5)
  batch = task.train_batch(seed=1, step=4, batch_size=6)
  for row, target in zip(batch["inputs"], batch["targets"], strict=True):
    for t in range(7):
      assert target[t] == row[(t - 2) % 7] * 3 + row[(t + 3) % 7]
  again = task.train_batch(seed=1, step=4, batch_size=6)
  np.testing.assert_array_equal(batch["inputs"], again["inputs"])
  assert not np.array_equal(
    batch["inputs"], task.train_batch(seed=1, step=5, batch_size=6)["inputs"]
  )
  maps_NTS = np.zeros((2, 7, 7))
  maps_NTS[0, np.arange(7), (np.arange(7) - 2) % 7] = 1.0
  maps_NTS[1, np.arange(7), (np.arange(7) + 3) % 7] = 0.25
  np.testing.assert_allclose(heads.weight_on_pointers(maps_NTS, task), [[1.0, 0.0], [0.0, 0.25]])
  with pytest.raises(ValueError, match="distinct and nonzero"):
    heads.Pointers(num_symbols=3, length=7, offsets=(2, 9))


def test_driver_writes_the_report(tmp_path):
  findings = driver.run(
    out_dir=str(tmp_path),
    workdir=str(tmp_path / "runs"),
    quick=True,
    only=["worked_example", "norms"],
  )
  report = (tmp_path / "EXPLAINED.md").read_text()
  assert "0.4711" in report and "wrong" in report
  for finding in findings:
    for name in finding.figures:
      assert (tmp_path / "explain" / name).stat().st_size > 1000
      assert f"](explain/{name})" in report
  numbers = json.loads((tmp_path / "explain" / "numbers.json").read_text())
  assert numbers["worked_example"]["weight_diagonal"] == 0.4711
  with pytest.raises(ValueError, match="unknown claims"):
    driver.run(out_dir=str(tmp_path), only=["scalling"])


def test_first_layer_logits_are_the_models_own():
  tokens_BT = np.random.default_rng(0).integers(0, 11, (3, 10))
  config = TransformerConfig(
    vocab_size=11, max_len=13, num_layers=1, d_model=12, num_heads=2, positions="rope", norm="pre"
  )
  model = TransformerEncoder(config, rngs=nnx.Rngs(1))
  _, maps = capture_attention(model, tokens_BT)
  logits_BNTT = np.asarray(relative.first_layer_logits(model, tokens_BT, np.arange(10)))
  probs_BNTT = np.exp(logits_BNTT - logits_BNTT.max(-1, keepdims=True))
  probs_BNTT /= probs_BNTT.sum(-1, keepdims=True)
  np.testing.assert_allclose(probs_BNTT, maps["layers.0.attention"], atol=1e-5)


def test_choices_trains_each_variant_and_rope_logits_ignore_a_shift(tmp_path):
  runs = choices.train_variants(
    str(tmp_path), num_steps=4, comparisons={"positions": ("rope", "learned")}, test_size=64
  )
  assert sorted(runs) == ["learned", "rope"]
  for run in runs.values():
    steps, accuracy = run["accuracy"]
    assert steps[-1] == 4 and len(steps) == len(accuracy) >= 2
    assert len(run["loss"][0]) >= 2 and all(np.isfinite(run["loss"][1]))
  assert runs["learned"]["params"] == runs["rope"]["params"] + 16 * 32  # its position table
  shifts = choices.measure_shifts(runs, rows=8)
  assert max(shifts["rope"]["relative_change"]) < 1e-4
  assert min(shifts["learned"]["relative_change"]) > 1e-3
  figure = choices.plot_shifts(shifts, str(tmp_path / "figures"))
  assert (tmp_path / "figures" / figure).stat().st_size > 1000


def test_driver_only_keeps_the_other_claims(tmp_path):
  driver.run(out_dir=str(tmp_path), quick=True, only=["worked_example"])
  driver.run(out_dir=str(tmp_path), quick=True, only=["norms"])
  report = (tmp_path / "EXPLAINED.md").read_text()
  assert report.index("## 2. The worked example") < report.index("## 6. LayerNorm")
  numbers = json.loads((tmp_path / "explain" / "numbers.json").read_text())
  assert list(numbers) == ["worked_example", "norms"]
  driver.run(out_dir=str(tmp_path), quick=False, only=["worked_example"])  # not mixed
  assert "## 6. LayerNorm" not in (tmp_path / "EXPLAINED.md").read_text()


@pytest.mark.slow
def test_every_claim_runs_quick(tmp_path):
  findings = driver.run(out_dir=str(tmp_path), workdir=str(tmp_path / "runs"), quick=True)
  assert [f.key for f in findings] == list(driver.CLAIMS)
  assert (tmp_path / "explain" / "reverse_attention.gif").stat().st_size > 1000
