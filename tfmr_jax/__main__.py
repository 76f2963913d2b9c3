"""python -m tfmr_jax: the same as the tfmr-jax command."""

import sys

from tfmr_jax.cli import main

sys.exit(main())
