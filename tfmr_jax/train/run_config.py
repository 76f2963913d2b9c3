"""A run's config on disk: `<workdir>/config.json`, the resolved config of that run.

Written when a run starts, read back to resume it, evaluate it or sample from it.
The file holds every field, defaults included, so a later change of a default does
not change what an old run means.
"""

import json
import os

import ml_collections

from tfmr_jax import config as config_lib

CONFIG_FILE = "config.json"


def save_config(config, workdir: str) -> str:
  """Write the resolved config to `<workdir>/config.json` atomically; return the path."""
  os.makedirs(workdir, exist_ok=True)
  path = os.path.join(workdir, CONFIG_FILE)
  with open(path + ".tmp", "w") as f:
    json.dump(config.to_dict(), f, indent=2, sort_keys=True)
    f.write("\n")
  os.replace(path + ".tmp", path)
  return path


def has_config(workdir: str) -> bool:
  """Whether `workdir` holds a run's config.json."""
  return os.path.exists(os.path.join(workdir, CONFIG_FILE))


def load_config(workdir: str) -> ml_collections.ConfigDict:
  """The validated config saved in `<workdir>/config.json`."""
  path = os.path.join(workdir, CONFIG_FILE)
  if not os.path.exists(path):
    raise FileNotFoundError(f"no config.json in workdir {workdir!r}: is it a training run?")
  with open(path) as f:
    return config_lib.validate(json.load(f))
