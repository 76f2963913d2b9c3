"""Gradient accumulation takes the large batch's step: same parameters, loss and metrics.

Plain SGD, 3 steps, dropout 0 (SGD moves each parameter by lr times its gradient, so
a gradient that is exactly 0 in exact arithmetic, such as the attention key bias's,
stays at round-off; Adam would normalize that round-off into full steps). The
batches' weights differ row by row (each row keeps a
random prefix of its tokens), so the micro-batches' total weights differ and a mean of
per-micro-batch means would not be the large batch's weighted mean; the test checks
that it is not.
Dimension key: B batch, T length.
"""

import jax
import numpy as np
import optax
import pytest

from tests.train.quick import quick_config
from tfmr_jax import config as C
from tfmr_jax.tasks import make_task
from tfmr_jax.train.build import build_model
from tfmr_jax.train.optim import build_optimizer
from tfmr_jax.train.step import init_state, make_eval_step, make_train_step

STEPS = 3


def _batch(task, step: int) -> dict:
  batch = task.train_batch(0, step, 64)
  B, T = batch["weights"].shape
  keep_B1 = np.random.default_rng(step).integers(1, T + 1, size=(B, 1))
  batch["weights"] = (batch["weights"] * (np.arange(T)[None] < keep_B1)).astype(np.float32)
  return batch


def _micro_batches(batch: dict, A: int) -> list[dict]:
  """Micro-batch a holds rows a, a + A, a + 2A, ... (the step's own split)."""
  return [{key: x[a::A] for key, x in batch.items()} for a in range(A)]


@pytest.fixture(scope="module")
def eval_sums():
  """metric_sums of a batch at the initial parameters (the state the first step starts at)."""
  config = C.validate(quick_config("reverse"))
  task = make_task(**config.task)
  tx, _ = build_optimizer(config)
  _, eval_graphdef, state = init_state(build_model(config, task, seed=0), tx)
  steps = {}  # one compiled eval step per micro-batch size (each traces once)

  def sums(batch):
    B = batch["weights"].shape[0]
    steps.setdefault(B, make_eval_step(eval_graphdef, data_format=task.format))
    return jax.tree.map(float, steps[B](state.params, state.rest, batch))

  return sums


def _run(grad_accum_steps: int):
  config = C.validate(quick_config("reverse", train={"grad_accum_steps": grad_accum_steps}))
  task = make_task(**config.task)
  tx = optax.sgd(0.5)
  graphdef, _, state = init_state(build_model(config, task, seed=0), tx)
  step = make_train_step(graphdef, tx, data_format=task.format, grad_accum_steps=grad_accum_steps)
  metrics = []
  for i in range(STEPS):
    state, m = step(state, _batch(task, i))
    metrics.append(jax.tree.map(float, m))
  return task, state, metrics


@pytest.fixture(scope="module")
def one_batch():
  return _run(1)


@pytest.mark.parametrize("grad_accum_steps", [2, 4])
def test_accumulated_steps_equal_the_large_batch_steps(one_batch, eval_sums, grad_accum_steps):
  task, reference, ref_metrics = one_batch
  _, state, metrics = _run(grad_accum_steps)
  leaves = jax.tree_util.tree_flatten_with_path(state.params)[0]
  for (path, a), b in zip(leaves, jax.tree.leaves(reference.params), strict=True):
    name = jax.tree_util.keystr(path, simple=True, separator="/")
    np.testing.assert_allclose(np.asarray(a), np.asarray(b), rtol=1e-5, atol=1e-6, err_msg=name)
  assert abs(metrics[0]["loss"] - ref_metrics[0]["loss"]) <= 1e-6
  for got, ref in zip(metrics, ref_metrics, strict=True):
    for name in ("token_count", "token_correct", "seq_count", "seq_correct"):
      assert got[name] == ref[name], name
    assert got["loss_sum"] == pytest.approx(ref["loss_sum"], rel=1e-6)
  # Independently, from the eval step at the initial parameters: the step-1 loss is
  # the weighted mean over the whole batch, and the mean of the micro-batches' means
  # (what a naive accumulation would optimize) is measurably another number.
  sums = [eval_sums(micro) for micro in _micro_batches(_batch(task, 0), grad_accum_steps)]
  weighted_mean = sum(s["loss_sum"] for s in sums) / sum(s["token_count"] for s in sums)
  mean_of_means = np.mean([s["loss_sum"] / s["token_count"] for s in sums])
  assert metrics[0]["loss"] == pytest.approx(weighted_mean, rel=1e-6)
  assert abs(mean_of_means - weighted_mean) > 1e-3


def test_batch_size_must_split_into_the_micro_batches():
  with pytest.raises(C.ConfigError) as error:
    C.validate(quick_config("reverse", train={"batch_size": 64, "grad_accum_steps": 3}))
  message = str(error.value)
  assert "config.train.batch_size = 64" in message
  assert "config.train.grad_accum_steps = 3" in message
  config = C.validate(quick_config("reverse", train={"batch_size": 64, "grad_accum_steps": 16}))
  with pytest.raises(C.ConfigError, match=r"grad_accum_steps = 16 times the 8 devices"):
    C.check_devices(config, 8)
  C.check_devices(config, 4)
