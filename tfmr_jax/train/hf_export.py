"""A trained run's model as a Hugging Face folder (GPT-2: config.json + model.safetensors).

tfmr_jax.train.export("runs/sort", "exported/sort")      # the newest checkpoint
tfmr_jax.train.export("runs/sort", "exported/sort_100", step=100)
"""

import pathlib

from tfmr_jax.models import ModelConfigError, to_hf
from tfmr_jax.train.run import load_run


class ExportError(ValueError):
  """The run's model is one Hugging Face's format cannot hold; the message says why."""


def export(workdir: str, out_dir, *, step: int | None = None, overwrite: bool = False):
  """Write the model of the run in `workdir` at checkpoint `step` (default: the newest
  intact one) to `out_dir` with `tfmr_jax.models.to_hf`; returns `out_dir` as a Path.

  Raises ExportError naming the config field, its value and the rule for a model the
  format cannot hold (an encoder, say, or grouped-query attention), FileExistsError
  for a non-empty `out_dir` unless `overwrite`, and what `load_run` raises for a
  missing run or checkpoint. Nothing is written unless the export succeeds.
  """
  model = load_run(workdir, step=step).model
  try:
    return pathlib.Path(to_hf(model, out_dir, overwrite=overwrite))
  except (TypeError, ModelConfigError) as e:
    raise ExportError(
      f"the model of the run in {workdir!r} cannot be exported to Hugging Face's format: {e}"
    ) from None
