"""The attention explainers' claims, each measured, plotted and written up.

    python -m experiments.explain            # every claim; writes experiments/results/EXPLAINED.md
    python -m experiments.explain --quick    # small sizes, a few seconds per claim (the smoke test)

One module per claim; each has a pure `measure_*` function that returns numbers and
an `explain(figure_dir, *, quick)` that measures, plots and returns a `Finding`.
`driver.py` runs them in order and `report.py` writes the Markdown.
"""
