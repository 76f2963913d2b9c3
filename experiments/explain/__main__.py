"""`python -m experiments.explain`: see driver.py."""

from experiments.explain.driver import main

main()
