"""What one claim's measurement hands to the report."""

import dataclasses


@dataclasses.dataclass
class Finding:
  """One claim, measured.

  key: short name, also the prefix of its figure files.
  title: section heading.
  claim: what the explainers state, in one sentence.
  verdict: one line: holds, wrong (and the correction), or what was found.
  text: one paragraph of Markdown with the measured figures in it.
  figures: file names (relative to the figure directory) of the plots.
  numbers: every measured figure, name -> value (floats, ints or strings).
  table: an optional Markdown table.
  seconds, source: wall time of the measurement and the module that made it, filled in
    by the driver.
  """

  key: str
  title: str
  claim: str
  verdict: str
  text: str
  figures: list[str]
  numbers: dict
  table: str = ""
  seconds: float = 0.0
  source: str = ""
