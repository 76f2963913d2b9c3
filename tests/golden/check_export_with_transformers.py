"""Check `tfmr_jax.models.to_hf` against the reference: transformers loads each exported folder
as GPT2LMHeadModel, with no missing or unexpected tensor, and gives our logits.

COMMAND:  two environments, since torch never enters the project's (tests/golden/README.md):
            python tests/golden/check_export_with_transformers.py export /tmp/hf
            /tmp/refenv/bin/python tests/golden/check_export_with_transformers.py check /tmp/hf
EXPECTED: `check` prints each model's max abs logit difference and exits 0 when all are within
          TOLERANCE (measured: 2.9e-06 or less in float32, see the README); about 1 min on CPU.

`export` (the project environment: JAX, no torch) writes to OUT one folder per model with
`to_hf`, and beside it `<name>.npz` holding `tokens` [B, T] and our `logits` [B, T, V]:
  golden_tiny       tests/golden/gpt2_tiny imported and exported again
  random_ffn22      a GPT of odd sizes (d_ff 22, not 4 D: `n_inner` is written), dropout 0.1,
                    weights and biases N(0, 0.5), LayerNorm scales N(1, 0.5)
  random_bf16       the same sizes with parameters stored in bfloat16 (compute float32)
  gpt2_124m_random  GPT-2 small's config (50,257 tokens, 1,024 positions), weights N(0, 0.02)
`check` (the reference environment: torch + transformers, no JAX) loads each folder with
`GPT2LMHeadModel.from_pretrained(folder, dtype=torch.float32)`, eager attention, and
compares its logits on `tokens` with ours.
"""

import json
import pathlib
import sys

TOLERANCE = 1e-4  # float32 round-off; a misplaced tensor moves logits by far more


def export(out: pathlib.Path) -> None:
  import jax
  import jax.numpy as jnp
  import numpy as np
  from flax import nnx
  from safetensors.numpy import load_file

  from tfmr_jax.models import GPT2, TransformerConfig, from_hf, to_hf

  golden = pathlib.Path(__file__).resolve().parent / "gpt2_tiny"
  sizes = dict(vocab_size=29, max_len=13, num_layers=2, num_heads=2, d_model=10, d_ff=22)

  def random_gpt(config, seed, std=0.5):
    """Every weight and bias N(0, std), every LayerNorm scale N(1, std)."""
    model = nnx.eval_shape(lambda: GPT2(config, rngs=nnx.Rngs(seed)))
    rng = np.random.default_rng(seed)
    for path, variable in nnx.iter_graph(model):
      if isinstance(variable, nnx.Param):
        value = variable.get_value()
        mean = 1.0 if path[-1] == "scale" else 0.0
        variable.set_value(jnp.asarray(rng.normal(mean, std, value.shape), value.dtype))
    model.eval()
    return model

  models = {
    "golden_tiny": from_hf(
      load_file(golden / "model.safetensors"), json.loads((golden / "config.json").read_text())
    ),
    "random_ffn22": random_gpt(TransformerConfig.gpt(**sizes, dropout=0.1), seed=1),
    "random_bf16": random_gpt(TransformerConfig.gpt(**sizes, param_dtype="bfloat16"), seed=2),
    "gpt2_124m_random": random_gpt(TransformerConfig.gpt2_124m(), seed=3, std=0.02),
  }
  out.mkdir(parents=True, exist_ok=True)
  for name, model in models.items():
    c = model.config
    T = min(c.max_len, 40)
    tokens = np.random.default_rng(0).integers(0, c.vocab_size, (2, T)).astype(np.int32)
    logits = jax.jit(lambda t, m=model: m(t))(jnp.asarray(tokens))
    to_hf(model, out / name, overwrite=True)
    np.savez(out / f"{name}.npz", tokens=tokens, logits=np.asarray(logits, np.float32))
    print(f"exported {name}: {out / name}")


def check(out: pathlib.Path) -> int:
  import numpy as np
  import torch
  import transformers
  from transformers import GPT2LMHeadModel

  print(f"torch {torch.__version__}, transformers {transformers.__version__}")
  worst = 0.0
  for npz in sorted(out.glob("*.npz")):
    ours = np.load(npz)
    model, info = GPT2LMHeadModel.from_pretrained(
      out / npz.stem, dtype=torch.float32, attn_implementation="eager", output_loading_info=True
    )
    problems = {k: v for k, v in info.items() if v and k != "error_msgs"} or info.get("error_msgs")
    if problems:
      print(f"{npz.stem}: loading reported {problems}")
      return 1
    assert model.lm_head.weight.data_ptr() == model.transformer.wte.weight.data_ptr()
    model.eval()
    with torch.no_grad():
      logits = model(torch.from_numpy(ours["tokens"]).long()).logits.numpy()
    error = float(np.abs(logits - ours["logits"]).max())
    worst = max(worst, error)
    scale = float(np.abs(logits).max())
    shape = tuple(logits.shape)
    print(f"{npz.stem:18s} {shape}, max |logit| {scale:.3g}: max abs difference {error:.3g}")
  print(f"worst {worst:.3g} (tolerance {TOLERANCE:g})")
  return 0 if worst <= TOLERANCE else 1


if __name__ == "__main__":
  if len(sys.argv) != 3 or sys.argv[1] not in ("export", "check"):
    sys.exit(f"usage: {sys.argv[0]} export|check OUT_DIR")
  folder = pathlib.Path(sys.argv[2])
  if sys.argv[1] == "export":
    export(folder)
  else:
    sys.exit(check(folder))
