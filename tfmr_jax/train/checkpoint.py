"""Checkpoints of the whole training state with orbax: atomic, verified, the last k kept.

A checkpoint holds the TrainState: step, parameters, the dropout RNG streams and the
optimizer state. Data is a pure function of (seed, step), so these are all a run
needs to continue exactly where it stopped. JAX PRNG key arrays are stored as their
raw key data.

Written atomically: orbax writes each checkpoint into a temporary directory and
renames it when complete. A write that fails (disk full, directory unwritable) raises
CheckpointWriteError naming the path and leaves no temporary directory behind;
earlier checkpoints are untouched.

Verified on restore: each save records the SHA-256 of every array's bytes (with its
dtype and shape) in orbax's per-step metadata (`_CHECKPOINT_METADATA`, written in the
same atomic rename), and a restore recomputes them. Without a requested step,
`restore` takes the newest checkpoint that reads back and matches its checksums,
warning (DamagedCheckpointWarning) about each newer one it passes over and why; if
none is intact, or a requested step is damaged or missing, it raises
CheckpointUnavailableError. It never falls back to a fresh start.

Across processes and layouts: in a multi-process run every process calls `save` and
`restore` (orbax writes each process's shards, process 0 the metadata); a checkpoint
is restored into the layout of `template`, whatever layout wrote it, so a run saved by
2 processes with FSDP resumes in 1 process on 1 device, and the other way round. The
checksums are of whole arrays, so they hold across layouts too; a sharded array is
gathered one leaf at a time to compute them.
"""

import contextlib
import gc
import glob
import hashlib
import logging
import os
import shutil
import sys
import time
import warnings

import jax
import numpy as np
import orbax.checkpoint as ocp

from tfmr_jax.train import distributed
from tfmr_jax.train.sharding import is_key, to_host


class CheckpointWriteError(OSError):
  """A checkpoint could not be written; earlier checkpoints are untouched."""


class CheckpointUnavailableError(FileNotFoundError):
  """No intact checkpoint to restore: none at all, all damaged, or the requested step."""


class DamagedCheckpointWarning(UserWarning):
  """A newer checkpoint was damaged, so an older intact one was restored."""


class _Damaged(Exception):
  """One checkpoint does not read back, or does not match its checksums."""


def _saveable(tree):
  return jax.tree.map(lambda x: jax.random.key_data(x) if is_key(x) else x, tree)


def array_checksums(tree) -> dict[str, str]:
  """{leaf path: SHA-256 hex of the leaf's dtype, shape and bytes} of a tree of arrays."""
  checksums = {}
  for path, x in jax.tree_util.tree_flatten_with_path(tree)[0]:
    a_host = np.ascontiguousarray(to_host(x))
    digest = hashlib.sha256(f"{a_host.dtype.str}{a_host.shape}".encode())
    digest.update(a_host.tobytes())
    checksums[jax.tree_util.keystr(path)] = digest.hexdigest()
  return checksums


class Checkpointer:
  """Saves and restores TrainStates under `directory`, keeping the `keep` latest."""

  def __init__(self, directory: str, *, keep: int):
    self.directory = os.path.abspath(directory)
    # A save cut short (kill -9, a second Ctrl-C) leaves a temporary directory that no
    # restore reads; the next Checkpointer on this directory removes it.
    options = ocp.CheckpointManagerOptions(
      max_to_keep=keep,
      create=True,
      enable_async_checkpointing=False,
      cleanup_tmp_directories=True,
    )
    try:
      self._manager = ocp.CheckpointManager(
        self.directory, options=options, item_handlers=ocp.StandardCheckpointHandler()
      )
    except OSError as e:
      raise CheckpointWriteError(
        f"cannot create the checkpoint directory {self.directory}: {e}"
      ) from e

  def steps(self) -> list[int]:
    """Steps of the complete checkpoints on disk (not yet verified), oldest first."""
    return sorted(self._manager.all_steps())

  def latest_step(self) -> int | None:
    """Step of the newest complete checkpoint (not yet verified), or None."""
    return self._manager.latest_step()

  def save(self, state, *, extra: dict | None = None) -> None:
    """Write `state` as the checkpoint of step `state.step` (once per step).

    extra: a small JSON-able dict stored with it, read back by `extra(step)`.
    Raises CheckpointWriteError naming the directory if the write fails.
    """
    step = int(state.step)
    if step in self._manager.all_steps():
      return
    saveable = _saveable(state)
    metadata = {"sha256": array_checksums(saveable), "extra": extra or {}}
    try:
      self._manager.save(step, args=ocp.args.StandardSave(saveable), custom_metadata=metadata)
      self._manager.wait_until_finished()
    except BaseException as e:  # orbax and tensorstore report a failed write as several types
      for partial in glob.glob(os.path.join(self.directory, f"{step}{_TMP_SUFFIX}*")):
        shutil.rmtree(partial, ignore_errors=True)
      self._manager.reload()
      if not isinstance(e, Exception):  # a second Ctrl-C: the partial save is gone, stop
        raise
      raise CheckpointWriteError(
        f"cannot write the checkpoint of step {step} in {self.directory}: "
        f"{type(e).__name__}: {e}; the earlier checkpoints are untouched"
      ) from e

  def extra(self, step: int) -> dict:
    """The `extra` dict saved with the checkpoint of `step` ({} if none)."""
    return dict((self._manager.metadata(step).custom_metadata or {}).get("extra", {}))

  def restore(self, template, step: int | None = None):
    """The checkpoint of `step`, shaped and placed like `template`, checked against its
    checksums. Default: the newest intact one, warning about each newer damaged one.

    Raises CheckpointUnavailableError if `step` is missing or damaged, or none is intact.
    """
    steps = self.steps()
    if step is not None:
      if step not in steps:
        raise CheckpointUnavailableError(
          f"no checkpoint of step {step} in {self.directory}; it holds steps {steps}"
        )
      try:
        return self._restore_verified(template, step)
      except _Damaged as e:
        raise CheckpointUnavailableError(
          f"the checkpoint of step {step} in {self.directory} is damaged ({e}); "
          f"it holds steps {steps}"
        ) from None
    if not steps:
      raise CheckpointUnavailableError(f"no checkpoint in {self.directory}")
    damaged = []
    for s in reversed(steps):
      try:
        state = self._restore_verified(template, s)
      except _Damaged as e:
        damaged.append(f"step {s} ({os.path.join(self.directory, str(s))}): {e}")
        continue
      for reason in damaged:
        warnings.warn(
          f"checkpoint of {reason}; restored step {s} instead",
          DamagedCheckpointWarning,
          stacklevel=2,
        )
      return state
    raise CheckpointUnavailableError(
      f"no intact checkpoint in {self.directory}: " + "; ".join(damaged)
    )

  def set_aside_after(self, step: int) -> list[str]:
    """Rename the checkpoints newer than `step` to `<step>.damaged` (replacing any older
    copy), so the run can write those steps again. Returns their new paths. In a
    multi-process run process 0 renames, and every process waits for it."""
    moved = []
    for s in self.steps():
      if s > step:
        target = os.path.join(self.directory, f"{s}.damaged")
        if distributed.is_primary():
          shutil.rmtree(target, ignore_errors=True)
          os.replace(os.path.join(self.directory, str(s)), target)
        moved.append(target)
    distributed.barrier(f"set_aside_after_{step}")
    self._manager.reload()
    return moved

  def _restore_verified(self, template, step: int):
    saveable = _saveable(template)
    abstract = jax.tree.map(
      lambda x: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=x.sharding), saveable
    )
    step_dir = os.path.join(self.directory, str(step))
    metadata, restored = self._read(step, abstract)
    restored = jax.tree.unflatten(jax.tree.structure(saveable), jax.tree.leaves(restored))
    expected = metadata.get("sha256")
    if expected is None:
      if not os.path.exists(os.path.join(step_dir, "_CHECKPOINT_METADATA")):
        raise _Damaged("its _CHECKPOINT_METADATA, which holds the checksums, is missing")
      warnings.warn(
        f"checkpoint {step_dir} was written without checksums (by an older tfmr_jax): "
        "restored unverified",
        UserWarning,
        stacklevel=3,
      )
    else:
      got = array_checksums(restored)
      wrong = sorted(k for k in expected.keys() | got.keys() if expected.get(k) != got.get(k))
      if wrong:
        raise _Damaged(f"{len(wrong)} arrays do not match their SHA-256 checksums, e.g. {wrong[0]}")
    return jax.tree.map(
      lambda t, r: jax.random.wrap_key_data(r, impl=jax.random.key_impl(t)) if is_key(t) else r,
      template,
      restored,
    )

  def _read(self, step: int, abstract):
    """(orbax's custom metadata, restored tree) of `step`, or _Damaged saying why."""
    with _quiet_aborted_reads():
      try:
        metadata = self._manager.metadata(step).custom_metadata or {}
        return metadata, self._manager.restore(step, args=ocp.args.StandardRestore(abstract))
      except Exception as e:  # orbax and tensorstore report a damaged file as several types
        why = f"unreadable: {type(e).__name__}: {_first_line(e)}"
      # The error and its frames are gone: drop the aborted reads while quiet.
      time.sleep(0.05)  # the other reads of the failed restore finish (they fail at once)
      gc.collect()
    raise _Damaged(why)

  def close(self) -> None:
    self._manager.close()


_TMP_SUFFIX = ".orbax-checkpoint-tmp"


@contextlib.contextmanager
def _quiet_aborted_reads():
  """Silence the echoes of a failed orbax restore, so the warning is all a user sees.

  When one array fails to read, orbax's event loop closes while tensorstore still
  finishes the other reads: their callbacks hit the closed loop ("Event loop is
  closed", reported as unraisable) and their tasks are logged as "never retrieved".
  Both are noise about a failure already raised; anything else passes through.
  """
  previous_hook = sys.unraisablehook
  asyncio_log = logging.getLogger("asyncio")
  was_disabled = asyncio_log.disabled

  def hook(unraisable):
    code = getattr(unraisable.object, "cr_code", None)  # an aborted orbax read, closed
    echo = (code is not None and "orbax" in code.co_filename) or (
      isinstance(unraisable.exc_value, RuntimeError)
      and "loop is closed" in str(unraisable.exc_value)
    )
    if not echo:
      previous_hook(unraisable)

  sys.unraisablehook = hook
  asyncio_log.disabled = True
  try:
    yield
  finally:
    asyncio_log.disabled = was_disabled
    sys.unraisablehook = previous_hook


def _first_line(error: Exception) -> str:
  text = str(error).strip()
  return text.splitlines()[0][:300] if text else "(no message)"
