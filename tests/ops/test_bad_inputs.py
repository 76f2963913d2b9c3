"""Bad arguments raise one clear error that names the field and the rule."""

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
