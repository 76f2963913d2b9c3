"""Bad arguments raise one clear error that names the field and the rule."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import tfmr_jax as tj

q = jnp.zeros((2, 5, 6, 11))
k = v = jnp.zeros((2, 7, 3, 11))


@pytest.mark.parametrize(
  "call,error,match",
  [
    (
      lambda: tj.attention(q[0], k, v),
      ValueError,
      r"q_BTNH must have rank 4 \[B, T, N, H\], got shape \(5, 6, 11\)",
    ),
    (lambda: tj.attention(q, k[..., 0], v), ValueError, r"k_BSKH must have rank 4"),
    (
      lambda: tj.attention(q, k, v[:, :6]),
      ValueError,
      r"k_BSKH and v_BSKH must have the same shape",
    ),
    (
      lambda: tj.attention(q, jnp.zeros((2, 7, 4, 11)), jnp.zeros((2, 7, 4, 11))),
      ValueError,
      r"query heads N=6 must be a multiple of kv heads K=4",
    ),
    (
      lambda: tj.attention(q, jnp.zeros((2, 7, 3, 12)), jnp.zeros((2, 7, 3, 12))),
      ValueError,
      r"must agree on batch B and head dim H",
    ),
    (
      lambda: tj.attention(q, k, v, mask=jnp.ones((1, 1, 5, 7))),
      TypeError,
      r"mask must be a bool array \(True = may attend\), got dtype float32",
    ),
    (
      lambda: tj.attention(q, k, v, mask=jnp.ones((1, 1, 7, 5), bool)),
      ValueError,
      r"mask of shape \(1, 1, 7, 5\) does not broadcast to \[B, N, T, S\] = \(2, 6, 5, 7\)",
    ),
    (
      lambda: tj.attention(q, k, v, bias=jnp.ones((3, 1, 5, 7))),
      ValueError,
      r"bias of shape \(3, 1, 5, 7\)",
    ),
    (
      lambda: tj.attention(q.astype(jnp.int32), k, v),
      TypeError,
      r"q_BTNH must have a floating dtype, got int32",
    ),
    (
      lambda: tj.attention_weights(q, k, mask=jnp.ones((5, 7), jnp.int32)),
      TypeError,
      r"mask must be a bool",
    ),
    (
      lambda: tj.attention(q, k[:, :3], v[:, :3], is_causal=True),
      ValueError,
      r"is_causal=True needs S >= T \(queries are the last T of S keys\), got T=5, S=3",
    ),
    (
      lambda: tj.attention(q, k, v, is_causal=1),
      TypeError,
      r"is_causal must be a Python bool .*got int 1",
    ),
    (
      lambda: tj.attention(q[..., :0], k[..., :0], v[..., :0]),
      ValueError,
      r"head dim H must be at least 1, got q_BTNH \(2, 5, 6, 0\)",
    ),
    *(
      (
        lambda s=s, i=i: tj.attention(q, k, v, scale=s, implementation=i),
        ValueError,
        r"scale must be a finite number \(the logit scale\) or None, got",
      )
      for s in (float("nan"), float("inf"), np.float32("-inf"), "0.1")
      for i in ("reference", "tiled")
    ),
    (lambda: tj.causal_mask(-3), ValueError, r"T must be a positive int, got -3"),
    (lambda: tj.causal_mask(5, 3), ValueError, r"causal_mask needs S >= T"),
    (
      lambda: tj.padding_mask(np.array([3, 9]), 7),
      ValueError,
      r"lengths_B must lie in \[0, S=7\], got \[3, 9\]",
    ),
    (lambda: tj.padding_mask(np.array([3, 4])), ValueError, r"S \(the padded length\) is required"),
    (
      lambda: tj.padding_mask(np.ones((2, 7), np.float32)),
      TypeError,
      r"int lengths_B or bool valid_BS",
    ),
    (
      lambda: tj.combine_masks(tj.causal_mask(3), jnp.ones((1, 1, 3, 3))),
      TypeError,
      r"mask 1 must be bool",
    ),
    (
      lambda: tj.sinusoidal_positions(0, 8),
      ValueError,
      r"num_positions must be a positive int, got 0",
    ),
    (lambda: tj.sinusoidal_positions(8, -2), ValueError, r"d_model must be a positive int, got -2"),
    (
      lambda: tj.apply_rope(jnp.zeros((1, 4, 2, 5)), jnp.arange(4)),
      ValueError,
      r"even head_dim, got 5",
    ),
  ],
)
def test_bad_input_raises_named_error(call, error, match):
  with pytest.raises(error, match=match):
    call()


@pytest.mark.parametrize("implementation", ["reference", "tiled", "xla"])
def test_no_key_at_all_gives_zeros_and_zero_gradient(implementation):
  # S = 0: every query row is empty, so the fully-masked-row rule gives zeros.
  q_ = jnp.ones((2, 5, 6, 11))
  k_ = v_ = jnp.ones((2, 0, 3, 11))

  def loss(q_):
    return tj.attention(q_, k_, v_, implementation=implementation).sum()

  np.testing.assert_array_equal(tj.attention(q_, k_, v_, implementation=implementation), 0.0)
  np.testing.assert_array_equal(jax.grad(loss)(q_), 0.0)


def test_a_mask_given_as_nested_lists_equals_the_array():
  rows = [[True, False, True, True, False, True, True]] * 5  # [T, S]
  want = tj.attention(q + 1.0, k + 1.0, v + 1.0, mask=jnp.asarray(rows))
  np.testing.assert_array_equal(tj.attention(q + 1.0, k + 1.0, v + 1.0, mask=rows), want)
  weights = tj.attention_weights(q + 1.0, k + 1.0, mask=rows)
  np.testing.assert_array_equal(weights[..., 1], 0.0)  # key 1 masked everywhere
