"""Run every claim's measurement in order, then write EXPLAINED.md.

    python -m experiments.explain [--quick] [--only scaling,norms] [--out experiments/results]
                                  [--workdir runs/explain]

Training runs go under --workdir (fresh each time); figures and the GIF under
<out>/explain/, the report at <out>/EXPLAINED.md. With --only, the report keeps the
other claims as the last run with the same --quick measured them (findings.json).
"""

import argparse
import importlib
import inspect
import os
import sys
import time

from experiments.explain.finding import Finding
from experiments.explain.report import read_findings, write_report

CLAIMS = (
  "scaling",
  "worked_example",
  "heads",
  "causal",
  "positions",
  "norms",
  "warmup",
  "animation",
  "choices",
)
FIGURE_SUBDIR = "explain"


def run(
  *,
  out_dir: str = "experiments/results",
  workdir: str = "runs/explain",
  quick: bool = False,
  only=None,
) -> list[Finding]:
  """Measure the claims named in `only` (default: all, in order); write the report; return them.

  The report holds the claims measured now and, in their place in CLAIMS, the others of
  the last report in `out_dir` made with the same `quick`.
  """
  names = CLAIMS if only is None else tuple(only)
  unknown = sorted(set(names) - set(CLAIMS))
  if unknown:
    raise ValueError(f"unknown claims {unknown}; choose from {', '.join(CLAIMS)}")
  figure_dir = os.path.join(out_dir, FIGURE_SUBDIR)
  findings = []
  for name in names:
    module = importlib.import_module(f"experiments.explain.{name}")
    print(f"[explain] {name} ...", file=sys.stderr, flush=True)
    began = time.perf_counter()
    kwargs = {"quick": quick}
    if "workdir" in inspect.signature(module.explain).parameters:
      kwargs["workdir"] = os.path.join(workdir, name)
    finding = module.explain(figure_dir, **kwargs)
    finding.seconds = time.perf_counter() - began
    finding.source = f"experiments/explain/{name}.py"
    print(
      f"[explain] {name}: {finding.verdict} ({finding.seconds:.0f} s)", file=sys.stderr, flush=True
    )
    findings.append(finding)
  measured = {f.source: f for f in findings}
  kept = read_findings(out_dir=out_dir, figure_subdir=FIGURE_SUBDIR, quick=quick)
  order = [f"experiments/explain/{name}.py" for name in CLAIMS]
  for f in kept:
    if f.source in order:
      measured.setdefault(f.source, f)
  report = sorted(measured.values(), key=lambda f: order.index(f.source))
  write_report(report, out_dir=out_dir, figure_subdir=FIGURE_SUBDIR, quick=quick)
  return findings


def main(argv=None) -> None:
  parser = argparse.ArgumentParser(
    prog="python -m experiments.explain",
    description=__doc__,
    formatter_class=argparse.RawDescriptionHelpFormatter,
  )
  parser.add_argument("--quick", action="store_true", help="small sizes: a smoke test")
  parser.add_argument(
    "--only", default=None, help=f"comma-separated subset of: {', '.join(CLAIMS)}"
  )
  parser.add_argument("--out", default="experiments/results", help="where EXPLAINED.md goes")
  parser.add_argument("--workdir", default="runs/explain", help="where training runs go")
  args = parser.parse_args(argv)
  only = None if args.only is None else [name.strip() for name in args.only.split(",")]
  run(out_dir=args.out, workdir=args.workdir, quick=args.quick, only=only)


if __name__ == "__main__":
  main()
