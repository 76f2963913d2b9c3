"""experiments/bench_train.py: its FLOP count against hand counts and traced matmuls, a
two-step smoke run of its whole path, and its flag errors."""

import functools
import json
import math
import os
import sys

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if ROOT not in sys.path:
  sys.path.insert(0, ROOT)

import tfmr_jax as tj  # noqa: E402
from experiments import bench_train  # noqa: E402
from tfmr_jax.models import GPT2, TransformerConfig  # noqa: E402


def traced_matmul_flops(jaxpr) -> int:
  """2 * (output size) * (contracted size), summed over every dot_general in a jaxpr."""
  total = 0
  for eqn in jaxpr.eqns:
    if eqn.primitive.name in ("scan", "while"):
      raise NotImplementedError(f"{eqn.primitive.name} would need its trip count")
    if eqn.primitive.name == "dot_general":
      (contract_lhs, _), _ = eqn.params["dimension_numbers"]
      lhs_shape = eqn.invars[0].aval.shape
      out_size = math.prod(eqn.outvars[0].aval.shape)
      total += 2 * out_size * math.prod(lhs_shape[i] for i in contract_lhs)
    for param in eqn.params.values():
      for sub in param if isinstance(param, (tuple, list)) else (param,):
        inner = getattr(sub, "jaxpr", sub)
        if hasattr(inner, "eqns"):
          total += traced_matmul_flops(inner)
  return total


# L=2, N=3, H=5 (D=15), F=7, V=11, T=13: per token of the forward pass, by hand:
#   q, out projections 2 * 15 * 15 each; k, v 2 * 15 * (K * 5) each;
#   feed-forward 2 * 15 * 7 twice = 420;
#   attention: T (T + 1) / 2 = 91 (query, key) pairs per sequence and head, 2 * 5 FLOPs
#   each for q.k and for p.v: 3 heads * 91 * 20 / 13 tokens = 420;
#   LM head 2 * 15 * 11 = 330.
HAND_FORWARD = {
  3: 2 * (4 * 450 + 420 + 420) + 330,  # K = N = 3: 5610
  1: 2 * (2 * 450 + 2 * 150 + 420 + 420) + 330,  # K = 1 (multi-query): 4410
}


@pytest.mark.parametrize("K", [3, 1])
def test_model_flops_match_hand_count_and_the_traced_matmuls(K):
  counted = bench_train.model_flops_per_token(
    num_layers=2, d_model=15, num_heads=3, num_kv_heads=K, d_ff=7, vocab_size=11, block_size=13
  )
  assert counted["forward"] == HAND_FORWARD[K]
  assert counted["train"] == 3 * HAND_FORWARD[K]
  assert counted["attention"] == 2 * 420 and counted["lm_head"] == 330

  # The matmuls JAX actually traces for the model with reference attention, which also
  # computes the T (T - 1) / 2 masked pairs per sequence and head the count leaves out.
  B, T = 2, 13
  config = TransformerConfig.gpt(
    vocab_size=11, max_len=T, num_layers=2, num_heads=3, d_model=15, d_ff=7, num_kv_heads=K
  )
  model = GPT2(
    config,
    attention_fn=functools.partial(tj.attention, implementation="reference"),
    rngs=nnx.Rngs(0),
  )
  graphdef, params = nnx.split(model)
  tokens_BT = jnp.asarray(np.random.default_rng(0).integers(0, 11, (B, T)), jnp.int32)
  weights_BTV = jnp.asarray(np.random.default_rng(1).normal(size=(B, T, 11)), jnp.float32)

  def loss(params):
    return jnp.sum(nnx.merge(graphdef, params)(tokens_BT) * weights_BTV)

  masked = 2 * B * 3 * (T * (T - 1) // 2) * (2 * 2 * 5)  # L B N pairs (q.k + p.v)
  forward = traced_matmul_flops(jax.make_jaxpr(loss)(params).jaxpr)
  assert forward == counted["forward"] * B * T + masked
  train = traced_matmul_flops(jax.make_jaxpr(jax.grad(loss))(params).jaxpr)
  assert train == counted["train"] * B * T + 3 * masked


def tiny_recipe(original, recipe):
  config = original(recipe)
  config.task.block_size = 11
  config.model.update(num_layers=1, num_heads=2, d_model=14)  # H = 7, F = 4 D = 56
  config.train.batch_size = 3
  return config


# bfloat16 only changes the config's dtype (its training is tested in
# tests/train/test_mixed_precision.py), so its run of the whole path is a slow one.
@pytest.mark.parametrize("dtype", ["float32", pytest.param("bfloat16", marks=pytest.mark.slow)])
def test_two_step_run_writes_every_field(tmp_path, monkeypatch, dtype):
  text = "to be or not to be, that is the question.\n" * 40
  corpus = tmp_path / "corpus.txt"
  corpus.write_text(text)
  V = len(set(text))
  ceilings = iter([{"flops_per_s": 1e9, "by_n": {}}, {"flops_per_s": 2e9, "by_n": {}}])
  monkeypatch.setattr(bench_train, "matmul_ceiling", lambda dtype, reps: next(ceilings))
  original = bench_train.load_recipe
  monkeypatch.setattr(bench_train, "load_recipe", lambda r: tiny_recipe(original, r))
  out = tmp_path / "bench"
  bench_train.main(
    [
      "--recipes",
      "cpu",
      "--impls",
      "auto",
      "reference",
      "--reps",
      "2",
      "--corpus-path",
      str(corpus),
      "--out",
      str(out),
      "--dtype",
      dtype,
    ]
  )

  results = json.loads(out.with_suffix(".json").read_text())
  assert results["ceiling_flops"] == 2e9  # the higher of before and after
  env = results["environment"]
  assert env["backend"] == jax.default_backend() and env["dtype"] == dtype
  recipe = results["recipes"]["cpu"]
  B, T, D, F, L = 3, 11, 14, 56, 1
  # Per token forward: projections 8 D^2, feed-forward 4 D F, attention 2 D (T + 1),
  # LM head 2 D V; times 3, times B T per step.
  step_flops = 3 * (L * (8 * D * D + 4 * D * F + 2 * D * (T + 1)) + 2 * D * V) * B * T
  assert recipe["model_flops_per_step"] == step_flops
  # GPT-2 parameters by hand: wte V D, wpe T D, per layer 2 LayerNorms (2 D each), q k v
  # out (D^2 + D each), D -> F -> D (D F + F + F D + D); the final LayerNorm 2 D.
  n_params = V * D + T * D + L * (4 * D + 4 * (D * D + D) + 2 * D * F + F + D) + 2 * D
  assert recipe["n_params"] == n_params
  assert recipe["nanogpt_flops_per_token"] == 6 * (n_params - T * D) + 12 * L * D * T
  assert recipe["rounds"] == 2
  assert recipe["auto_resolves_to"] in ("reference", "tiled", "xla", "cudnn")
  for impl in ("auto", "reference"):
    r = recipe["impls"][impl]
    assert len(r["times_s"]) == 2 and r["min_ms"] <= r["ms"]
    seconds = r["ms"] / 1e3
    assert r["tokens_per_s"] == pytest.approx(B * T / seconds)
    assert r["mfu"] == pytest.approx(step_flops / seconds / 2e9)
    assert math.isfinite(r["last_loss"]) and r["compile_s"] > 0
  assert recipe["impls"]["auto"]["vs_auto"] == 1.0
  assert recipe["impls"]["reference"]["vs_auto"] == pytest.approx(
    recipe["impls"]["auto"]["ms"] / recipe["impls"]["reference"]["ms"]
  )
  cpu_targets = [c for c in results["targets"] if c["recipe"] == "cpu"]
  assert [c["which"] for c in cpu_targets] == ["best", "auto"]
  assert cpu_targets[1]["measured"] == recipe["impls"]["auto"]["mfu"]
  table = out.with_suffix(".md").read_text()
  assert "| recipe | impl | ms/step | tokens/s |" in table and "| cpu | reference |" in table


@pytest.mark.parametrize(
  "flags, named",
  [
    (["--recipes", "cpu", "tiny"], ["'tiny'", "baby"]),
    (["--impls", "auto", "flash"], ["'flash'", "reference", "tiled"]),
    (["--dtype", "float16"], ["'float16'", "float32", "bfloat16"]),
  ],
)
def test_bad_flags_fail_before_anything_compiles(flags, named, monkeypatch, capsys):
  def no_ceiling(dtype, reps):
    raise AssertionError("measured the ceiling before checking the flags")

  monkeypatch.setattr(bench_train, "matmul_ceiling", no_ceiling)
  with pytest.raises(SystemExit):
    bench_train.main(flags)
  err = capsys.readouterr().err
  for word in named:
    assert word in err
