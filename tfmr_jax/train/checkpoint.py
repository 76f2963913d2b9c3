"""Checkpoints of the whole training state with orbax: written atomically, the last k kept.

A checkpoint holds the TrainState: step, parameters, the dropout RNG streams and the
optimizer state. Data is a pure function of (seed, step), so these are all a run
needs to continue exactly where it stopped. Orbax writes each checkpoint into a
temporary directory and renames it when complete; `latest_step` only ever sees
complete ones. JAX PRNG key arrays are stored as their raw key data.
"""

import os

import jax
import orbax.checkpoint as ocp


def _is_key(x) -> bool:
  return hasattr(x, "dtype") and jax.dtypes.issubdtype(x.dtype, jax.dtypes.prng_key)


def _saveable(tree):
  return jax.tree.map(lambda x: jax.random.key_data(x) if _is_key(x) else x, tree)


class Checkpointer:
  """Saves and restores TrainStates under `directory`, keeping the `keep` latest."""

  def __init__(self, directory: str, *, keep: int):
    options = ocp.CheckpointManagerOptions(
      max_to_keep=keep, create=True, enable_async_checkpointing=False
    )
    self._manager = ocp.CheckpointManager(os.path.abspath(directory), options=options)

  def latest_step(self) -> int | None:
    """Step of the newest complete checkpoint, or None."""
    return self._manager.latest_step()

  def save(self, state) -> None:
    """Write `state` as the checkpoint of step `state.step` (once per step)."""
    step = int(state.step)
    if step in self._manager.all_steps():
      return
    self._manager.save(step, args=ocp.args.StandardSave(_saveable(state)))
    self._manager.wait_until_finished()

  def restore(self, template, step: int | None = None):
    """The checkpoint of `step` (default: the latest), shaped and placed like `template`."""
    step = self.latest_step() if step is None else step
    saveable = _saveable(template)
    abstract = jax.tree.map(
      lambda x: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=x.sharding), saveable
    )
    restored = self._manager.restore(step, args=ocp.args.StandardRestore(abstract))
    restored = jax.tree.unflatten(jax.tree.structure(saveable), jax.tree.leaves(restored))
    return jax.tree.map(
      lambda t, r: jax.random.wrap_key_data(r, impl=jax.random.key_impl(t)) if _is_key(t) else r,
      template,
      restored,
    )

  def close(self) -> None:
    self._manager.close()
