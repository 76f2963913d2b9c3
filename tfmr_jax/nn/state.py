"""A model as pure data and back: the one place that splits and merges NNX modules.

JAX transforms (jit, grad) take arrays, not objects. So every compiled function in
the project (the training and evaluation steps, decoding, the explainers) works on
a model cut into three parts:

  graphdef  static: the module structure, and whether dropout is on (train) or off (eval)
  params    the nnx.Param variables: what the optimizer updates, what a checkpoint holds
  rest      every other variable: dropout RNG keys and counts, decoding caches

and rebuilds the model inside the trace with `merge`. Keeping these calls here means a
change of Flax's functional API is a one-file fix.
"""

from typing import NamedTuple

from flax import nnx


class ModelParts(NamedTuple):
  """(graphdef, params, rest) of a model: `merge(*parts)` rebuilds it."""

  graphdef: nnx.GraphDef
  params: nnx.State
  rest: nnx.State


def split(model: nnx.Module) -> ModelParts:
  """The model's (graphdef, params, rest); the model itself is left as it is."""
  return ModelParts(*nnx.split(model, nnx.Param, ...))


def merge(graphdef: nnx.GraphDef, params: nnx.State, rest: nnx.State) -> nnx.Module:
  """A model rebuilt from its parts, with fresh Variables (safe inside jit and grad)."""
  return nnx.merge(graphdef, params, rest, copy=True)


def merge_eval(graphdef: nnx.GraphDef, params: nnx.State, rest: nnx.State) -> nnx.Module:
  """`merge`, then eval mode (no dropout): the model a jitted decoder runs."""
  model = merge(graphdef, params, rest)
  model.eval()
  return model


def mode_graphdefs(model: nnx.Module) -> tuple[nnx.GraphDef, nnx.GraphDef]:
  """(train graphdef, eval graphdef): dropout on and off. `model` is left in train mode."""
  model.eval()
  eval_graphdef = split(model).graphdef
  model.train()
  return split(model).graphdef, eval_graphdef


def eval_copy(model: nnx.Module) -> nnx.Module:
  """A copy of `model` in eval mode (no dropout); the caller's model keeps its mode."""
  copy = merge(*split(model))
  copy.eval()
  return copy


def params_of(model: nnx.Module) -> nnx.State:
  """The model's nnx.Param variables as a State (works on `nnx.eval_shape` models)."""
  return nnx.state(model, nnx.Param)
