"""Training metrics between two log records, carried through checkpoints.

A train record is the mean loss and token accuracy over the steps since the
previous record, the learning rate, and steps/s. The window's partial sums are
saved with each checkpoint (`as_dict`) and restored with it (`from_dict`), so a run
interrupted and resumed at any step, a multiple of log_every or not, writes the
same loss, token_accuracy and learning_rate records as the uninterrupted run.
steps_per_s is wall-clock: after a resume it counts from the restart only.
"""

import math
import time


class TrainWindow:
  """Training metrics since the last log record: mean loss and token accuracy, steps/s."""

  def __init__(self, *, losses=(), correct: float = 0.0, count: float = 0.0, last_loss=math.nan):
    self.last_loss = float(last_loss)
    self._losses, self._correct, self._count = [float(x) for x in losses], correct, count
    self._since = time.perf_counter()

  @classmethod
  def from_dict(cls, saved: dict) -> "TrainWindow":
    """The window `as_dict` saved (an empty one for {})."""
    return cls(**saved)

  def as_dict(self) -> dict:
    """The partial sums, JSON-able and exact (floats round-trip through JSON)."""
    return {
      "losses": list(self._losses),
      "correct": self._correct,
      "count": self._count,
      "last_loss": self.last_loss,
    }

  def pending(self) -> bool:
    return bool(self._losses)

  def add(self, metrics: dict) -> float:
    loss = float(metrics["loss"])
    self._losses.append(loss)
    self._correct += float(metrics["token_correct"])
    self._count += float(metrics["token_count"])
    return loss

  def flush(self, *, learning_rate: float) -> dict:
    elapsed = time.perf_counter() - self._since
    self.last_loss = sum(self._losses) / len(self._losses)
    record = {
      "loss": self.last_loss,
      "token_accuracy": self._correct / max(self._count, 1.0),
      "learning_rate": learning_rate,
      "steps_per_s": len(self._losses) / elapsed,
    }
    self._losses, self._correct, self._count = [], 0.0, 0.0
    self._since = time.perf_counter()
    return record
