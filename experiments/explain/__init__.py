"""The attention explainers' claims, each measured, plotted and written up.

    python -m experiments.explain            # every claim; writes experiments/results/EXPLAINED.md
    python -m experiments.explain --quick    # small sizes, a few seconds per claim (the smoke test)
    python -m experiments.explain --only choices   # one claim; the report keeps the others

One module per claim: functions that measure and return numbers (`measure_*`, and for
the trained claims the runs behind them), and `explain(figure_dir, *, quick)` (plus
`workdir` where it trains) that measures, plots and returns a `Finding`. `driver.py`
runs them in order and `report.py` writes the Markdown. Models are trained with
`tfmr_jax.train.train`; the one task the trainer does not know (heads.py) drives the
trainer's own jitted step.
"""
