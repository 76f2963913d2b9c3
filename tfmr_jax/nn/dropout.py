"""Dropout as the models use it: one validated rate, the 'dropout' rng stream.

Train/eval mode is NNX's own switch: `model.train()` turns every Dropout on,
`model.eval()` turns it off (it sets `deterministic` on each nnx.Dropout).
"""

from flax import nnx


def check_dropout(name: str, rate) -> None:
  """Raise ValueError unless `rate` is a number in [0, 1)."""
  if not isinstance(rate, (int, float)) or isinstance(rate, bool) or not 0.0 <= rate < 1.0:
    raise ValueError(f"{name} must be a rate in [0, 1), got {rate!r}")


def make_dropout(rate: float, rngs: nnx.Rngs, *, name: str = "dropout") -> nnx.Dropout:
  """nnx.Dropout on the 'dropout' stream; a rate of 0 keeps no random state."""
  check_dropout(name, rate)
  return nnx.Dropout(float(rate), rngs=rngs if rate > 0 else None)
