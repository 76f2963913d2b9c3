"""Per-device memory of GPT-2 124M training under each mesh layout on 8 devices.

COMMAND:  python experiments/sharding_memory.py            # forces 8 CPU devices itself
          python experiments/sharding_memory.py --no-compile   # state bytes only, seconds
EXPECTED: writes experiments/results/sharding_memory/memory.{json,md}; compiling the five
          training steps took about 4 minutes on 2 CPU cores. Nothing is allocated: the
          model and its AdamW state are abstract (`jax.eval_shape`).

For each layout of the mesh (data, fsdp, model) over 8 devices:
  state     bytes of parameters + AdamW moments a device holds: each array's shard shape
            under the run's shardings (`tfmr_jax.train.sharding.state_shardings`, the
            logical axis rules of `tfmr_jax.train.mesh`)
  compiled  XLA's memory analysis of the compiled training step (the same step and
            shardings as `tfmr-jax train`): its arguments (state + batch), and the
            temporaries (activations, gathered weights, gradients) on one device
The batch is 8 rows of 1024 tokens (global), float32, no accumulation.
"""

import argparse
import json
import os
import sys

if __name__ == "__main__" and "--xla_force_host_platform_device_count" not in os.environ.get(
  "XLA_FLAGS", ""
):
  os.environ["XLA_FLAGS"] = (
    os.environ.get("XLA_FLAGS", "") + " --xla_force_host_platform_device_count=8"
  ).strip()
  os.environ.setdefault("JAX_PLATFORMS", "cpu")

import jax
import numpy as np
import optax
from flax import nnx

from tfmr_jax.models import GPT2, TransformerConfig
from tfmr_jax.nn import state as model_state
from tfmr_jax.train.mesh import make_mesh
from tfmr_jax.train.sharding import batch_sharding, replicated, sharding_context, state_shardings
from tfmr_jax.train.step import init_state, make_train_step

LAYOUTS = {
  "replicated (data 8)": {"data": 8, "fsdp": 1, "model": 1},
  "fsdp 8": {"data": 1, "fsdp": 8, "model": 1},
  "data 4 x model 2": {"data": 4, "fsdp": 1, "model": 2},
  "data 2 x model 4": {"data": 2, "fsdp": 1, "model": 4},
  "fsdp 4 x model 2": {"data": 1, "fsdp": 4, "model": 2},
}
OUT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "results", "sharding_memory")


def tiny_config() -> TransformerConfig:
  """The 2-layer GPT of --tiny (smoke tests)."""
  return TransformerConfig.gpt(vocab_size=97, max_len=16, num_layers=2, d_model=32, num_heads=4)


def abstract_run(config: TransformerConfig):
  """(train graphdef, optimizer, abstract TrainState) of a GPT and AdamW; allocates nothing."""
  tx = optax.adamw(3e-4, weight_decay=0.1)
  model = nnx.eval_shape(lambda: GPT2(config, rngs=nnx.Rngs(0)))
  train_graphdef, _ = model_state.mode_graphdefs(model)
  state = jax.eval_shape(lambda: init_state(GPT2(config, rngs=nnx.Rngs(0)), tx)[2])
  return train_graphdef, tx, state


def shard_bytes(abstract, shardings) -> int:
  """Bytes of the shards one device holds (the largest, where shards differ)."""
  total = 0
  for leaf, sharding in zip(jax.tree.leaves(abstract), jax.tree.leaves(shardings), strict=True):
    shard = sharding.shard_shape(leaf.shape)
    total += int(np.prod(shard, dtype=np.int64)) * np.dtype(leaf.dtype).itemsize
  return total


def measure(config: TransformerConfig, layout: dict, *, batch: int, compile_step: bool) -> dict:
  """The state and compiled-step bytes per device of `config` trained under `layout`."""
  mesh = make_mesh(layout, config)
  graphdef, tx, state = abstract_run(config)
  shardings = state_shardings(state, mesh)
  row = {
    "layout": layout,
    "state_bytes": shard_bytes(
      (state.params, state.opt_state), (shardings.params, shardings.opt_state)
    ),
  }
  if compile_step:
    step = make_train_step(
      graphdef, tx, data_format="lm", out_shardings=(shardings, replicated(mesh))
    )
    tokens = jax.ShapeDtypeStruct((batch, config.max_len), np.int32, sharding=batch_sharding(mesh))
    weights = jax.ShapeDtypeStruct(
      (batch, config.max_len), np.float32, sharding=batch_sharding(mesh)
    )
    args = jax.tree.map(
      lambda s, sh: jax.ShapeDtypeStruct(s.shape, s.dtype, sharding=sh), state, shardings
    )
    with sharding_context(mesh):
      compiled = step.lower(
        args, {"inputs": tokens, "targets": tokens, "weights": weights}
      ).compile()
    memory = compiled.memory_analysis()
    row["argument_bytes"] = int(memory.argument_size_in_bytes)
    row["temp_bytes"] = int(memory.temp_size_in_bytes)
  return row


def main(argv=None) -> dict:
  parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
  parser.add_argument("--no-compile", action="store_true", help="state bytes only")
  parser.add_argument("--batch", type=int, default=8, help="global batch rows")
  parser.add_argument("--out", default=OUT)
  parser.add_argument("--tiny", action="store_true", help="a 2-layer model (smoke tests)")
  args = parser.parse_args(argv)
  config = tiny_config() if args.tiny else TransformerConfig.gpt2_124m()
  rows = {}
  for name, layout in LAYOUTS.items():
    rows[name] = measure(config, layout, batch=args.batch, compile_step=not args.no_compile)
    print(name, rows[name], flush=True)
  result = {
    "devices": jax.device_count(),
    "model": "tiny" if args.tiny else "gpt2_124m",
    "rows": rows,
  }
  os.makedirs(args.out, exist_ok=True)
  with open(os.path.join(args.out, "memory.json"), "w") as f:
    json.dump(result, f, indent=2)
  with open(os.path.join(args.out, "memory.md"), "w") as f:
    f.write(markdown(result))
  return result


def markdown(result: dict) -> str:
  """The README table: one row per layout, MiB on one device."""
  mib = 1024**2
  base = result["rows"]["replicated (data 8)"]["state_bytes"]
  lines = [
    "| layout (8 devices) | params + AdamW per device | share of replicated "
    "| step temporaries | state + temporaries |",
    "|---|---|---|---|---|",
  ]
  for name, row in result["rows"].items():
    state, temp = row["state_bytes"], row.get("temp_bytes")
    compiled = (
      ["-", "-"] if temp is None else [f"{temp / mib:,.0f} MiB", f"{(state + temp) / mib:,.0f} MiB"]
    )
    lines.append(
      f"| {name} | {state / mib:,.0f} MiB | {state / base:.3f} | " + " | ".join(compiled) + " |"
    )
  return "\n".join(lines) + "\n"


if __name__ == "__main__":
  main(sys.argv[1:])
