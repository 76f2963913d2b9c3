"""EXPLAINED.md: every claim with its verdict, figure, paragraph and measured figures."""

import json
import os

from experiments.explain.finding import Finding

COMMAND = "python -m experiments.explain"


def write_report(
  findings: list[Finding], *, out_dir: str, figure_subdir: str, quick: bool, total_seconds: float
) -> str:
  """Write `<out_dir>/EXPLAINED.md` and `<out_dir>/<figure_subdir>/numbers.json`.

  Returns the path of EXPLAINED.md.
  """
  lines = [
    "# The attention explainers' claims, measured",
    "",
    f"Regenerate everything on this page (figures, GIF, numbers) with `{COMMAND}`"
    + (
      " (this copy was made with `--quick`: small sizes, not the published figures)"
      if quick
      else ""
    )
    + f"; it took {total_seconds / 60:.1f} minutes on this machine's {os.cpu_count()} CPU cores. "
    "Every number below comes from that run; the raw figures are in "
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
  return path


def _anchor(title: str) -> str:
  """GitHub's heading anchor: lower case, punctuation dropped, spaces to hyphens."""
  kept = "".join(c for c in title.lower() if c.isalnum() or c in " -_")
  return kept.replace(" ", "-")
