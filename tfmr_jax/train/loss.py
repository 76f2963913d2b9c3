"""The training loss and the evaluation metrics: pure functions of logits, targets, weights.

`mean_loss` is what a training step optimizes. The metrics are built from the same
per-token cross-entropy.

Evaluation accumulates *sums* over batches (`metric_sums`) and turns them into means
once at the end (`finalize`), so the result does not depend on how the held-out set
was cut into batches. A row counts for exact match when any of its weights is
non-zero (padding rows have none); it matches when every weighted token is the
argmax. For a causal model, every weighted argmax being right is the same event as
greedy decoding reproducing the answer, token by token.

Dimension key: B batch, T length, V vocabulary.
"""

import math

import jax
import jax.numpy as jnp


def cross_entropy_BT(logits_BTV, targets_BT, *, label_smoothing: float = 0.0):
  """float32 [B, T]: -log p(target), mixed with the uniform-target loss by `label_smoothing`.

  With smoothing a, the target distribution is (1 - a) one_hot + a / V (as
  `optax.smooth_labels`).
  """
  logp_BTV = jax.nn.log_softmax(logits_BTV.astype(jnp.float32), axis=-1)
  nll_BT = -jnp.take_along_axis(logp_BTV, targets_BT[..., None], axis=-1)[..., 0]
  if not label_smoothing:
    return nll_BT
  uniform_BT = -jnp.mean(logp_BTV, axis=-1)
  return (1.0 - label_smoothing) * nll_BT + label_smoothing * uniform_BT


def summed_loss(logits_BTV, batch: dict, *, label_smoothing: float = 0.0):
  """(float32 [] sum of weighted token losses, [] sum of the weights) of a batch.

  batch: "targets" int [B, T] and "weights" [B, T] (0 for padding and prompt tokens).
  Sums, not a mean, so micro-batches add up to the large batch (gradient accumulation).
  """
  loss_BT = cross_entropy_BT(logits_BTV, batch["targets"], label_smoothing=label_smoothing)
  weights_BT = batch["weights"]
  return jnp.sum(loss_BT * weights_BT), jnp.sum(weights_BT)


def mean_loss(logits_BTV, batch: dict, *, label_smoothing: float = 0.0):
  """float32 []: weighted mean cross-entropy over the batch's weighted tokens
  (`summed_loss`'s sum over its weight, a batch without weight giving 0)."""
  loss_sum, weight_sum = summed_loss(logits_BTV, batch, label_smoothing=label_smoothing)
  return loss_sum / jnp.maximum(weight_sum, 1.0)


def metric_sums(logits_BTV, targets_BT, weights_BT) -> dict:
  """Sums over a batch: loss_sum, token_count, token_correct, seq_count, seq_correct (float32)."""
  weights_BT = weights_BT.astype(jnp.float32)
  loss_BT = cross_entropy_BT(logits_BTV, targets_BT)
  right_BT = (jnp.argmax(logits_BTV, axis=-1) == targets_BT).astype(jnp.float32)
  counted_B = (jnp.sum(weights_BT, axis=-1) > 0).astype(jnp.float32)
  all_right_B = jnp.all((right_BT > 0) | (weights_BT == 0), axis=-1).astype(jnp.float32)
  return {
    "loss_sum": jnp.sum(loss_BT * weights_BT),
    "token_count": jnp.sum(weights_BT),
    "token_correct": jnp.sum(right_BT * weights_BT),
    "seq_count": jnp.sum(counted_B),
    "seq_correct": jnp.sum(all_right_B * counted_B),
  }


def add_sums(total: dict | None, sums: dict) -> dict:
  """Accumulate host-side (float64) sums of `metric_sums` results."""
  sums = {key: float(value) for key, value in sums.items()}
  if total is None:
    return sums
  return {key: total[key] + sums[key] for key in total}


def finalize(sums: dict, names) -> dict:
  """Means from sums: any of loss, perplexity, token_accuracy, exact_match, in `names`."""
  loss = sums["loss_sum"] / sums["token_count"]
  values = {
    "loss": loss,
    "perplexity": math.exp(loss) if loss < 700 else math.inf,
    "token_accuracy": sums["token_correct"] / sums["token_count"],
    "exact_match": sums["seq_correct"] / sums["seq_count"],
  }
  return {name: values[name] for name in names}
