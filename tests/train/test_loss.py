"""Loss and accuracy sums against NumPy and optax; batching does not change the means."""

import numpy as np
import optax
import pytest

from tfmr_jax.train.loss import add_sums, cross_entropy_BT, finalize, mean_loss, metric_sums


def _np_log_softmax(x):
  x = x - x.max(-1, keepdims=True)
  return x - np.log(np.exp(x).sum(-1, keepdims=True))


def _data(B=5, T=7, V=11, seed=0):
  rng = np.random.default_rng(seed)
  return (rng.normal(size=(B, T, V)).astype(np.float32), rng.integers(0, V, size=(B, T)))


def test_cross_entropy_matches_numpy(maybe_jit):
  logits, targets = _data()
  got = maybe_jit(cross_entropy_BT)(logits, targets)
  want = -np.take_along_axis(_np_log_softmax(logits.astype(np.float64)), targets[..., None], -1)
  np.testing.assert_allclose(got, want[..., 0], rtol=1e-6, atol=1e-6)


def test_mean_loss_is_the_weighted_mean_of_numpy_cross_entropy(maybe_jit):
  logits, targets = _data()
  weights = (np.random.default_rng(2).random(targets.shape) > 0.4).astype(np.float32)
  got = maybe_jit(mean_loss)(logits, {"targets": targets, "weights": weights})
  ll = _np_log_softmax(logits.astype(np.float64))
  nll = -np.take_along_axis(ll, targets[..., None], -1)[..., 0]
  np.testing.assert_allclose(got, (nll * weights).sum() / weights.sum(), rtol=1e-6)
  # No weighted token at all: zero, not NaN.
  empty = mean_loss(logits, {"targets": targets, "weights": np.zeros_like(weights)})
  assert float(empty) == 0.0


@pytest.mark.parametrize("alpha", [0.1, 0.3])
def test_label_smoothing_matches_optax(alpha):
  logits, targets = _data()
  got = cross_entropy_BT(logits, targets, label_smoothing=alpha)
  labels = optax.smooth_labels(np.eye(11, dtype=np.float32)[targets], alpha)
  want = optax.softmax_cross_entropy(logits, labels)
  np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6)


def test_exact_match_counts_weighted_tokens_and_skips_padding_rows():
  V = 3
  targets = np.array([[0, 1, 2], [2, 2, 2], [1, 0, 1], [0, 0, 0]])
  predicted = np.array([[0, 1, 2], [2, 0, 2], [0, 0, 1], [1, 1, 1]])
  logits = np.eye(V, dtype=np.float32)[predicted] * 5.0
  # row 2: the only wrong token is unweighted; row 3 is padding (no weights).
  weights = np.array([[1, 1, 1], [1, 1, 1], [0, 1, 1], [0, 0, 0]], np.float32)
  sums = add_sums(None, metric_sums(logits, targets, weights))
  assert sums["seq_count"] == 3 and sums["seq_correct"] == 2
  assert sums["token_count"] == 8 and sums["token_correct"] == 7
  m = finalize(sums, ("exact_match", "token_accuracy", "loss", "perplexity"))
  assert m["exact_match"] == pytest.approx(2 / 3) and m["token_accuracy"] == pytest.approx(7 / 8)
  assert m["perplexity"] == pytest.approx(np.exp(m["loss"]))


def test_means_do_not_depend_on_batching():
  logits, targets = _data(B=12)
  weights = (np.random.default_rng(1).random((12, 7)) > 0.3).astype(np.float32)
  whole = finalize(add_sums(None, metric_sums(logits, targets, weights)), ("loss", "exact_match"))
  total = None
  for s in (slice(0, 5), slice(5, 9), slice(9, 12)):
    total = add_sums(total, metric_sums(logits[s], targets[s], weights[s]))
  parts = finalize(total, ("loss", "exact_match"))
  assert parts["loss"] == pytest.approx(whole["loss"], rel=1e-6)
  assert parts["exact_match"] == whole["exact_match"]
  ll = _np_log_softmax(logits.astype(np.float64))
  nll = -np.take_along_axis(ll, targets[..., None], -1)[..., 0]
  assert whole["loss"] == pytest.approx((nll * weights).sum() / weights.sum(), rel=1e-5)
