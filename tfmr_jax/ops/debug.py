"""Value checks inside jit, off by default: the `debug_checks` switch.

Shape and dtype checks always run (while tracing, for free; see guards). Checks on
values (a NaN, a query row that sees no key) need the values, so they are added to
the computation only while the switch is on, and report through chex:

    with tj.debug_checks(fully_masked_rows="error"):
      checked = chex.chexify(jax.jit(loss_fn), async_check=False)
      checked(params, batch)  # AssertionError naming the rule that broke

- Read at trace time. The switch decides what a function traces to; a jitted function
  already traced outside the block keeps its unchecked trace (jit caches it), so trace
  (first call) it inside the block.
- Under jit, wrap the outermost jitted function in `chex.chexify`, else tracing fails
  (chex: "Value assertions can only be called from functions wrapped with
  `@chex.chexify`").
  chexify reports asynchronously by default: pass `async_check=False`, or call
  `checked.wait_checks()` / `chex.block_until_chexify_assertions_complete()`.
  Without jit, a failed check raises at once.
- Off (the default), nothing is added: the traced computation is the same as without
  this module.

What the attention ops check while on: q, k, v and bias are finite, the output is
finite (a NaN or inf in the logits shows there), and, with fully_masked_rows="error",
that every query row may attend to at least one key. Fully masked rows are legal and
return zeros, so that check is off unless asked for ("allow", the default).

`debug_enabled()` and `check_finite` are for other floors (a train step) to reuse.
"""

import contextlib
import contextvars
import dataclasses

import chex
import jax.numpy as jnp

from tfmr_jax.ops.guards import as_rank4

FULLY_MASKED_ROWS = ("allow", "error")


@dataclasses.dataclass(frozen=True)
class DebugChecks:
  """The switch's state: whether value checks are on, and what an empty row is."""

  enabled: bool = False
  fully_masked_rows: str = "allow"


_OFF = DebugChecks()
_STATE = contextvars.ContextVar("tfmr_jax_debug_checks", default=_OFF)


@contextlib.contextmanager
def debug_checks(*, enabled: bool = True, fully_masked_rows: str = "allow"):
  """Within the block, ops traced add chex value checks (see the module docstring).

  Args:
    enabled: turn the checks on (the default inside the block) or off.
    fully_masked_rows: "allow" (legal, they return zeros) or "error" (report a query
      row whose keys are all masked).
  """
  if not isinstance(enabled, bool):
    raise TypeError(f"debug_checks: enabled must be a bool, got {enabled!r}")
  if fully_masked_rows not in FULLY_MASKED_ROWS:
    raise ValueError(
      f"debug_checks: fully_masked_rows must be one of {FULLY_MASKED_ROWS}, "
      f"got {fully_masked_rows!r}"
    )
  token = _STATE.set(DebugChecks(enabled=enabled, fully_masked_rows=fully_masked_rows))
  try:
    yield
  finally:
    _STATE.reset(token)


def debug_state() -> DebugChecks:
  """The switch as it stands where this is called (while tracing, for a jitted caller)."""
  return _STATE.get()


def debug_enabled() -> bool:
  """Whether value checks are on here (read while tracing)."""
  return _STATE.get().enabled


def check_finite(name: str, x) -> None:
  """While checks are on, report a NaN or inf anywhere in `x` (a pytree); else nothing."""
  if debug_enabled():
    chex.assert_tree_all_finite(x, custom_message=f"{name} has a non-finite value (NaN or inf)")


def check_rows_see_a_key(op: str, mask) -> None:
  """With fully_masked_rows="error", report a query row of `mask` with no True key.

  mask: bool, broadcastable to [B, N, T, S], or None (no row is empty).
  """
  state = _STATE.get()
  if not state.enabled or state.fully_masked_rows == "allow" or mask is None:
    return
  every_row_sees_a_key = jnp.all(jnp.any(as_rank4(mask), axis=-1))
  chex.assert_trees_all_equal(
    every_row_sees_a_key,
    jnp.asarray(True),
    custom_message=(
      f"{op}: a query row sees no key (all its keys masked), which "
      "debug_checks(fully_masked_rows='error') forbids"
    ),
  )
