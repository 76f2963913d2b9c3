"""Attention maps out of any model, by NNX's own intermediates: `sow` and `nnx.capture`.

Dimension key: B batch, N heads, T query length, S key/value length.

Attention modules sow their weights only when their `sow_attention` attribute is True.
`capture_attention` turns it on in a copy of the model (the caller's model is left as
it was), runs the copy under `nnx.capture` and returns the output with the maps. The
copy is what makes it work under `jax.jit` too: a model captured by closure belongs
to an outer trace, and NNX refuses to write intermediates into it from inside.
"""

import contextvars

from flax import nnx

from tfmr_jax.nn import state as model_state

ATTENTION_WEIGHTS = "attention_weights"

# The modules that sowed, in call order, while `capture_attention` runs (NNX's own
# capture state is keyed by module path, which says nothing of order).
_call_order: contextvars.ContextVar[list | None] = contextvars.ContextVar(
  "call_order", default=None
)


def sow_attention_weights(module: nnx.Module, probs_BNTS) -> None:
  """Record one call's attention weights on `module` (inside `capture_attention` only)."""
  module.sow(nnx.Intermediate, ATTENTION_WEIGHTS, probs_BNTS)
  order = _call_order.get()
  if order is not None:
    order.append(id(module))


def capture_attention(model: nnx.Module, *args, method: str = "__call__", **kwargs):
  """Run `model.<method>(*args, **kwargs)` and collect every attention map it computes.

  Works eagerly and inside `jax.jit`; the maps are computed only here, never in a
  plain call.

  Returns:
    (output, maps): output is what the method returns; maps is a dict from module
    path ("layers.0.attention", "encoder.layers.1.attention",
    "decoder_layers.0.cross_attention", ...) to float32 [B, N, T, S] weights, in the
    order the modules ran (a module called k > 1 times gives "path", "path#1", ...,
    "path#k-1"). A dict
    returned out of `jax.jit` comes back with its keys sorted as strings: index it
    by name there.
  """
  copy = model_state.merge(*model_state.split(model))
  copy.set_attributes(sow_attention=True, raise_if_not_found=False)
  order = []
  token = _call_order.set(order)
  try:
    output, state = nnx.capture(getattr(copy, method), nnx.Intermediate)(*args, **kwargs)
  finally:
    _call_order.reset(token)
  sown = {
    path[:-1]: list(variable.get_value())
    for path, variable in nnx.to_flat_state(state)
    if path[-1] == ATTENTION_WEIGHTS
  }
  path_of = {id(module): path for path, module in nnx.iter_modules(copy)}
  maps, calls = {}, {}
  for module_id in order:
    path = path_of[module_id]
    i = calls[path] = calls.get(path, -1) + 1
    name = ".".join(map(str, path))
    maps[name if i == 0 else f"{name}#{i}"] = sown[path][i]
  return output, maps
