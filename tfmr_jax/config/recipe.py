"""Loading a recipe file (`configs/<task>.py[:preset]`), with one clear error per failure.

    config = load_recipe("configs/char_lm.py:baby")   # get_config("baby") of that file

A recipe is a Python file whose `get_config(*args)` returns a ConfigDict; the text
after the first ':' is its one argument (a preset). Whatever goes wrong (no such file,
a syntax error, an exception in the file or in get_config, a wrong return type) raises
`RecipeError` on one line naming the file, the cause and, for a syntax error, the line.
"""

import importlib.util
import os

import ml_collections


class RecipeError(ValueError):
  """A recipe file could not be loaded; the message names the file and the cause."""


def _one_line(error: BaseException) -> str:
  return f"{type(error).__name__}: {' '.join(str(error).split())}"


def load_recipe(spec: str) -> ml_collections.ConfigDict:
  """The ConfigDict of the recipe `spec` = "FILE" or "FILE:ARG" (see the module docstring)."""
  path, colon, arg = spec.partition(":")
  args = (arg,) if colon else ()
  call = f"get_config({arg!r})" if colon else "get_config()"
  if not path:
    raise RecipeError(f"config file {spec!r}: no file name before ':'")
  if not os.path.exists(path):
    raise RecipeError(f"config file {path!r} does not exist")
  if not os.path.isfile(path):
    raise RecipeError(f"config file {path!r} is not a regular file (a recipe is a .py file)")
  loader_spec = importlib.util.spec_from_file_location("tfmr_jax_recipe", path)
  if loader_spec is None:
    raise RecipeError(f"config file {path!r}: not a Python file (a recipe is a .py file)")
  module = importlib.util.module_from_spec(loader_spec)
  try:
    loader_spec.loader.exec_module(module)
  except SyntaxError as e:
    raise RecipeError(f"config file {path!r} line {e.lineno}: syntax error: {e.msg}") from None
  except Exception as e:  # the file's own code failed: say what, not where in our loader
    raise RecipeError(f"config file {path!r} failed to load: {_one_line(e)}") from None
  get_config = getattr(module, "get_config", None)
  if not callable(get_config):
    raise RecipeError(f"config file {path!r} defines no get_config()")
  try:
    config = get_config(*args)
  except Exception as e:
    raise RecipeError(f"config file {path!r}: {call} raised {_one_line(e)}") from None
  if not isinstance(config, ml_collections.ConfigDict):
    raise RecipeError(
      f"config file {path!r}: {call} returned {type(config).__name__}, not a ConfigDict"
    )
  return config
