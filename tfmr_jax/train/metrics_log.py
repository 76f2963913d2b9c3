"""Metric records: one JSON object per line in metrics.jsonl, and TensorBoard event files.

Each record is {"step": ..., "split": "train" | "test" | "val", <metric>: value, ...}.
TensorBoard scalars are named "<split>/<metric>". Event files are written with
tensorboardX (pure Python, no TensorFlow); `tensorboard --logdir <workdir>/tensorboard`
shows them.
"""

import json
import math
import os


class MetricsLog:
  """Appends records to `<workdir>/metrics.jsonl` (and TensorBoard unless disabled).

  On a resumed run, `truncate_after(step)` first drops records newer than the
  restored checkpoint, so the file describes one continuous run.
  With `enabled=False` (every process of a multi-process run but the first) it writes
  nothing.
  """

  def __init__(self, workdir: str, *, tensorboard: bool = True, enabled: bool = True):
    self.path = os.path.join(workdir, "metrics.jsonl")
    self.enabled = enabled
    self._writer = None
    if tensorboard and enabled:
      from tensorboardX import SummaryWriter

      self._writer = SummaryWriter(os.path.join(workdir, "tensorboard"))

  def truncate_after(self, step: int) -> None:
    """Keep only the records with step <= `step`."""
    if not self.enabled:
      return
    kept = [r for r in read_metrics(os.path.dirname(self.path)) if r["step"] <= step]
    with open(self.path + ".tmp", "w") as f:
      f.writelines(json.dumps(r) + "\n" for r in kept)
    os.replace(self.path + ".tmp", self.path)

  def write(self, step: int, split: str, metrics: dict) -> None:
    if not self.enabled:
      return
    record = {"step": int(step), "split": split}
    record.update({k: _json_number(v) for k, v in metrics.items()})
    with open(self.path, "a") as f:
      f.write(json.dumps(record) + "\n")
    if self._writer is not None:
      for name, value in metrics.items():
        self._writer.add_scalar(f"{split}/{name}", float(value), int(step))

  def close(self) -> None:
    if self._writer is not None:
      self._writer.close()


def _json_number(value):
  value = float(value)
  return value if math.isfinite(value) else str(value)


def read_metrics(workdir: str, split: str | None = None) -> list[dict]:
  """The records of `<workdir>/metrics.jsonl`, optionally only those of `split`."""
  path = os.path.join(workdir, "metrics.jsonl")
  if not os.path.exists(path):
    return []
  with open(path) as f:
    records = [json.loads(line) for line in f if line.strip()]
  return [r for r in records if split is None or r["split"] == split]
