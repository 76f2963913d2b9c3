"""Autoregressive decoding with a KV cache: greedy, temperature and top-k sampling.

Dimension key: B batch, T prompt length, M new tokens, S source length, V vocabulary.

The prompt is prefilled in one call, then one token per step inside
`jax.lax.fori_loop`. Everything runs in one jitted function, compiled once per
(model structure, shapes, max_new_tokens, greedy or not); temperature and top_k are
traced, so changing them does not recompile. The model runs in eval mode (no
dropout) on a copy; the caller's model is left as it was.

A model qualifies by duck typing: `init_cache(...)` and `extend(tokens_BT, cache)
-> (logits_BTV, cache)`, as `GPT2` and `EncoderDecoderTransformer` provide.
"""

import functools
import math
import numbers

import jax
import jax.numpy as jnp

from tfmr_jax.models.parts import check_token_range
from tfmr_jax.nn import state as model_state
from tfmr_jax.ops.guards import check_positive, check_rank


def _check_tokens(name: str, tokens, vocab_size: int):
  """int [B, T] ids in [0, vocab_size) (the range is checked on concrete arrays) -> int32."""
  check_rank(name, tokens, 2, "[B, T]")
  if not jnp.issubdtype(jnp.result_type(tokens), jnp.integer):
    raise TypeError(f"{name} must be integer token ids, got dtype {jnp.result_type(tokens)}")
  check_token_range(name, tokens, vocab_size)
  return jnp.asarray(tokens, jnp.int32)


def check_sampling_options(*, max_new_tokens: int, temperature, top_k: int | None) -> float:
  """Raise ValueError unless max_new_tokens > 0, temperature is a finite real number >= 0
  (any real type: float, int, np.float32) and top_k is None or a positive int; returns
  the temperature as a float. `generate` also checks top_k <= V and the max_len."""
  check_positive("max_new_tokens", max_new_tokens)
  if (
    not isinstance(temperature, numbers.Real)
    or isinstance(temperature, bool)
    or not math.isfinite(temperature)
    or temperature < 0
  ):
    raise ValueError(f"temperature must be a finite number >= 0 (0 = greedy), got {temperature!r}")
  if top_k is not None:
    check_positive("top_k", top_k)
  return float(temperature)


def _check_sampling(temperature, top_k, rng, vocab_size: int) -> bool:
  """Validate the sampling options (max_new_tokens is checked before); True for greedy."""
  temperature = check_sampling_options(max_new_tokens=1, temperature=temperature, top_k=top_k)
  if top_k is not None and top_k > vocab_size:
    raise ValueError(f"top_k={top_k} must lie in [1, vocab_size={vocab_size}]")
  greedy = temperature == 0
  if not greedy and rng is None:
    raise ValueError(f"temperature={temperature} samples, so rng (a jax.random key) is required")
  return greedy


def _next_token(logits_BV, rng, temperature, top_k, *, greedy: bool):
  """Token ids [B]: argmax, or a sample from softmax(logits / temperature) over the top k.

  top_k is a traced int in [1, V] (V keeps every token); ties with the k-th logit are kept.
  """
  if greedy:
    return jnp.argmax(logits_BV, axis=-1).astype(jnp.int32)
  logits_BV = logits_BV.astype(jnp.float32) / temperature
  V = logits_BV.shape[-1]
  kth_B1 = jax.lax.dynamic_slice_in_dim(jnp.sort(logits_BV, axis=-1), V - top_k, 1, axis=1)
  logits_BV = jnp.where(logits_BV < kth_B1, -jnp.inf, logits_BV)
  return jax.random.categorical(rng, logits_BV, axis=-1).astype(jnp.int32)


def _decode_loop(model, cache, first_BT, rng, temperature, top_k, *, num_tokens, greedy):
  """Prefill `first_BT`, then sample `num_tokens` tokens one at a time. Returns [B, num_tokens]."""
  B = first_BT.shape[0]
  logits_BTV, cache = model.extend(first_BT, cache)
  rng, key = jax.random.split(rng)
  token_B = _next_token(logits_BTV[:, -1], key, temperature, top_k, greedy=greedy)
  out_BM = jnp.zeros((B, num_tokens), jnp.int32).at[:, 0].set(token_B)

  def step(i, carry):
    out_BM, cache, rng = carry
    previous_B1 = jax.lax.dynamic_slice_in_dim(out_BM, i - 1, 1, axis=1)
    logits_B1V, cache = model.extend(previous_B1, cache)
    rng, key = jax.random.split(rng)
    token_B = _next_token(logits_B1V[:, 0], key, temperature, top_k, greedy=greedy)
    return jax.lax.dynamic_update_slice_in_dim(out_BM, token_B[:, None], i, axis=1), cache, rng

  out_BM, _, _ = jax.lax.fori_loop(1, num_tokens, step, (out_BM, cache, rng))
  return out_BM


def _eval_model(graphdef, params, rest):
  model = model_state.merge(graphdef, params, rest)
  model.eval()
  return model


@functools.partial(jax.jit, static_argnames=("graphdef", "max_new_tokens", "greedy"))
def _generate(
  graphdef, params, rest, prompt_BT, rng, temperature, top_k, *, max_new_tokens, greedy
):
  model = _eval_model(graphdef, params, rest)
  B, T = prompt_BT.shape
  cache = model.init_cache(B, T + max_new_tokens)
  new_BM = _decode_loop(
    model, cache, prompt_BT, rng, temperature, top_k, num_tokens=max_new_tokens, greedy=greedy
  )
  return jnp.concatenate([prompt_BT, new_BM], axis=1)


@functools.partial(jax.jit, static_argnames=("graphdef", "max_new_tokens", "greedy"))
def _generate_seq2seq(
  graphdef,
  params,
  rest,
  src_BS,
  src_valid_BS,
  bos_B1,
  rng,
  temperature,
  top_k,
  *,
  max_new_tokens,
  greedy,
):
  model = _eval_model(graphdef, params, rest)
  memory_BSD = model.encode(src_BS, src_valid_BS)
  cache = model.init_cache(memory_BSD, src_valid_BS, max_len=max_new_tokens)
  new_BM = _decode_loop(
    model, cache, bos_B1, rng, temperature, top_k, num_tokens=max_new_tokens, greedy=greedy
  )
  return jnp.concatenate([bos_B1, new_BM], axis=1)


def _traced_options(rng, temperature, top_k, vocab_size: int):
  """(rng, temperature, top_k) as arrays; no rng (greedy) becomes a dummy key, no top_k V."""
  rng = jax.random.key(0) if rng is None else rng
  return rng, jnp.float32(temperature), jnp.int32(vocab_size if top_k is None else top_k)


def generate(
  model,
  prompt_BT,
  *,
  max_new_tokens: int,
  temperature: float = 0.0,
  top_k: int | None = None,
  rng=None,
):
  """Continue `prompt_BT` by `max_new_tokens` tokens. Returns [B, T + M] int32, prompt first.

  Args:
    model: a decoder-only LM such as `GPT2` (`config.max_len`, `config.vocab_size`,
      `init_cache`, `extend`).
    prompt_BT: int token ids; every row has the same length T (no padding).
    max_new_tokens: M > 0, with T + M <= the model's max_len.
    temperature: 0 = greedy (argmax); > 0 samples from softmax(logits / temperature).
    top_k: sample only among the k most likely tokens, 1 <= k <= V.
    rng: jax.random key, required when temperature > 0.
  """
  max_len, vocab_size = model.config.max_len, model.config.vocab_size
  prompt_BT = _check_tokens("prompt_BT", prompt_BT, vocab_size)
  check_positive("max_new_tokens", max_new_tokens)
  T = prompt_BT.shape[1]
  check_positive("prompt length T", T)
  if T + max_new_tokens > max_len:
    raise ValueError(
      f"prompt length T={T} + max_new_tokens={max_new_tokens} exceeds the model's max_len={max_len}"
    )
  greedy = _check_sampling(temperature, top_k, rng, vocab_size)
  parts = model_state.split(model)
  options = _traced_options(rng, temperature, top_k, vocab_size)
  return _generate(*parts, prompt_BT, *options, max_new_tokens=max_new_tokens, greedy=greedy)


def generate_seq2seq(
  model,
  src_BS,
  *,
  max_new_tokens: int,
  bos_id: int,
  src_valid_BS=None,
  temperature: float = 0.0,
  top_k: int | None = None,
  rng=None,
):
  """Translate `src_BS`: the decoder starts from `bos_id`. Returns [B, 1 + M] int32, bos first.

  Args:
    model: an `EncoderDecoderTransformer` (`config.max_len`, `config.vocab_size`,
      `config.tgt_vocab_size`, `encode`, `init_cache`, `extend`).
    src_BS: int source ids, S <= max_len. src_valid_BS: bool, True = real token.
    max_new_tokens: M > 0, M <= max_len (the decoder reads bos and M - 1 outputs).
    bos_id: the start token, 0 <= bos_id < V.
    temperature, top_k, rng: as in `generate`.
  """
  max_len, vocab_size = model.config.max_len, model.config.tgt_vocab_size
  src_BS = _check_tokens("src_BS", src_BS, model.config.vocab_size)
  check_positive("max_new_tokens", max_new_tokens)
  if max_new_tokens > max_len:
    raise ValueError(f"max_new_tokens={max_new_tokens} exceeds the model's max_len={max_len}")
  if not isinstance(bos_id, int) or isinstance(bos_id, bool) or not 0 <= bos_id < vocab_size:
    raise ValueError(f"bos_id must be an int in [0, tgt_vocab_size={vocab_size}), got {bos_id!r}")
  greedy = _check_sampling(temperature, top_k, rng, vocab_size)
  if src_valid_BS is not None:
    src_valid_BS = jnp.asarray(src_valid_BS)
    if src_valid_BS.dtype != jnp.bool_ or src_valid_BS.shape != src_BS.shape:
      raise ValueError(
        f"src_valid_BS must be bool of shape {src_BS.shape}, got {src_valid_BS.dtype} "
        f"{src_valid_BS.shape}"
      )
  bos_B1 = jnp.full((src_BS.shape[0], 1), bos_id, jnp.int32)
  parts = model_state.split(model)
  options = _traced_options(rng, temperature, top_k, vocab_size)
  return _generate_seq2seq(
    *parts,
    src_BS,
    src_valid_BS,
    bos_B1,
    *options,
    max_new_tokens=max_new_tokens,
    greedy=greedy,
  )
