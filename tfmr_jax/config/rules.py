"""What one config field accepts, and the one error every broken rule raises.

A `Rule` is a type (int, float, str, bool), optional None, choices, or bounds; a
float must also be finite (NaN and inf break every range). `checked`
converts a value to the rule's type (an int widens to float) or raises `ConfigError`
naming the field, the value and the rule, with "did you mean" for near misses.
"""

import dataclasses
import difflib
import math


class ConfigError(ValueError):
  """A config field broke a rule. The message names the field, its value and the rule."""


@dataclasses.dataclass(frozen=True)
class Rule:
  """What one field accepts: a type, optional None, choices, or bounds [low, high)."""

  type: type
  optional: bool = False
  choices: tuple = ()
  low: float | None = None
  high: float | None = None
  low_exclusive: bool = False
  high_inclusive: bool = False
  what: str = ""  # noun for unknown choices, e.g. "optimizer"

  def describe(self) -> str:
    if self.choices:
      return f"one of {', '.join(map(repr, self.choices))}" + (" or None" if self.optional else "")
    kind = {int: "an int", float: "a finite number", str: "a string", bool: "a bool"}[self.type]
    if self.type is int and self.low == 1 and self.high is None:
      kind = "a positive int"
    elif self.type is int and self.low == 0 and self.high is None:
      kind = "a non-negative int"
    elif self.low is not None and self.high is not None:
      left = "(" if self.low_exclusive else "["
      right = "]" if self.high_inclusive else ")"
      kind = f"{kind} in {left}{self.low:g}, {self.high:g}{right}"
    elif self.low is not None:
      kind = f"{kind} {'>' if self.low_exclusive else '>='} {self.low:g}"
    return kind + (" or None" if self.optional else "")


def positive_int(optional: bool = False) -> Rule:
  return Rule(int, optional=optional, low=1)


def non_negative_int() -> Rule:
  return Rule(int, low=0)


def positive_float() -> Rule:
  return Rule(float, low=0.0, low_exclusive=True)


def fraction(high_inclusive: bool = False) -> Rule:
  return Rule(float, low=0.0, high=1.0, high_inclusive=high_inclusive)


def choice(*choices: str, what: str = "", optional: bool = False) -> Rule:
  return Rule(str, choices=choices, what=what, optional=optional)


def suggest(name, known) -> str:
  """' (did you mean 'x'?)' for the closest of `known`, or ''."""
  close = difflib.get_close_matches(str(name), list(known), n=1, cutoff=0.6)
  return f" (did you mean {close[0]!r}?)" if close else ""


def check_keys(prefix: str, given: dict, known) -> None:
  """ConfigError naming the first key of `given` that is not in `known`."""
  for key, value in given.items():
    if key not in known:
      raise ConfigError(
        f"config.{prefix}{key} = {value!r}: unknown key{suggest(key, known)}; "
        f"known keys of config{'.' + prefix.rstrip('.') if prefix else ''}: {', '.join(known)}"
      )


def checked(path: str, value, rule: Rule):
  """`value` converted to the rule's type (ints widen to float), or ConfigError."""
  if value is None:
    if rule.optional:
      return None
    raise ConfigError(f"config.{path} = None: must be {rule.describe()}")
  if rule.type is float and isinstance(value, int) and not isinstance(value, bool):
    value = float(value)
  if type(value) is not rule.type:
    raise ConfigError(f"config.{path} = {value!r}: must be {rule.describe()}")
  if rule.type is float and not math.isfinite(value):
    raise ConfigError(f"config.{path} = {value!r}: must be {rule.describe()}")
  if rule.choices and value not in rule.choices:
    what = rule.what or "value"
    raise ConfigError(
      f"config.{path} = {value!r}: unknown {what}{suggest(value, rule.choices)}; "
      f"must be {rule.describe()}"
    )
  too_low = rule.low is not None and (value <= rule.low if rule.low_exclusive else value < rule.low)
  too_high = rule.high is not None and (
    value > rule.high if rule.high_inclusive else value >= rule.high
  )
  if too_low or too_high:
    raise ConfigError(f"config.{path} = {value!r}: must be {rule.describe()}")
  return value
