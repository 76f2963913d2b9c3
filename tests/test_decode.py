"""decode.generate / generate_seq2seq against full forward passes re-run at every step."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from tfmr_jax import decode
from tfmr_jax.models import GPT2, EncoderDecoderTransformer, TransformerConfig

V = 23


@pytest.fixture(scope="module")
def gpt():
  config = TransformerConfig.gpt(
    vocab_size=V, max_len=16, num_layers=2, num_heads=3, d_model=12, dropout=0.2
  )
  return GPT2(config, rngs=nnx.Rngs(0))


@pytest.fixture(scope="module")
def s2s():
  config = TransformerConfig(
    vocab_size=11,
    tgt_vocab_size=V,
    num_layers=1,
    num_decoder_layers=2,
    d_model=12,
    num_heads=3,
    d_ff=20,
    max_len=16,
    dropout=0.2,
  )
  return EncoderDecoderTransformer(config, rngs=nnx.Rngs(1))


def eval_forward(model):
  """The model's full forward pass in eval mode, jitted, without touching `model`."""
  graphdef, state = nnx.split(model)

  @jax.jit
  def forward(*args):
    copy = nnx.merge(graphdef, state)
    copy.eval()
    return copy(*args)

  return forward


@pytest.fixture(scope="module")
def gpt_forward(gpt):
  return eval_forward(gpt)


# Tests share prompt shapes and lengths where they can, so that they share compilations.
M = 8


@pytest.mark.parametrize("prompt_len", [1, 3])
def test_greedy_equals_argmax_of_full_forward(gpt, gpt_forward, prompt_len):
  prompt = jax.random.randint(jax.random.key(prompt_len), (2, prompt_len), 0, V)
  out = np.asarray(decode.generate(gpt, prompt, max_new_tokens=M))
  assert out.shape == (2, prompt_len + M)
  # Full causal forward passes, re-run each step over one fixed-size buffer (compiled once);
  # causality means the zeros after position t do not change the logits at t.
  forward = gpt_forward
  want = np.zeros((2, prompt_len + M), np.int32)
  want[:, :prompt_len] = prompt
  for t in range(prompt_len, prompt_len + M):
    want[:, t] = np.argmax(np.asarray(forward(jnp.asarray(want)))[:, t - 1], axis=-1)
  np.testing.assert_array_equal(out, want)
  assert gpt.layers[0].attention_residual.dropout.deterministic is False  # caller's mode kept


def test_greedy_seq2seq_equals_argmax_of_full_forward(s2s):
  src = jax.random.randint(jax.random.key(0), (2, 7), 0, 11)
  valid = jnp.arange(7)[None, :] < jnp.array([[7], [5]])
  bos = 1
  out = np.asarray(
    decode.generate_seq2seq(s2s, src, max_new_tokens=M, bos_id=bos, src_valid_BS=valid)
  )
  assert out.shape == (2, 1 + M)
  forward = eval_forward(s2s)
  want = np.zeros((2, 1 + M), np.int32)
  want[:, 0] = bos
  for t in range(1, 1 + M):
    logits = np.asarray(forward(src, jnp.asarray(want[:, :M]), valid))  # fixed-size buffer
    want[:, t] = np.argmax(logits[:, t - 1], axis=-1)
  np.testing.assert_array_equal(out, want)


def test_sampling(gpt):
  prompt = jnp.array([[3, 1, 4], [1, 5, 9]])
  greedy = decode.generate(gpt, prompt, max_new_tokens=M)
  top1 = decode.generate(
    gpt, prompt, max_new_tokens=M, temperature=1.0, top_k=1, rng=jax.random.key(0)
  )
  np.testing.assert_array_equal(top1, greedy)
  a = decode.generate(gpt, prompt, max_new_tokens=M, temperature=1.0, rng=jax.random.key(1))
  b = decode.generate(gpt, prompt, max_new_tokens=M, temperature=1.0, rng=jax.random.key(1))
  c = decode.generate(gpt, prompt, max_new_tokens=M, temperature=1.0, rng=jax.random.key(2))
  np.testing.assert_array_equal(a, b)
  assert not np.array_equal(a, c)
  np.testing.assert_array_equal(a[:, :3], prompt)


def test_top_k_samples_stay_in_top_k(gpt, gpt_forward):
  prompt = jnp.array([[2, 7, 3], [8, 1, 1]])
  out = np.asarray(
    decode.generate(gpt, prompt, max_new_tokens=M, temperature=5.0, top_k=3, rng=jax.random.key(3))
  )
  logits = np.asarray(gpt_forward(jnp.asarray(out)))  # logits[:, t] predicts token t + 1
  for t in range(2, out.shape[1] - 1):
    top3 = np.argsort(logits[:, t], axis=-1)[:, -3:]
    assert all(out[b, t + 1] in top3[b] for b in range(2)), t


def test_compiles_once(gpt):
  """temperature, top_p, the keys and the prompt's ids and padding are traced; top_k is
  static (jax.lax.top_k needs it), so it is the same in both calls."""
  prompt = jnp.array([[5, 6, 7], [8, 9, 10]])
  decode.generate(gpt, prompt, max_new_tokens=M, temperature=0.7, top_k=4, rng=jax.random.key(0))
  before = decode._generate._cache_size()
  decode.generate(
    gpt,
    prompt + 1,
    max_new_tokens=M,
    temperature=0.9,
    top_k=4,
    top_p=0.5,
    rng=jax.random.key(1),
    prompt_valid_BT=np.array([[False, True, True], [True, True, True]]),
  )
  assert decode._generate._cache_size() == before


@pytest.mark.parametrize(
  "kwargs, message",
  [
    (dict(max_new_tokens=0), "max_new_tokens must be a positive int, got 0"),
    (dict(max_new_tokens=13), r"T=4 \+ max_new_tokens=13 exceeds the model's max_len=16"),
    (dict(max_new_tokens=2, top_k=0), "top_k must be a positive int, got 0"),
    (dict(max_new_tokens=2, top_k=24), r"top_k=24 must lie in \[1, vocab_size=23\]"),
    (dict(max_new_tokens=2, temperature=-1.0), "temperature must be a finite number >= 0"),
    (dict(max_new_tokens=2, temperature=float("nan")), "temperature must be a finite number"),
    (dict(max_new_tokens=2, temperature=float("inf")), "temperature must be a finite number"),
    (dict(max_new_tokens=2, temperature=1.0), "rng .* is required"),
  ],
)
def test_generate_bad_arguments(gpt, kwargs, message):
  with pytest.raises(ValueError, match=message):
    decode.generate(gpt, jnp.zeros((1, 4), jnp.int32), **kwargs)


def test_temperature_of_any_real_type_is_accepted(gpt):
  """np.float32(0.7) (e.g. read from an array) samples like 0.7."""
  prompt = jnp.zeros((1, 4), jnp.int32)
  expected = decode.generate(gpt, prompt, max_new_tokens=3, temperature=0.7, rng=jax.random.key(0))
  for temperature in (np.float32(0.7), np.float64(0.7)):
    out = decode.generate(
      gpt, prompt, max_new_tokens=3, temperature=temperature, rng=jax.random.key(0)
    )
    np.testing.assert_array_equal(out, expected)
  greedy = decode.generate(gpt, prompt, max_new_tokens=3, temperature=np.int64(0))
  np.testing.assert_array_equal(greedy, decode.generate(gpt, prompt, max_new_tokens=3))


def test_generate_seq2seq_bad_arguments(s2s):
  src = jnp.zeros((1, 4), jnp.int32)
  with pytest.raises(ValueError, match=r"bos_id must be an int in \[0, tgt_vocab_size=23\)"):
    decode.generate_seq2seq(s2s, src, max_new_tokens=2, bos_id=23)
  with pytest.raises(
    ValueError, match=r"src_BS ids must lie in \[0, vocab_size=11\), got min 0, max 11"
  ):
    decode.generate_seq2seq(s2s, src.at[0, 1].set(11), max_new_tokens=2, bos_id=0)
  with pytest.raises(ValueError, match="max_new_tokens=17 exceeds the model's max_len=16"):
    decode.generate_seq2seq(s2s, src, max_new_tokens=17, bos_id=0)
  with pytest.raises(TypeError, match="prompt_BT must be integer token ids"):
    decode.generate(
      GPT2(
        TransformerConfig.gpt(vocab_size=5, max_len=4, num_layers=1, num_heads=1, d_model=2),
        rngs=nnx.Rngs(0),
      ),
      jnp.zeros((1, 2)),
      max_new_tokens=1,
    )


def test_sampling_follows_the_documented_keys_and_top_p_1_filters_nothing(gpt, gpt_forward):
  """Token i of row b is categorical(fold_in(split(rng, B)[b], i), logits / temperature)
  of the full forward pass's logits, with top_p = 1 (the default) as with top_p = 1.0
  given: the nucleus filter at 1 drops nothing, not even a token of tiny probability."""
  prompt = jnp.array([[3, 1, 4], [1, 5, 9]])
  temperature, rng = 1.0, jax.random.key(11)
  out = np.asarray(
    decode.generate(gpt, prompt, max_new_tokens=M, temperature=temperature, top_p=1.0, rng=rng)
  )
  plain = decode.generate(gpt, prompt, max_new_tokens=M, temperature=temperature, rng=rng)
  np.testing.assert_array_equal(out, plain)
  keys_B = jax.random.split(rng, 2)
  want = np.zeros((2, 3 + M), np.int32)
  want[:, :3] = prompt
  for i in range(M):
    logits_BV = np.asarray(gpt_forward(jnp.asarray(want)))[:, 3 + i - 1] / temperature
    for b in range(2):
      key = jax.random.fold_in(keys_B[b], i)
      want[b, 3 + i] = jax.random.categorical(key, jnp.asarray(logits_BV[b]))
  np.testing.assert_array_equal(out, want)


def old_top_k_filter(logits_BV, k):
  """The full-sort top-k that jax.lax.top_k replaced: threshold at the k-th largest."""
  V = logits_BV.shape[-1]
  kth_B1 = jax.lax.dynamic_slice_in_dim(jnp.sort(logits_BV, axis=-1), V - k, 1, axis=1)
  return jnp.where(logits_BV < kth_B1, -jnp.inf, logits_BV)


@pytest.mark.parametrize("k", [1, 5, 97, 1000])
def test_lax_top_k_filter_equals_the_full_sort(k):
  logits_BV = jax.random.normal(jax.random.key(k), (4, 1009)) * 3  # ties have probability 0
  filtered = decode.filter_logits(logits_BV, top_k=k)
  np.testing.assert_array_equal(filtered, old_top_k_filter(logits_BV, k))
  assert (np.isfinite(np.asarray(filtered)).sum(axis=1) == min(k, 1009)).all()
  keys = jax.random.split(jax.random.key(0), 8)
  for key in keys:
    np.testing.assert_array_equal(
      jax.random.categorical(key, filtered),
      jax.random.categorical(key, old_top_k_filter(logits_BV, k)),
    )


def nucleus_oracle(logits_V, top_p):
  """NumPy: the kept tokens, the most likely first until their probability reaches top_p."""
  p_V = np.exp(logits_V - logits_V.max())
  p_V /= p_V.sum()
  order = np.argsort(-p_V)
  kept, mass = [], 0.0
  for token in order:
    if mass >= top_p:
      break
    kept.append(token)
    mass += p_V[token]
  return set(kept)


filter_jit = jax.jit(decode.filter_logits, static_argnames="top_k")  # top_p traced: 2 compiles


@pytest.mark.parametrize("top_k", [None, 40])
@pytest.mark.parametrize("top_p", [1e-6, 0.3, 0.9, 0.999])
def test_top_p_keeps_the_nucleus(top_p, top_k):
  logits_BV = np.asarray(jax.random.normal(jax.random.key(3), (3, 101)) * 2, np.float64)
  filtered = np.asarray(filter_jit(jnp.asarray(logits_BV, jnp.float32), top_k=top_k, top_p=top_p))
  for b in range(3):
    row_V = logits_BV[b].copy()
    if top_k is not None:
      row_V[np.argsort(-row_V)[top_k:]] = -np.inf
    assert set(np.flatnonzero(np.isfinite(filtered[b]))) == nucleus_oracle(row_V, top_p), b
    kept = np.isfinite(filtered[b])
    np.testing.assert_allclose(filtered[b][kept], logits_BV[b][kept], rtol=1e-6)


EXTEND_CALLS = []


class CountingGPT2(GPT2):
  """GPT2 that records each `extend` it runs (at run time, inside the compiled loop)."""

  def extend(self, tokens_BT, cache, **kwargs):
    jax.debug.callback(lambda: EXTEND_CALLS.append(tokens_BT.shape[1]))
    return super().extend(tokens_BT, cache, **kwargs)


def test_the_loop_stops_once_every_row_has_ended():
  config = TransformerConfig.gpt(vocab_size=V, max_len=16, num_layers=1, num_heads=1, d_model=4)
  model = CountingGPT2(config, rngs=nnx.Rngs(0))
  prompt = jnp.array([[3, 1, 4]])
  greedy = np.asarray(decode.generate(model, prompt, max_new_tokens=M))
  jax.effects_barrier()
  assert EXTEND_CALLS == [3] + [1] * (M - 1)  # prefill, then M - 1 steps
  EXTEND_CALLS.clear()
  eos = int(greedy[0, 3])  # the first new token ends the only row
  out = np.asarray(decode.generate(model, prompt, max_new_tokens=M, eos_id=eos))
  jax.effects_barrier()
  np.testing.assert_array_equal(out[0, 3:], [eos] * M)
  assert EXTEND_CALLS == [3]  # the prefill only: no step ran
  assert decode.lengths_to_eos(out[:, 3:], eos).tolist() == [0]
