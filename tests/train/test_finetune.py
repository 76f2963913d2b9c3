"""Fine-tuning: configs/finetune_gpt2.py through the CLI on the tiny golden GPT-2.

Step 0 evaluates the imported model exactly (checked against a loss computed here from
`from_hf`), a few steps lower the held-out loss, a run stopped and resumed is bitwise
the uninterrupted one, and neither the resume nor evaluate and sample read the Hugging
Face weights again (they are deleted after the runs start).
"""

import json
import os
import shutil

import jax
import numpy as np
import pytest
from flax import nnx
from safetensors.numpy import load_file

from tests.conftest import GPT2_BPE_GOLDEN
from tests.train.test_resume import _state_arrays
from tfmr_jax import cli
from tfmr_jax import config as C
from tfmr_jax.models import from_hf
from tfmr_jax.nn import state as model_state
from tfmr_jax.tasks import make_task
from tfmr_jax.train import load_run, read_metrics
from tfmr_jax.train.build import build_model
from tfmr_jax.train.init_from import check_init_from, initial_params
from tfmr_jax.train.run_config import load_config

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
BLOCK, VAL_FRACTION = 32, 0.4  # 167 tokens: 100 to train on, 67 held out (2 windows)


@pytest.fixture(scope="module")
def hf_dir(tmp_path_factory, gpt2_tokenizer_files) -> str:
  """The tiny golden GPT-2 as a Hugging Face folder (as the `gpt2_hf_dir` fixture, once)."""
  folder = tmp_path_factory.mktemp("hf") / "gpt2_tiny"
  folder.mkdir()
  for name in ("config.json", "model.safetensors"):
    shutil.copy(GPT2_BPE_GOLDEN / name, folder / name)
  shutil.copy(gpt2_tokenizer_files / "encoder.json", folder / "vocab.json")
  shutil.copy(gpt2_tokenizer_files / "vocab.bpe", folder / "merges.txt")
  return str(folder)


def _argv(workdir: str, hf: str, cache: str) -> list[str]:
  """The recipe on the tiny model: its architecture, a small block, 3 steps, dropout on."""
  return [
    "train",
    f"--config={REPO}/configs/finetune_gpt2.py",
    f"--workdir={workdir}",
    f"--config.train.init_from=hf:{hf}",
    f"--config.task.corpus_path={GPT2_BPE_GOLDEN / 'text.txt'}",
    "--config.task.corpus_url=",
    f"--config.task.cache_dir={cache}",
    f"--config.task.block_size={BLOCK}",
    f"--config.task.val_fraction={VAL_FRACTION}",
    "--config.model.num_layers=2",
    "--config.model.num_heads=2",
    "--config.model.d_model=8",
    "--config.model.dropout=0.1",
    "--config.optim.learning_rate=0.01",  # the recipe's 3e-5 barely moves a random model
    "--config.train.num_steps=3",
    "--config.train.progress_bar=false",
    "--config.train.tensorboard=false",
  ]


@pytest.fixture(scope="module")
def runs(tmp_path_factory, hf_dir):
  """(uninterrupted run, run stopped at step 2 then resumed without the weights file)."""
  root = tmp_path_factory.mktemp("finetune")
  whole, stopped, cache = (str(root / name) for name in ("whole", "stopped", "cache"))
  assert cli.main(_argv(whole, hf_dir, cache)) == 0
  assert cli.main(_argv(stopped, hf_dir, cache) + ["--stop-at-step=2"]) == 0
  os.rename(os.path.join(hf_dir, "model.safetensors"), os.path.join(root, "moved.safetensors"))
  try:
    assert cli.main(_argv(stopped, hf_dir, cache)) == 0  # a resume never re-imports
  finally:
    os.rename(os.path.join(root, "moved.safetensors"), os.path.join(hf_dir, "model.safetensors"))
  return whole, stopped


def _independent_val_loss(hf_dir: str) -> float:
  """Mean next-token loss of the imported model on the held-out windows, from
  Hugging Face's own token ids of the text (reference.npz) and NumPy's log-softmax."""
  with open(os.path.join(hf_dir, "config.json")) as f:
    model = from_hf(load_file(os.path.join(hf_dir, "model.safetensors")), json.load(f))
  ids_T = np.load(GPT2_BPE_GOLDEN / "reference.npz")["text_ids"]
  val_T = ids_T[int(len(ids_T) * (1 - VAL_FRACTION)) :]
  windows_BT = np.stack([val_T[s : s + BLOCK + 1] for s in (0, BLOCK)])
  logits_BTV = np.asarray(model(windows_BT[:, :-1]), np.float64)
  logits_BTV -= logits_BTV.max(-1, keepdims=True)
  log_probs_BTV = logits_BTV - np.log(np.exp(logits_BTV).sum(-1, keepdims=True))
  targets_BT = windows_BT[:, 1:]
  return float(-np.take_along_axis(log_probs_BTV, targets_BT[..., None], -1).mean())


def test_step_0_is_the_imported_model_and_fine_tuning_lowers_the_val_loss(runs, hf_dir):
  whole, _ = runs
  val = read_metrics(whole, "val")
  assert [r["step"] for r in val] == [0, 3]
  assert val[0]["loss"] == pytest.approx(_independent_val_loss(hf_dir), rel=1e-5)
  assert val[1]["loss"] < val[0]["loss"] - 0.1
  print(f"tiny golden GPT-2, val loss {val[0]['loss']:.4f} -> {val[1]['loss']:.4f} in 3 steps")


def test_a_stopped_and_resumed_run_is_bitwise_the_uninterrupted_one(runs):
  whole, stopped = runs
  for a, b in zip(_state_arrays(whole), _state_arrays(stopped), strict=True):
    np.testing.assert_array_equal(a, b)
  assert read_metrics(stopped, "val") == read_metrics(whole, "val")


def test_evaluate_and_sample_need_no_weights_file(runs, hf_dir, tmp_path, capsys):
  whole, _ = runs
  moved = str(tmp_path / "moved.safetensors")
  os.rename(os.path.join(hf_dir, "model.safetensors"), moved)
  try:
    assert cli.main(["evaluate", f"--workdir={whole}"]) == 0
    metrics = json.loads(capsys.readouterr().out)
    assert metrics["step"] == 3
    assert metrics["loss"] == pytest.approx(read_metrics(whole, "val")[-1]["loss"], rel=1e-6)
    argv = ["sample", f"--workdir={whole}", "--prompt=Hello", "--max-new-tokens=5"]
    assert cli.main(argv + ["--temperature=0"]) == 0
    assert capsys.readouterr().out.startswith("Hello")
  finally:
    os.rename(moved, os.path.join(hf_dir, "model.safetensors"))
  recorded = load_config(whole)
  assert recorded.train.init_from == f"hf:{hf_dir}" and recorded.task.tokenizer_dir == hf_dir


def _tiny_config(init_from: str, tokenizer_dir: str, cache_dir: str, d_model: int = 8):
  return C.validate(
    {
      "task": {
        "name": "text",
        "corpus_path": str(GPT2_BPE_GOLDEN / "text.txt"),
        "corpus_url": "",
        "cache_dir": cache_dir,
        "tokenizer_dir": tokenizer_dir,
        "block_size": BLOCK,
        "val_fraction": VAL_FRACTION,
      },
      "model": {"kind": "gpt", "num_layers": 2, "num_heads": 2, "d_model": d_model},
      "train": {"init_from": init_from},
    }
  )


def _step_0_params(config):
  """What train() puts in place of the fresh init (on a shape-only model)."""
  task = make_task(**config.task)
  check_init_from(config)
  shapes = model_state.params_of(nnx.eval_shape(lambda: build_model(config, task, seed=0)))
  return initial_params(config, shapes)


def test_a_work_directory_starts_a_run_from_its_latest_checkpoint(runs, hf_dir, tmp_path):
  whole, _ = runs
  params = _step_0_params(_tiny_config(whole, hf_dir, str(tmp_path)))
  saved = load_run(whole).state.params
  for a, b in zip(jax.tree.leaves(params), jax.tree.leaves(saved), strict=True):
    np.testing.assert_array_equal(a, b)
  with pytest.raises(C.ConfigError, match=r"config.model.d_model = 16: .* is a run with model."):
    check_init_from(_tiny_config(whole, hf_dir, str(tmp_path), d_model=16))


def test_imported_weights_are_the_golden_safetensors_exactly(hf_dir, tmp_path):
  """Every parameter at step 0 against its tensor in model.safetensors (wpe cropped)."""
  params = _step_0_params(_tiny_config(f"hf:{hf_dir}", "", str(tmp_path)))
  golden = load_file(os.path.join(hf_dir, "model.safetensors"))
  golden = {k.removeprefix("transformer."): v for k, v in golden.items()}
  got = {
    jax.tree_util.keystr(path, simple=True, separator="/"): np.asarray(x)
    for path, x in jax.tree_util.tree_flatten_with_path(params)[0]
  }
  D = 8
  expected = {
    "token_embedding/embed/embedding": golden["wte.weight"],
    "position_embedding/table/embedding": golden["wpe.weight"][:BLOCK],
    "final_norm/scale": golden["ln_f.weight"],
    "final_norm/bias": golden["ln_f.bias"],
  }
  for i in range(2):
    h = lambda name, i=i: golden[f"h.{i}.{name}"]  # noqa: E731
    layer = f"layers/{i}/"
    for j, projection in enumerate(("query", "key", "value")):
      expected[layer + f"attention/{projection}/kernel"] = h("attn.c_attn.weight")[
        :, j * D : (j + 1) * D
      ]
      expected[layer + f"attention/{projection}/bias"] = h("attn.c_attn.bias")[j * D : (j + 1) * D]
    for ours, theirs in (
      ("attention/out", "attn.c_proj"),
      ("feed_forward/hidden", "mlp.c_fc"),
      ("feed_forward/out", "mlp.c_proj"),
    ):
      expected[layer + ours + "/kernel"] = h(theirs + ".weight")
      expected[layer + ours + "/bias"] = h(theirs + ".bias")
    for ours, theirs in (("attention_residual", "ln_1"), ("feed_forward_residual", "ln_2")):
      expected[layer + ours + "/layer_norm/scale"] = h(theirs + ".weight")
      expected[layer + ours + "/layer_norm/bias"] = h(theirs + ".bias")
  got = {k.removesuffix("/value"): v for k, v in got.items()}
  assert sorted(got) == sorted(expected)
  for name, value in expected.items():
    np.testing.assert_array_equal(got[name], value, err_msg=name)
