"""The full recipes in configs/ reach their published targets (slow: minutes each).

python -m pytest -m slow tests/train/test_recipes.py
"""

import importlib.util
import os

import pytest

from tfmr_jax.train import read_metrics, train

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
CORPUS = os.path.join(REPO, "..", "shared", "data", "tinyshakespeare.txt")


def _recipe(name: str, preset: str | None = None):
  path = os.path.join(REPO, "configs", f"{name}.py")
  spec = importlib.util.spec_from_file_location(f"recipe_{name}", path)
  module = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(module)
  config = module.get_config() if preset is None else module.get_config(preset)
  config.train.update(progress_bar=False, tensorboard=False)
  return config


@pytest.mark.slow
def test_reverse_recipe_is_perfect_by_step_1500(tmp_path):
  final = train(_recipe("reverse"), str(tmp_path))
  assert final["step"] == 1500 and final["token_accuracy"] == 1.0 and final["exact_match"] == 1.0
  assert len(read_metrics(str(tmp_path), "test")) == 15


@pytest.mark.slow
@pytest.mark.parametrize("name,target", [("copy", 0.995), ("sort", 1.0), ("addition", 1.0)])
def test_decoding_recipes_reach_their_target(name, target, tmp_path):
  assert train(_recipe(name), str(tmp_path))["greedy_exact_match"] >= target


@pytest.mark.slow
@pytest.mark.skipif(not os.path.exists(CORPUS), reason="tiny shakespeare is not in ../shared/data")
def test_char_lm_recipe_beats_nanogpt_on_cpu(tmp_path):
  config = _recipe("char_lm")
  config.task.corpus_path = CORPUS
  assert train(config, str(tmp_path))["loss"] <= 1.85
