"""The one config schema: its fields, their defaults, and the validation every entry point runs.

Recipes in configs/ start from `defaults(task_name)` (a locked ConfigDict: a misspelt
field fails where it is set) and change what they need; command-line overrides
(`--config.model.num_heads=4`) and notebooks change the same fields.
`validate(config)` fills a possibly partial config in from the defaults of its task,
checks every field and every rule between fields, and returns the resolved config,
or raises `ConfigError` naming the field, the value and the rule, before anything is
built or compiled. The model section's rules are `TransformerConfig`'s
(`model_config`).

  rules.py     what one field accepts (Rule) and ConfigError
  schema.py    the sections' fields and defaults
  model.py     the model section as a TransformerConfig
  validate.py  validate() and the rules between fields
  recipe.py    load_recipe(): a recipe file's get_config(), or one clear RecipeError
"""

from tfmr_jax.config.model import model_config
from tfmr_jax.config.recipe import RecipeError, load_recipe
from tfmr_jax.config.rules import ConfigError
from tfmr_jax.config.schema import SECTION_FIELDS, SECTIONS, TASK_FIELDS, defaults
from tfmr_jax.config.validate import check_devices, validate, validate_distributed

__all__ = [
  "SECTIONS",
  "SECTION_FIELDS",
  "TASK_FIELDS",
  "ConfigError",
  "RecipeError",
  "check_devices",
  "defaults",
  "load_recipe",
  "model_config",
  "validate",
  "validate_distributed",
]
