"""tj.attention(..., is_causal=True): the causal rule as structure, the same function as the mask.

Query t sees key s <= t + (S - T) (bottom-right aligned), ANDed with `mask`. Every
implementation that runs on CPU must give what `mask=causal_mask(T, S)` gives, what a
NumPy oracle gives, and for T == S what jax.nn.dot_product_attention(is_causal=True) gives.
"""

import jax
import jax.extend
import jax.numpy as jnp
import numpy as np
import pytest

import tfmr_jax as tj
from tests.conftest import random_qkv
from tests.ops.oracle import np_attention, np_causal
from tfmr_jax.ops.implementations import choose_implementation
from tfmr_jax.ops.jax_nn import jax_nn_attention

B, N, H = 2, 6, 7
HEADS = {"mha": 6, "gqa": 3}
# (T, S): square, keys beyond the queries (a cache after prefill), and one long enough
# that implementation=None takes the tiled path on CPU.
SHAPES = {"square": (7, 7), "wide": (5, 11), "long": (67, 71)}
IMPLEMENTATIONS = ["reference", "tiled", "xla", None]
EMPTY = 2  # rows 0 and 1 of sequence 1 see no key once padding meets the causal rule


def qkv(K, T, S, seed=0):
  return random_qkv(B=B, T=T, S=S, N=N, K=K, H=H, seed=seed)


def left_padding(T, S):
  """[B, 1, 1, S]: sequence 0 all real; sequence 1's first S - T + EMPTY keys are padding.

  With the causal rule its query t sees keys s <= t + S - T, so rows t < EMPTY see nothing,
  although every row of this mask alone has a key to see.
  """
  valid_BS = np.ones((B, S), bool)
  valid_BS[1, : S - T + EMPTY] = False
  return valid_BS[:, None, None, :]


def allowed_BNTS(T, S, padding):
  """The NumPy truth: causal by definition, ANDed with the padding if any."""
  allowed = np.broadcast_to(np_causal(T, S), (B, N, T, S))
  return allowed if padding is None else allowed & padding


def test_the_padding_case_empties_exactly_the_intended_rows():
  for T, S in SHAPES.values():
    seen_BNT = allowed_BNTS(T, S, left_padding(T, S)).any(-1)
    assert seen_BNT[0].all() and seen_BNT[1, :, EMPTY:].all() and not seen_BNT[1, :, :EMPTY].any()
    assert left_padding(T, S).any(-1).all()  # the mask alone leaves no row empty


@pytest.mark.parametrize(
  "implementation,shape",
  # The long shape is there for the tiled kernel (directly and as None's choice).
  [(i, s) for i in IMPLEMENTATIONS for s in SHAPES if s != "long" or i in ("tiled", None)],
)
@pytest.mark.parametrize("heads", list(HEADS))
@pytest.mark.parametrize("padded", [False, True], ids=["causal", "causal+padding"])
def test_is_causal_equals_the_causal_mask_and_the_oracle(implementation, shape, heads, padded):
  T, S = SHAPES[shape]
  q, k, v = qkv(HEADS[heads], T, S)
  padding = left_padding(T, S) if padded else None
  mask = None if padding is None else jnp.asarray(padding)

  @jax.jit
  def flag(q, k, v):
    return tj.attention(q, k, v, mask=mask, is_causal=True, implementation=implementation)

  @jax.jit
  def array(q, k, v):
    full_mask = tj.combine_masks(tj.causal_mask(T, S), mask)
    return tj.attention(q, k, v, mask=full_mask, implementation=implementation)

  out = flag(q, k, v)
  assert out.shape == (B, T, N, H) and out.dtype == jnp.float32
  want = np_attention(q, k, v, allowed_BNTS(T, S, padding))
  np.testing.assert_allclose(out, want, atol=1e-5, rtol=1e-5)
  np.testing.assert_allclose(out, array(q, k, v), atol=1e-6, rtol=1e-6)
  if padded:
    assert np.all(np.asarray(out[1, :EMPTY]) == 0.0)
    assert np.all(np.abs(np.asarray(out[1, EMPTY:])).sum(-1) > 0.0)


def test_none_takes_the_tiled_path_for_the_long_shape():
  T, S = SHAPES["long"]
  assert choose_implementation(B=B, T=T, S=S, N=N, H=H, dtype=jnp.float32) == "tiled"


@pytest.mark.parametrize("implementation", IMPLEMENTATIONS)
def test_square_matches_jax_nn_is_causal(implementation, maybe_jit):
  T = S = SHAPES["square"][0]
  q, k, v = qkv(HEADS["gqa"], T, S, seed=3)
  fn = maybe_jit(
    lambda q, k, v: tj.attention(q, k, v, is_causal=True, implementation=implementation)
  )
  theirs = jax.nn.dot_product_attention(q, k, v, is_causal=True, implementation="xla")
  np.testing.assert_allclose(fn(q, k, v), theirs, atol=2e-6, rtol=2e-6)


def test_jax_nn_is_causal_is_top_left_so_wide_shapes_must_not_use_it():
  """Why jax_nn_attention builds the mask when T < S: jax.nn's rule there is s <= t."""
  T, S = SHAPES["wide"]
  q, k, v = qkv(HEADS["mha"], T, S, seed=4)
  theirs = jax.nn.dot_product_attention(q, k, v, is_causal=True, implementation="xla")
  top_left = np.tril(np.ones((T, S), bool))
  np.testing.assert_allclose(theirs, np_attention(q, k, v, top_left), atol=1e-5, rtol=1e-5)
  ours = jax_nn_attention(q, k, v, is_causal=True)
  np.testing.assert_allclose(ours, np_attention(q, k, v, np_causal(T, S)), atol=1e-5, rtol=1e-5)


def jnp_oracle(q_BTNH, k_BSKH, v_BSKH, allowed_BNTS):
  """Plain jnp softmax attention, written here, for gradients; empty rows give zeros."""
  G = q_BTNH.shape[2] // k_BSKH.shape[2]
  k_BSNH, v_BSNH = (jnp.repeat(x, G, axis=2) for x in (k_BSKH, v_BSKH))
  logits_BNTS = jnp.einsum("BTNH,BSNH->BNTS", q_BTNH, k_BSNH) / np.sqrt(q_BTNH.shape[-1])
  allowed_BNTS = jnp.asarray(allowed_BNTS)
  probs_BNTS = jax.nn.softmax(jnp.where(allowed_BNTS, logits_BNTS, -1e30), axis=-1)
  probs_BNTS = jnp.where(allowed_BNTS, probs_BNTS, 0.0)
  return jnp.einsum("BNTS,BSNH->BTNH", probs_BNTS, v_BSNH)


@pytest.mark.parametrize("implementation", IMPLEMENTATIONS)
@pytest.mark.parametrize("shape", ["square", "wide"])
def test_gradients_match_the_oracle_and_vanish_on_empty_rows(implementation, shape):
  T, S = SHAPES[shape]
  q, k, v = qkv(HEADS["gqa"], T, S, seed=5)
  padding = left_padding(T, S)
  w = jnp.asarray(np.random.default_rng(6).normal(size=(B, T, N, H)), jnp.float32)

  def ours(q, k, v):
    return tj.attention(
      q, k, v, mask=jnp.asarray(padding), is_causal=True, implementation=implementation
    )

  def oracle(q, k, v):
    return jnp_oracle(q, k, v, allowed_BNTS(T, S, padding))

  only_empty_rows = jnp.zeros_like(w).at[1, :EMPTY].set(1.0)

  @jax.jit
  def grads(q, k, v):
    """(gradients of sum(out * w), gradients of the empty rows' sum), by one vjp each."""
    _, ours_vjp = jax.vjp(ours, q, k, v)
    _, oracle_vjp = jax.vjp(oracle, q, k, v)
    return ours_vjp(w), oracle_vjp(w), ours_vjp(only_empty_rows)

  got, want, of_empty_rows = grads(q, k, v)
  for g_got, g_want in zip(got, want, strict=True):
    assert np.all(np.isfinite(np.asarray(g_got)))
    np.testing.assert_allclose(g_got, g_want, atol=5e-5, rtol=5e-5)
  for g in of_empty_rows:
    assert np.all(np.asarray(g) == 0.0)


@pytest.mark.parametrize("shape", ["square", "wide"])
def test_weights_apply_the_rule(shape):
  T, S = SHAPES[shape]
  q, k, _ = qkv(HEADS["gqa"], T, S, seed=7)
  padding = left_padding(T, S)
  w = tj.attention_weights(q, k, mask=jnp.asarray(padding), is_causal=True)
  assert w.shape == (B, N, T, S) and w.dtype == jnp.float32
  allowed = allowed_BNTS(T, S, padding)
  assert np.all(np.asarray(w)[~allowed] == 0.0)
  sums = np.asarray(w).sum(-1)
  np.testing.assert_allclose(sums, allowed.any(-1).astype(np.float32), atol=1e-6)
  mask = tj.combine_masks(tj.causal_mask(T, S), jnp.asarray(padding))
  np.testing.assert_array_equal(w, tj.attention_weights(q, k, mask=mask))


def test_tiled_path_builds_no_query_by_key_mask():
  """is_causal reaches the tiled kernel as structure: no [T, S] array appears in the program."""
  T = S = 1024
  q = jax.ShapeDtypeStruct((1, T, 1, 8), jnp.float32)

  def shapes_of(fn):
    jaxpr = jax.make_jaxpr(fn)(q, q, q)
    found = set()

    def walk(jaxpr):
      for eqn in jaxpr.eqns:
        for var in eqn.outvars:
          found.add(tuple(getattr(var.aval, "shape", ())))
        for sub in jax.extend.core.jaxprs_in_params(eqn.params):
          walk(sub)

    walk(jaxpr.jaxpr)
    return found

  def has_t_by_s(found):
    return any(shape[-2:] == (T, S) for shape in found if len(shape) >= 2)

  as_mask = shapes_of(
    lambda q, k, v: tj.attention(q, k, v, mask=tj.causal_mask(T), implementation="tiled")
  )
  assert has_t_by_s(as_mask)  # the check can see a [T, S] mask when there is one
  for implementation in ("tiled", None):
    found = shapes_of(
      lambda q, k, v, i=implementation: tj.attention(q, k, v, is_causal=True, implementation=i)
    )
    assert not has_t_by_s(found), implementation


T_, S_ = 5, 3
q_bad = jnp.zeros((B, T_, N, H))
kv_bad = jnp.zeros((B, S_, 3, H))


@pytest.mark.parametrize("implementation", IMPLEMENTATIONS)
def test_fewer_keys_than_queries_is_refused_before_tracing(implementation):
  message = r"is_causal=True needs S >= T \(queries are the last T of S keys\), got T=5, S=3"
  with pytest.raises(ValueError, match=message):
    tj.attention(q_bad, kv_bad, kv_bad, is_causal=True, implementation=implementation)
  with pytest.raises(ValueError, match=message):
    jax.jit(lambda q, k: tj.attention(q, k, k, is_causal=True, implementation=implementation))(
      q_bad, kv_bad
    )
  with pytest.raises(ValueError, match=message):
    tj.attention_weights(q_bad, kv_bad, is_causal=True)
  with pytest.raises(ValueError, match=message):
    jax_nn_attention(q_bad, kv_bad, kv_bad, is_causal=True)
  # Without the rule, fewer keys than queries is fine.
  assert tj.attention(q_bad, kv_bad, kv_bad, implementation=implementation).shape == q_bad.shape


@pytest.mark.parametrize(
  "value,type_name",
  [
    (1, "int"),
    ("yes", "str"),
    (None, "NoneType"),
    (np.bool_(True), "bool_?"),
    (jnp.asarray(True), "ArrayImpl"),
  ],
)
def test_is_causal_must_be_a_python_bool(value, type_name):
  q, k, v = qkv(HEADS["gqa"], 5, 7)
  message = rf"is_causal must be a Python bool .*got {type_name}"
  with pytest.raises(TypeError, match=message):
    tj.attention(q, k, v, is_causal=value)
  with pytest.raises(TypeError, match=message):
    tj.attention_weights(q, k, is_causal=value)


def test_a_traced_is_causal_is_refused():
  q, k, v = qkv(HEADS["gqa"], 5, 7)
  with pytest.raises(TypeError, match=r"is_causal must be a Python bool .*use mask="):
    jax.jit(lambda flag: tj.attention(q, k, v, is_causal=flag))(True)
