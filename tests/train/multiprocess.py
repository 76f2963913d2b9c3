"""Start a training run as several local processes, each with its own forced CPU devices.

Each process is `python -m tfmr_jax train` with the same recipe and its own
`distributed.process_id`, exactly as a user starts one per host.
"""

import os
import socket
import subprocess
import sys

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

RECIPE = """
import sys
sys.path.insert(0, {repo!r})
from tests.train.quick import quick_config


def get_config():
  return quick_config("reverse", **{sections!r})
"""


def write_recipe(path, **sections) -> str:
  """A recipe file for the quick reverse config with `sections` on top; returns its path."""
  path = str(path)
  with open(path, "w") as f:
    f.write(RECIPE.format(repo=REPO, sections=sections))
  return path


def free_port() -> int:
  with socket.socket() as s:
    s.bind(("127.0.0.1", 0))
    return s.getsockname()[1]


def device_env(num_devices: int) -> dict:
  return {
    **os.environ,
    "XLA_FLAGS": f"--xla_force_host_platform_device_count={num_devices}",
    "JAX_PLATFORMS": "cpu",
    "PYTHONPATH": REPO,
  }


def start(recipe: str, workdir: str, *, processes: int, devices: int, args=()) -> list:
  """`processes` Popen objects, one per process, each with `devices` CPU devices."""
  port = free_port()
  procs = []
  for i in range(processes):
    argv = [
      sys.executable,
      "-m",
      "tfmr_jax",
      "train",
      "--config",
      recipe,
      "--workdir",
      workdir,
      f"--config.distributed.coordinator_address=127.0.0.1:{port}",
      f"--config.distributed.num_processes={processes}",
      f"--config.distributed.process_id={i}",
      *args,
    ]
    procs.append(
      subprocess.Popen(
        argv,
        env=device_env(devices),
        cwd=REPO,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
      )
    )
  return procs


def run(recipe: str, workdir: str, *, processes: int, devices: int, args=(), timeout=300):
  """Run to the end; [(returncode, stdout, stderr)] per process."""
  procs = start(recipe, workdir, processes=processes, devices=devices, args=args)
  results = []
  for p in procs:
    try:
      out, err = p.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
      for q in procs:
        q.kill()
      raise
    results.append((p.returncode, out, err))
  return results
