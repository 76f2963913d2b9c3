"""One pure training step and one evaluation step, each compiled once.

The model is cut into a graph definition (static: structure, and whether dropout
is on), `params` (what the optimizer updates) and `rest` (the dropout RNG streams)
by `tfmr_jax.nn.state`. `TrainState` carries them, the optimizer state and the step
count through `jax.jit`; inside, `merge` rebuilds the model for the loss.

Dimension key: B batch, T length, V vocabulary.
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
from tfmr_jax.train.loss import mean_loss, metric_sums


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
  debug_checks: bool = False,
):
  """jitted (TrainState, batch) -> (TrainState, metrics); the input state is donated.

  metrics: "loss" (the optimized objective, label smoothing included) and the
  `metric_sums` of the batch.

  debug_checks: check values inside the compiled step (`chex.chexify`): the loss, the
  gradients and the updated parameters must be finite, and so must every attention
  op's inputs and output (`tfmr_jax.ops.debug_checks`), or the call raises
  AssertionError naming what broke: the step and the leaves, or the op and its
  argument. Costs a host sync per step; off by default.
  """

  @traced_once
  def train_step(state: TrainState, batch: dict):
    with ops_debug_checks(enabled=debug_checks):  # read by the ops while this traces
      return checked_train_step(state, batch)

  def checked_train_step(state: TrainState, batch: dict):
    def objective(params, rest):
      model = model_state.merge(graphdef, params, rest)
      logits_BTV = forward(model, batch, data_format)
      loss = mean_loss(logits_BTV, batch, label_smoothing=label_smoothing)
      rest = model_state.split(model).rest  # the dropout streams, advanced
      return loss, (rest, metric_sums(logits_BTV, batch["targets"], batch["weights"]))

    grad_fn = jax.value_and_grad(objective, has_aux=True)
    (loss, (rest, sums)), grads = grad_fn(state.params, state.rest)
    updates, opt_state = tx.update(grads, state.opt_state, state.params)
    params = optax.apply_updates(state.params, updates)
    if debug_checks:
      _assert_finite(state.step + 1, loss=loss, gradients=grads, parameters=params)
    return TrainState(state.step + 1, params, rest, opt_state), {"loss": loss, **sums}

  step_fn = jax.jit(train_step, donate_argnums=0)
  return chex.chexify(step_fn, async_check=False) if debug_checks else step_fn


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
