"""Joining a multi-process run: `jax.distributed.initialize` from the config.

One process per host (or per accelerator) runs the same command with its own
`distributed.process_id`; after `join`, `jax.devices()` lists the devices of every
process and one mesh spans them all. Without a `distributed` section (or with
`auto = False` and no coordinator) nothing happens: a single process, as always.

A process that dies or stops answering for `heartbeat_timeout_s` makes JAX's
coordination service stop every other process with an error naming the lost one
("The following tasks are unhealthy (stopped sending heartbeats): 1"), exit status
non-zero, so no run hangs waiting for a peer that is gone.

On CPU the collectives between processes go through gloo.
"""

import jax
import numpy as np
from jax.experimental import multihost_utils

from tfmr_jax import config as config_lib


def join(config) -> bool:
  """Start (or join) the multi-process run `config.distributed` asks for.

  Call it before anything touches a JAX backend (`tfmr_jax.config.validate` may: it
  checks the backend for cuDNN), as `jax.distributed.initialize` requires. Returns
  whether this is a multi-process run. Idempotent: a second call does nothing.

  Raises ConfigError naming the field for a malformed section.
  """
  d = config_lib.validate_distributed(config)
  if not d["auto"] and not d["coordinator_address"]:
    return False
  if jax.distributed.is_initialized():
    return True
  jax.config.update("jax_cpu_collectives_implementation", "gloo")
  explicit = {}
  if d["coordinator_address"]:
    explicit = {
      "coordinator_address": d["coordinator_address"],
      "num_processes": d["num_processes"],
      "process_id": d["process_id"],
    }
  jax.distributed.initialize(
    **explicit,
    initialization_timeout=d["initialization_timeout_s"],
    heartbeat_timeout_seconds=d["heartbeat_timeout_s"],
  )
  return True


def is_primary() -> bool:
  """Whether this process writes the run's files (config, metrics, logs): process 0."""
  return jax.process_index() == 0


def barrier(name: str) -> None:
  """Wait until every process reaches the barrier `name` (a no-op with one process)."""
  if jax.process_count() > 1:
    multihost_utils.sync_global_devices(name)


def any_process(flag: bool) -> bool:
  """Whether `flag` holds on any process (every process must call this at the same point):
  a stop request (SIGTERM to one process, say) stops them all at the same step, so none
  waits on a peer that stopped."""
  if jax.process_count() == 1:
    return flag
  return bool(np.any(multihost_utils.process_allgather(np.asarray(flag))))
