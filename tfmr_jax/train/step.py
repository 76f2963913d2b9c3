"""One pure training step and one evaluation step, each compiled once.

The model is cut into a graph definition (static: structure, and whether dropout
is on), `params` (what the optimizer updates) and `rest` (the dropout RNG streams)
by `tfmr_jax.nn.state`. `TrainState` carries them, the optimizer state and the step
count through `jax.jit`; inside, `merge` rebuilds the model for the loss.

Gradient accumulation (`grad_accum_steps` k > 1) splits the batch into k micro-batches
and runs them one after another in a `jax.lax.scan`, summing gradients of the *sum*
of weighted token losses and the weights; one update then uses sum / total weight,
the large batch's weighted mean, not a mean of per-micro-batch means.

Dimension key: B batch, T length, V vocabulary, A micro-batches (grad_accum_steps).
"""

import functools
from typing import NamedTuple

import chex
import jax
import jax.numpy as jnp
import optax
from flax import nnx

from tfmr_jax.nn import state as model_state
from tfmr_jax.ops.debug import debug_checks as ops_debug_checks
from tfmr_jax.train.loss import metric_sums, summed_loss


def traced_once(fn):
  """`fn`, raising AssertionError when JAX traces it a second time (a silent recompile).

  Unlike `chex.assert_max_traces`, which counts by source code and call stack across
  the whole process, this counts per wrapped function, so a notebook can train twice.
  """
  traces = 0

  @functools.wraps(fn)
  def wrapped(*args, **kwargs):
    nonlocal traces
    traces += 1
    if traces > 1:
      raise AssertionError(
        f"{fn.__name__} is being traced a second time: a batch changed shape or dtype, "
        "which would recompile the step"
      )
    return fn(*args, **kwargs)

  return wrapped


class TrainState(NamedTuple):
  step: jax.Array  # int32 []: updates done
  params: nnx.State  # the nnx.Param variables
  rest: nnx.State  # every other variable: the dropout RNG keys and counts
  opt_state: optax.OptState


def init_state(model: nnx.Module, tx: optax.GradientTransformation):
  """(train graphdef, eval graphdef, TrainState at step 0) of a freshly built model."""
  train_graphdef, eval_graphdef = model_state.mode_graphdefs(model)
  _, params, rest = model_state.split(model)
  state = TrainState(jnp.zeros((), jnp.int32), params, rest, tx.init(params))
  return train_graphdef, eval_graphdef, state


def forward(model: nnx.Module, batch: dict, data_format: str):
  """logits_BTV of a batch: (src, tgt_in) for "seq2seq", inputs otherwise."""
  if data_format == "seq2seq":
    return model(batch["src"], batch["tgt_in"])
  return model(batch["inputs"])


def make_train_step(
  graphdef,
  tx: optax.GradientTransformation,
  *,
  data_format: str,
  label_smoothing: float = 0.0,
  grad_accum_steps: int = 1,
  debug_checks: bool = False,
  out_shardings=None,
):
  """jitted (TrainState, batch) -> (TrainState, metrics); the input state is donated.

  metrics: "loss" (the optimized objective, label smoothing included) and the
  `metric_sums` of the batch.

  grad_accum_steps: A; with A > 1 the batch of B rows runs as A micro-batches of B / A
  rows (rows a, a + A, a + 2A, ... form micro-batch a, so each stays spread over the
  data-parallel devices), accumulated in float32 by a `jax.lax.scan`, then one
  optimizer update. Gradient, loss and metrics are the large batch's, up to float
  round-off. Each micro-batch advances the dropout stream, so with dropout on the
  masks differ from those of the one-batch step (the expectation does not).

  debug_checks: check values inside the compiled step (`chex.chexify`): the loss, the
  gradients and the updated parameters must be finite, and so must every attention
  op's inputs and output (`tfmr_jax.ops.debug_checks`), or the call raises
  AssertionError naming what broke: the step and the leaves, or the op and its
  argument. Costs a host sync per step; off by default.

  out_shardings: (the TrainState's shardings, the metrics' sharding), so the updated
  state keeps the layout it came in with (`tfmr_jax.train.sharding`); None = XLA's
  choice.
  """

  @traced_once
  def train_step(state: TrainState, batch: dict):
    with ops_debug_checks(enabled=debug_checks):  # read by the ops while this traces
      return checked_train_step(state, batch)

  if not isinstance(grad_accum_steps, int) or grad_accum_steps < 1:
    raise ValueError(f"grad_accum_steps={grad_accum_steps!r}: must be a positive int")

  def summed_objective(params, rest, batch: dict):
    """(weighted loss sum, (rest advanced, weight sum, metric sums)) of one (micro-)batch."""
    model = model_state.merge(graphdef, params, rest)
    logits_BTV = forward(model, batch, data_format)
    loss_sum, weight_sum = summed_loss(logits_BTV, batch, label_smoothing=label_smoothing)
    rest = model_state.split(model).rest  # the dropout streams, advanced
    sums = metric_sums(logits_BTV, batch["targets"], batch["weights"])
    return loss_sum, (rest, weight_sum, sums)

  def mean_objective(params, rest, batch: dict):
    loss_sum, (rest, weight_sum, sums) = summed_objective(params, rest, batch)
    return loss_sum / jnp.maximum(weight_sum, 1.0), (rest, sums)

  def checked_train_step(state: TrainState, batch: dict):
    if grad_accum_steps == 1:
      grad_fn = jax.value_and_grad(mean_objective, has_aux=True)
      (loss, (rest, sums)), grads = grad_fn(state.params, state.rest, batch)
    else:
      grad_fn = jax.value_and_grad(summed_objective, has_aux=True)
      loss, rest, sums, grads = _accumulate(grad_fn, state, batch, grad_accum_steps)
    updates, opt_state = tx.update(grads, state.opt_state, state.params)
    params = optax.apply_updates(state.params, updates)
    if debug_checks:
      _assert_finite(state.step + 1, loss=loss, gradients=grads, parameters=params)
    return TrainState(state.step + 1, params, rest, opt_state), {"loss": loss, **sums}

  step_fn = jax.jit(train_step, donate_argnums=0, out_shardings=out_shardings)
  return chex.chexify(step_fn, async_check=False) if debug_checks else step_fn


def _accumulate(grad_fn, state: TrainState, batch: dict, A: int):
  """(loss, rest, metric sums, grads) of `batch` as A micro-batches: sums over a scan,
  divided once by the total weight. grad_fn: value_and_grad of `summed_objective`."""
  B = jax.tree.leaves(batch)[0].shape[0]
  if B % A:
    raise ValueError(f"batch of {B} rows cannot split into grad_accum_steps={A} micro-batches")
  micro_batches = jax.tree.map(lambda x: x.reshape(B // A, A, *x.shape[1:]).swapaxes(0, 1), batch)

  def accumulate(carry, micro_batch):
    grad_sum, loss_sum, weight_sum, sums, rest = carry
    (loss, (rest, weight, micro_sums)), grads = grad_fn(state.params, rest, micro_batch)
    grad_sum = jax.tree.map(lambda total, g: total + g.astype(total.dtype), grad_sum, grads)
    sums = jax.tree.map(jnp.add, sums, micro_sums)
    return (grad_sum, loss_sum + loss, weight_sum + weight, sums, rest), None

  first = jax.tree.map(lambda x: x[0], micro_batches)
  (loss0, (_, weight0, sums0)), _ = jax.eval_shape(grad_fn, state.params, state.rest, first)
  grad_sum = jax.tree.map(
    lambda p: jnp.zeros(p.shape, jnp.promote_types(p.dtype, jnp.float32)), state.params
  )
  carry = (grad_sum, _zeros(loss0), _zeros(weight0), _zeros(sums0), state.rest)
  (grad_sum, loss_sum, weight_sum, sums, rest), _ = jax.lax.scan(accumulate, carry, micro_batches)
  total_weight = jnp.maximum(weight_sum, 1.0)
  grads = jax.tree.map(lambda g, p: (g / total_weight).astype(p.dtype), grad_sum, state.params)
  return loss_sum / total_weight, rest, sums, grads


def _zeros(tree):
  """Zeros shaped like the leaves of `tree` (arrays or ShapeDtypeStructs)."""
  return jax.tree.map(lambda x: jnp.zeros(x.shape, x.dtype), tree)


def _assert_finite(step, **trees) -> None:
  """chex value checks (inside a chexified jit): every leaf of every tree is finite.

  A failure names the tree, the step and, leaf by leaf, which are not (nan marks them).
  """
  for name, tree in trees.items():
    leaves = jax.tree_util.tree_flatten_with_path(tree)[0]
    by_path = {_path(path): x for path, x in leaves}
    chex.assert_tree_all_finite(
      by_path, custom_message=f"{name} after step {{}}", custom_message_format_vars=(step,)
    )


@jax.jit
def all_finite(tree) -> jax.Array:
  """bool []: every floating-point value of `tree` is finite; one compiled reduction."""
  finite = [
    jnp.all(jnp.isfinite(x)) for x in jax.tree.leaves(tree) if jnp.issubdtype(x.dtype, jnp.inexact)
  ]
  return jnp.all(jnp.stack(finite)) if finite else jnp.bool_(True)


def make_eval_step(graphdef, *, data_format: str):
  """jitted (params, rest, batch) -> `metric_sums` of the batch, dropout off."""

  @traced_once
  def eval_step(params, rest, batch: dict):
    model = model_state.merge(graphdef, params, rest)
    return metric_sums(forward(model, batch, data_format), batch["targets"], batch["weights"])

  return jax.jit(eval_step)


def _path(path) -> str:
  """ "layers/0/attention/query/kernel" for a parameter leaf's key path."""
  return jax.tree_util.keystr(path, simple=True, separator="/").removesuffix("/value")
