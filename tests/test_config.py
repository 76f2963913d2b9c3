"""The config schema: defaults, resolution of partial configs, every rule's message, save/load."""

import glob
import importlib.util
import json
import os

import ml_collections
import pytest

from tfmr_jax import config as C
from tfmr_jax.train.run_config import load_config, save_config

TASKS = ("reverse", "copy", "sort", "addition", "char_lm", "text")
REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _with(name="reverse", *, task=None, **sections):
  """A partial config: {"task": {"name": name, **task}, **sections}."""
  return {"task": {"name": name, **(task or {})}, **sections}


@pytest.mark.parametrize("task", TASKS)
def test_defaults_are_complete_and_valid(task):
  config = C.defaults(task)
  if task == "text":  # it needs a tokenizer: tokenizer_dir, or init_from's folder
    with pytest.raises(C.ConfigError, match=r"config.task.tokenizer_dir = '': the text task"):
      C.validate(config)
    config.task.tokenizer_dir = "gpt2"
  resolved = C.validate(config)
  assert resolved.to_dict() == config.to_dict()
  assert set(resolved.keys()) == set(C.SECTIONS)
  assert resolved.model.kind == {"reverse": "encoder", "copy": "encoder_decoder"}.get(task, "gpt")


def test_partial_config_is_filled_from_the_task_defaults():
  resolved = C.validate(_with("sort", model={"num_layers": 3}, train={"batch_size": 16}))
  assert resolved.model.num_layers == 3
  assert resolved.train.batch_size == 16
  assert resolved.task.length == 6 and resolved.task.num_symbols == 3
  assert (resolved.model.norm, resolved.model.positions, resolved.model.activation) == (
    "pre",
    "learned",
    "gelu",
  )


LLAMA_CHOICES = dict(
  norm_kind="rmsnorm",
  positions="rope",
  rope_base=500,
  activation="swiglu",
  use_bias=False,
  tie_output=False,
  num_kv_heads=2,
  qk_norm=True,
)
WINDOW_CHOICES = dict(window=4, window_pattern="local,global", attention_dropout=0.1)


def test_every_architecture_choice_is_one_field_away():
  model_config = C.model_config
  resolved = C.validate(_with("sort", model={**LLAMA_CHOICES, **WINDOW_CHOICES}))
  got = model_config(resolved.model, vocab_size=7, max_len=12)
  for field, value in {**LLAMA_CHOICES, **WINDOW_CHOICES}.items():
    assert getattr(got, field) == value, field
  assert got.d_ff == 176 and got.norm == "pre"  # 2/3 of 4 * 64, the gpt kind's pre-norm
  # The defaults build what they built before these fields existed.
  gpt = model_config(C.validate(_with("sort")).model, vocab_size=7, max_len=12)
  assert (gpt.norm_kind, gpt.use_bias, gpt.tie_output, gpt.qk_norm) == (
    "layernorm",
    True,
    True,
    False,
  )
  assert (gpt.window, gpt.window_pattern, gpt.attention_dropout) == (None, "local", 0.0)
  s2s = model_config(C.validate(_with("copy")).model, vocab_size=7, max_len=12)
  assert s2s.tie_output is False and s2s.positions == "sinusoidal"


def test_ints_widen_to_float_but_bools_are_not_numbers():
  resolved = C.validate(_with(optim={"learning_rate": 1}))
  assert resolved.optim.learning_rate == 1.0 and isinstance(resolved.optim.learning_rate, float)
  with pytest.raises(
    C.ConfigError, match=r"config\.train\.num_steps = True: must be a positive int"
  ):
    C.validate(_with(train={"num_steps": True}))


def test_configdict_with_placeholders_validates():
  config = C.defaults("reverse")
  config.model.num_kv_heads = 2
  config.model.attention_implementation = "xla"
  resolved = C.validate(config)
  assert resolved.model.num_kv_heads == 2
  assert resolved.model.attention_implementation == "xla"


# (partial config, expected message): each names the field, the value and the rule.
BAD_CONFIGS = [
  (_with("revers"), "config.task.name = 'revers': unknown task (did you mean 'reverse'?)"),
  (
    _with(model={"num_head": 4}),
    "config.model.num_head = 4: unknown key (did you mean 'num_heads'?)",
  ),
  (_with(modle={}), "config.modle = {}: unknown key (did you mean 'model'?)"),
  (
    _with(model={"d_model": 32, "num_heads": 3}),
    "config.model.num_heads = 3: must divide d_model=32",
  ),
  (
    _with(model={"num_heads": 4, "num_kv_heads": 3}),
    "config.model.num_kv_heads = 3: must divide num_heads=4",
  ),
  (_with(train={"batch_size": 0}), "config.train.batch_size = 0: must be a positive int"),
  (_with(model={"d_model": -8}), "config.model.d_model = -8: must be a positive int"),
  (_with(optim={"name": "sgdd"}), "config.optim.name = 'sgdd': unknown optimizer"),
  (
    _with(optim={"schedule": "cosine"}),
    "config.optim.schedule = 'cosine': unknown schedule (did you mean 'warmup_cosine'?)",
  ),
  (
    _with(optim={"learning_rate": 0.0}),
    "config.optim.learning_rate = 0.0: must be a finite number > 0",
  ),
  (
    _with(optim={"label_smoothing": 1.0}),
    "config.optim.label_smoothing = 1.0: must be a finite number in [0, 1)",
  ),
  (_with(model={"dropout": "0.1"}), "config.model.dropout = '0.1': must be a finite number"),
  (_with(model={"dropout": 1}), "config.model.dropout = 1.0: must be a rate in [0, 1)"),
  (_with(model={"norm": "pree"}), "config.model.norm = 'pree': must be one of ('post', 'pre')"),
  (
    _with(model={"kind": "gpt"}),
    "config.model.kind = 'gpt': task 'reverse' has 'tagging' data, which needs model.kind = "
    "'encoder'",
  ),
  (
    _with("sort", model={"positions": "rope", "d_model": 30, "num_heads": 2}),
    "config.model.positions = 'rope': rotary embeddings rotate channel pairs, so they need an "
    "even head dim; d_model / num_heads = 30 / 2 = 15",
  ),
  (
    _with("sort", model={"activation": "swish"}),
    "config.model.activation = 'swish': must be one of ('relu', 'gelu', 'swiglu', 'geglu')",
  ),
  (
    _with("sort", model={"norm_kind": "rms"}),
    "config.model.norm_kind = 'rms': must be one of ('layernorm', 'rmsnorm')",
  ),
  (_with(model={"rope_base": 0.5}), "config.model.rope_base = 0.5: must be a number > 1"),
  (
    _with(model={"tie_output": True}),
    "config.model.tie_output = True: model.kind 'encoder' has a per-position head of its own",
  ),
  (
    _with(optim={"schedule": "noam", "warmup_steps": 0}),
    "config.optim.warmup_steps = 0: the 'noam' schedule needs warmup_steps >= 1",
  ),
  (
    _with(optim={"warmup_steps": 100}, train={"num_steps": 100}),
    "config.optim.warmup_steps = 100: must be less than config.train.num_steps = 100",
  ),
  (
    _with("sort", task={"test_size": 400}),
    "config.task.test_size = 400: must be at most 364 for 729 possible sequences",
  ),
  (_with(task={"num_symbols": 1}), "config.task.num_symbols = 1: must be an int >= 2"),
  (
    _with("char_lm", task={"corpus_sha256": ""}),
    "config.task.corpus_sha256 = '': required with config.task.corpus_url",
  ),
  (
    _with(model={"attention_implementation": "flash"}),
    "config.model.attention_implementation = 'flash': must be None or one of "
    "('reference', 'tiled', 'xla', 'cudnn')",
  ),
  ({"model": {}}, "config.task.name is required"),
]


@pytest.mark.parametrize("config,message", BAD_CONFIGS, ids=[m[:40] for _, m in BAD_CONFIGS])
def test_bad_config_gives_one_clear_message(config, message):
  with pytest.raises(C.ConfigError) as error:
    C.validate(config)
  assert message in str(error.value)


def test_check_devices_names_the_batch_size_and_device_count():
  config = C.validate(_with(train={"batch_size": 12, "eval_batch_size": 16}))
  C.check_devices(config, 4)
  with pytest.raises(
    C.ConfigError,
    match=r"config\.train\.batch_size = 12: must be a multiple "
    r"of the 8 devices",
  ):
    C.check_devices(config, 8)


def test_defaults_are_locked_so_a_misspelt_field_fails_where_it_is_set():
  config = C.defaults("reverse")
  config.model.num_heads = 2  # known fields stay writable
  with pytest.raises(AttributeError, match='Did you mean "num_heads" instead of "num_head"'):
    config.model.num_head = 4
  with pytest.raises(AttributeError, match='Did you mean "optim" instead of "optm"'):
    config.optm.learning_rate = 1.0


def test_config_saved_as_json_and_reloaded(tmp_path):
  config = C.defaults("copy")
  config.model.num_kv_heads = 2
  config.optim.learning_rate = 2e-3
  path = save_config(C.validate(config), str(tmp_path))
  with open(path) as f:
    saved = json.load(f)
  assert saved["model"]["num_kv_heads"] == 2 and saved["model"]["d_ff"] is None
  reloaded = load_config(str(tmp_path))
  assert isinstance(reloaded, ml_collections.ConfigDict)
  assert reloaded.to_dict() == C.validate(config).to_dict()


def _load_recipe(path):
  spec = importlib.util.spec_from_file_location(os.path.basename(path)[:-3], path)
  module = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(module)
  return module


RECIPES = sorted(glob.glob(os.path.join(REPO, "configs", "*.py")))


@pytest.mark.parametrize("path", RECIPES, ids=[os.path.basename(p) for p in RECIPES])
def test_every_recipe_validates_and_documents_command_and_result(path):
  module = _load_recipe(path)
  doc = module.__doc__
  assert "COMMAND:" in doc and "EXPECTED:" in doc and "tfmr-jax train --config configs/" in doc
  C.validate(module.get_config())


def test_recipes_cover_every_task():
  tasks = {C.validate(_load_recipe(p).get_config()).task.name for p in RECIPES}
  assert tasks == set(TASKS)
