"""LayerNorm with a bfloat16 compute dtype keeps its statistics in float32.

Dimension key: B batch, T positions, D model dim.

The input sits far from zero (mean about 1072, spread about 30, every value exact in
bfloat16): statistics summed in bfloat16 would be off by several units, moving every
output by about 0.1; in float32 the output is the float64 LayerNorm rounded once to
bfloat16.
"""

import jax.numpy as jnp
import numpy as np
from flax import nnx

from tfmr_jax.nn import MultiHeadAttention, layer_norm

D = 13


def test_layer_norm_statistics_are_float32_with_bfloat16_compute():
  offsets_D = 8.0 * np.arange(D)  # multiples of bfloat16's spacing (8) at 1024..2048
  x_BTD = np.stack([1024.0 + offsets_D, 1024.0 + offsets_D[::-1] * 2]).reshape(2, 1, D)
  assert np.array_equal(np.asarray(jnp.asarray(x_BTD, jnp.bfloat16), np.float64), x_BTD)
  norm = layer_norm(D, epsilon=1e-5, dtype=jnp.bfloat16, rngs=nnx.Rngs(0))
  assert norm.scale[...].dtype == jnp.float32
  out_BTD = norm(jnp.asarray(x_BTD, jnp.bfloat16))
  assert out_BTD.dtype == jnp.bfloat16
  mean = x_BTD.mean(-1, keepdims=True)
  ref_BTD = (x_BTD - mean) / np.sqrt(((x_BTD - mean) ** 2).mean(-1, keepdims=True) + 1e-5)
  # one rounding to bfloat16: at most half a unit in the last place (2^-8 relative)
  np.testing.assert_allclose(np.asarray(out_BTD, np.float64), ref_BTD, rtol=2**-8, atol=0)


def test_attention_module_computes_in_its_dtype_with_float32_parameters():
  mha = MultiHeadAttention(10, 2, dtype=jnp.bfloat16, rngs=nnx.Rngs(0))
  assert mha.query.kernel[...].dtype == jnp.float32
  x_BTD = jnp.ones((2, 3, 10), jnp.float32)
  assert mha(x_BTD).dtype == jnp.bfloat16
  assert mha.init_cache(2, 5).k_BSKH.dtype == jnp.bfloat16
