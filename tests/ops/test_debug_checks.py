"""tj.debug_checks: value checks inside jit through chex.chexify, nothing added when off."""

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest

import tfmr_jax as tj
from tfmr_jax.ops.debug import debug_enabled
from tfmr_jax.ops.implementations import run_implementation

B, T, S, N, K, H = 2, 5, 7, 6, 3, 11
IMPLEMENTATIONS = ["reference", "tiled", "xla"]
EMPTY_ROW = r"attention: a query row sees no key .*fully_masked_rows='error'"


@pytest.fixture
def qkv(make_qkv):
  return make_qkv(B=B, T=T, S=S, N=N, K=K, H=H)


def empty_row_mask():
  """Padding: sequence 1 has no keys at all, so its rows see nothing."""
  return tj.padding_mask(np.array([S, 0]), S)


def checked(fn):
  """fn jitted, with chex value checks on and reported synchronously."""
  return chex.chexify(jax.jit(fn), async_check=False)


def trace(fn, *args) -> str:
  """fn's jaxpr, traced afresh (make_jaxpr caches a trace per function object)."""
  return str(jax.make_jaxpr(lambda *a: fn(*a))(*args))


def test_off_by_default_and_restored_after_the_block():
  assert not debug_enabled()
  with tj.debug_checks(fully_masked_rows="error"):
    assert debug_enabled()
    with tj.debug_checks(enabled=False):
      assert not debug_enabled()
    assert debug_enabled()
  assert not debug_enabled()


@pytest.mark.parametrize("implementation", IMPLEMENTATIONS)
def test_off_adds_nothing_to_the_traced_computation(implementation, qkv):
  """Off, tj.attention traces to exactly the implementation it runs, nothing more."""
  mask = empty_row_mask()

  def public(q, k, v):
    return tj.attention(q, k, v, mask=mask, is_causal=True, implementation=implementation)

  def bare(q, k, v):
    options = dict(mask=mask, bias=None, scale=None, is_causal=True)
    return run_implementation(implementation, q, k, v, **options)

  expected = trace(bare, *qkv)
  assert trace(public, *qkv) == expected
  with tj.debug_checks(enabled=False):
    assert trace(public, *qkv) == expected
  with tj.debug_checks():  # on, the checks are part of the trace: chex wants chexify
    with pytest.raises(RuntimeError, match=r"wrapped with `@chex.chexify`"):
      trace(public, *qkv)


@pytest.mark.parametrize("implementation", IMPLEMENTATIONS)
def test_fully_masked_row_is_reported_when_asked(implementation, qkv):
  mask = empty_row_mask()
  with tj.debug_checks(fully_masked_rows="error"):
    fn = checked(lambda q, k, v: tj.attention(q, k, v, mask=mask, implementation=implementation))
    with pytest.raises(AssertionError, match=EMPTY_ROW):
      fn(*qkv)


def test_rows_emptied_by_the_causal_rule_and_a_mask_together_are_reported(make_qkv):
  """Keys 0-2 are padding, and the causal rule (T = S) shows query t keys s <= t only."""
  q, k, v = make_qkv(B=B, T=S, S=S, N=N, K=K, H=H)
  mask = jnp.asarray(np.arange(S) >= 3)[None, None, None, :]
  with tj.debug_checks(fully_masked_rows="error"):
    fn = checked(lambda q, k, v: tj.attention(q, k, v, mask=mask, is_causal=True))
    with pytest.raises(AssertionError, match=EMPTY_ROW):
      fn(q, k, v)
    fn = checked(lambda q, k, v: tj.attention(q, k, v, mask=mask))
    fn(q, k, v)  # without the causal rule every row sees keys 3 and on


def test_fully_masked_rows_are_allowed_by_default(qkv):
  mask = empty_row_mask()
  with tj.debug_checks():
    out = checked(lambda q, k, v: tj.attention(q, k, v, mask=mask))(*qkv)
  assert np.all(np.asarray(out[1]) == 0.0)


@pytest.mark.parametrize("implementation", IMPLEMENTATIONS)
def test_nan_in_q_is_reported(implementation, qkv):
  q, k, v = qkv
  q = q.at[0, 1, 2, 3].set(jnp.nan)
  with tj.debug_checks():
    fn = checked(lambda q, k, v: tj.attention(q, k, v, implementation=implementation))
    with pytest.raises(AssertionError, match=r"attention: q_BTNH has a non-finite value"):
      fn(q, k, v)


def test_attention_weights_checks_too(qkv):
  q, k, _ = qkv
  with tj.debug_checks(fully_masked_rows="error"):
    fn = checked(lambda q, k: tj.attention_weights(q, k, mask=empty_row_mask()))
    with pytest.raises(AssertionError, match=r"attention_weights: a query row sees no key"):
      fn(q, k)
    fn = checked(lambda q, k: tj.attention_weights(q, k))
    with pytest.raises(AssertionError, match=r"attention_weights: k_BSKH has a non-finite"):
      fn(q, k.at[1, 0, 0, 0].set(jnp.inf))


def test_without_jit_a_failed_check_raises_at_once(qkv):
  q, k, v = qkv
  with tj.debug_checks(fully_masked_rows="error"):
    with pytest.raises(AssertionError, match=r"a query row sees no key"):
      tj.attention(q, k, v, mask=empty_row_mask())
    with pytest.raises(AssertionError, match=r"q_BTNH has a non-finite value"):
      tj.attention(q.at[0, 0, 0, 0].set(jnp.nan), k, v)


def test_off_nothing_raises_and_outputs_are_unchanged(qkv):
  q, k, v = qkv
  mask = empty_row_mask()
  q_nan = q.at[0, 1, 2, 3].set(jnp.nan)

  def attend(q, k, v):
    return tj.attention(q, k, v, mask=mask)

  off = [checked(attend)(q, k, v), checked(attend)(q_nan, k, v)]
  plain = [jax.jit(attend)(q, k, v), jax.jit(attend)(q_nan, k, v)]
  assert np.isnan(np.asarray(off[1])).any()  # the NaN flows through, unreported
  for got, want in zip(off, plain, strict=True):
    np.testing.assert_array_equal(got, want)
  with tj.debug_checks():  # on, but nothing to report: the same numbers
    np.testing.assert_array_equal(checked(attend)(q, k, v), plain[0])


@pytest.mark.parametrize(
  "options,error,match",
  [
    ({"fully_masked_rows": "raise"}, ValueError, r"fully_masked_rows must be one of"),
    ({"enabled": 1}, TypeError, r"enabled must be a bool, got 1"),
  ],
)
def test_bad_switch_arguments_raise_named_errors(options, error, match):
  with pytest.raises(error, match=match):
    with tj.debug_checks(**options):
      pass
