"""EXPLAINED.md: every claim with its verdict, figure, paragraph and measured figures.

Beside the figures, findings.json keeps every finding whole, so a run of some claims
(`--only`) rewrites the report with the others as they were last measured.
"""

import dataclasses
import json
import os

from experiments.explain.finding import Finding

COMMAND = "python -m experiments.explain"
FINDINGS = "findings.json"


def write_report(findings: list[Finding], *, out_dir: str, figure_subdir: str, quick: bool) -> str:
  """Write `<out_dir>/EXPLAINED.md` and, under `<out_dir>/<figure_subdir>/`, numbers.json
  and findings.json. The time stated is the sum of the findings' own.

  Returns the path of EXPLAINED.md.
  """
  total_seconds = sum(f.seconds for f in findings)
  lines = [
    "# The attention explainers' claims, measured",
    "",
    f"Regenerate everything on this page (figures, GIF, numbers) with `{COMMAND}`"
    + (
      " (this copy was made with `--quick`: small sizes, not the published figures)"
      if quick
      else ""
    )
    + f"; its claims took {total_seconds / 60:.1f} minutes on this machine's {os.cpu_count()} "
    "CPU cores (`--only a,b` reruns some of them and keeps the others). "
    "Every number below was measured by it; the raw figures are in "
    f"[`{figure_subdir}/numbers.json`]({figure_subdir}/numbers.json).",
    "",
    "| claim | verdict |",
    "|---|---|",
  ]
  for f in findings:
    lines.append(f"| [{f.title}](#{_anchor(f.title)}) | {f.verdict} |")
  for f in findings:
    lines += [
      "",
      f"## {f.title}",
      "",
      f"**Claim.** {f.claim}",
      "",
      f"**Verdict.** {f.verdict}.",
      "",
    ]
    for name in f.figures:
      lines += [f"![{f.key}]({figure_subdir}/{name})", ""]
    lines += [f.text, ""]
    if f.table:
      lines += [f.table, ""]
    lines.append(f"_Measured in {f.seconds:.0f} s by `{f.source}`._")
  lines.append("")
  os.makedirs(os.path.join(out_dir, figure_subdir), exist_ok=True)
  path = os.path.join(out_dir, "EXPLAINED.md")
  with open(path, "w") as fh:
    fh.write("\n".join(lines))
  numbers = {
    f.key: {"verdict": f.verdict, "seconds": round(f.seconds, 1), **f.numbers} for f in findings
  }
  with open(os.path.join(out_dir, figure_subdir, "numbers.json"), "w") as fh:
    json.dump(numbers, fh, indent=1, sort_keys=False)
    fh.write("\n")
  whole = {"quick": quick, "findings": [dataclasses.asdict(f) for f in findings]}
  with open(os.path.join(out_dir, figure_subdir, FINDINGS), "w") as fh:
    json.dump(whole, fh, indent=1)
    fh.write("\n")
  return path


def read_findings(*, out_dir: str, figure_subdir: str, quick: bool) -> list[Finding]:
  """The findings of the last report written to `out_dir` with the same `quick`; [] if none."""
  path = os.path.join(out_dir, figure_subdir, FINDINGS)
  if not os.path.exists(path):
    return []
  with open(path) as fh:
    whole = json.load(fh)
  if whole["quick"] != quick:
    return []
  return [Finding(**f) for f in whole["findings"]]


def _anchor(title: str) -> str:
  """GitHub's heading anchor: lower case, punctuation dropped, spaces to hyphens."""
  kept = "".join(c for c in title.lower() if c.isalnum() or c in " -_")
  return kept.replace(" ", "-")
