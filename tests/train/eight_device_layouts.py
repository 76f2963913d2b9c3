"""Run in a process with 8 forced CPU devices: train the quick reverse recipe under each
mesh layout, and decode with sharded parameters. Prints one JSON object.

    XLA_FLAGS=--xla_force_host_platform_device_count=8 \
      python -m tests.train.eight_device_layouts DIR ["fsdp 8,data 4 x model 2"]
"""

import json
import sys

import jax
import numpy as np
from flax import nnx

from experiments import sharding_memory
from tests.train.quick import quick_config
from tests.train.test_distributed import SECTIONS
from tfmr_jax import decode
from tfmr_jax.models import GPT2, TransformerConfig
from tfmr_jax.nn import state as model_state
from tfmr_jax.train import load_run, read_metrics, train
from tfmr_jax.train.mesh import make_mesh
from tfmr_jax.train.sharding import bytes_per_device, place_state, sharding_context

LAYOUTS = {
  "data 8": {"data": 8, "fsdp": 1, "model": 1},
  "fsdp 8": {"data": 1, "fsdp": 8, "model": 1},
  "data 4 x model 2": {"data": 4, "fsdp": 1, "model": 2},
  "fsdp 4 x model 2": {"data": 1, "fsdp": 4, "model": 2},
}


def train_layouts(root: str, names) -> dict:
  """{layout: {"losses", "state_bytes_max", "state_bytes_replicated"}} of LAYOUTS `names`."""
  out = {}
  for name in names:
    mesh_fields = LAYOUTS[name]
    workdir = f"{root}/{name.replace(' ', '_')}"
    train(quick_config("reverse", **SECTIONS, mesh=mesh_fields), workdir)
    run = load_run(workdir)
    mesh = make_mesh(run.config.mesh)
    trained = (run.state.params, run.state.opt_state)
    placed = place_state(trained, mesh)
    out[name] = {
      "losses": [r["loss"] for r in read_metrics(workdir, "train")],
      "state_bytes_max": max(bytes_per_device(placed).values()),
      "state_bytes_replicated": sum(np.asarray(x).nbytes for x in jax.tree.leaves(trained)),
    }
  return out


def sharded_decoding() -> dict:
  """Greedy and sampled continuations of a random GPT, sharded fsdp 4 x model 2, and
  the same on one device."""
  config = TransformerConfig.gpt(
    vocab_size=48, max_len=32, num_layers=2, d_model=32, num_heads=4, d_ff=64
  )
  model = GPT2(config, rngs=nnx.Rngs(0))
  prompt_BT = np.arange(16, dtype=np.int32).reshape(2, 8) % 48
  kwargs = {"max_new_tokens": 8, "temperature": 1.0, "rng": jax.random.key(1)}
  one = np.asarray(decode.generate(model, prompt_BT, **kwargs))
  mesh = make_mesh({"data": 1, "fsdp": 4, "model": 2})
  graphdef, params, rest = model_state.split(model)
  with sharding_context(mesh):
    sharded = model_state.merge(graphdef, place_state(params, mesh), rest)
    many = np.asarray(decode.generate(sharded, prompt_BT, **kwargs))
  kernel = sharded.layers[0].feed_forward.hidden.kernel.get_value()
  return {"one": one.tolist(), "sharded": many.tolist(), "kernel_sharding": str(kernel.sharding)}


def memory_table(root: str) -> dict:
  """experiments/sharding_memory.py on a tiny GPT: the state shares of every layout, and
  one compiled step's memory analysis."""
  result = sharding_memory.main(["--tiny", "--no-compile", "--out", root])
  compiled = sharding_memory.measure(
    sharding_memory.tiny_config(),
    sharding_memory.LAYOUTS["fsdp 4 x model 2"],
    batch=8,
    compile_step=True,
  )
  return {"rows": result["rows"], "compiled": compiled}


if __name__ == "__main__":
  names = sys.argv[2].split(",") if len(sys.argv) > 2 else list(LAYOUTS)
  result = {"devices": jax.device_count(), "layouts": train_layouts(sys.argv[1], names)}
  result["decoding"] = sharded_decoding()
  result["memory"] = memory_table(f"{sys.argv[1]}/memory")
  print(json.dumps(result))
