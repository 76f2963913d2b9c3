"""Autoregressive decoding with a KV cache: greedy, temperature, top-k and top-p sampling.

Dimension key: B batch, T prompt length, M new tokens, S source length, V vocabulary,
K top-k candidates.

The prompt is prefilled in one call, then one token per step inside a
`jax.lax.while_loop`, which stops early once every row has produced `eos_id`. Everything
runs in one jitted function, compiled once per (model structure, shapes, max_new_tokens,
greedy or not, top_k, eos_id); temperature and top_p are traced, so changing them does
not recompile (top_k is static: `jax.lax.top_k` needs it). The model runs in eval mode
(no dropout) on a copy; the caller's model is left as it was.

Sampling order (as Hugging Face's): logits / temperature, then top-k, then top-p over
what is left. Each row has its own key, so a row samples the same tokens in a batch as
alone: new token i of row b is drawn with `jax.random.fold_in(keys_B[b], i)`, where
`keys_B = jax.random.split(rng, B)` (or `rng` itself when it holds one key per row).

A batch of prompts of different lengths is left-padded (`prompt_valid_BT`, as
`tasks.encode_batch` makes it): pad tokens are never seen as keys and each row's
positions start at 0 at its first real token, so every row decodes as it would alone.

A model qualifies by duck typing: `init_cache(...)` and `extend(tokens_BT, cache)
-> (logits_BTV, cache)`, as `GPT2` and `EncoderDecoderTransformer` provide; `generate`
also passes `valid_BT=` to `extend` at the prefill, as `GPT2.extend` takes it.
"""

import functools
import math
import numbers

import jax
import jax.numpy as jnp
import numpy as np

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


def check_sampling_options(
  *, max_new_tokens: int, temperature, top_k: int | None, top_p=1.0
) -> float:
  """Raise ValueError unless max_new_tokens > 0, temperature is a finite real number >= 0
  (any real type: float, int, np.float32), top_k is None or a positive int and top_p a
  number in (0, 1]; returns the temperature as a float. `generate` also checks top_k <= V
  and the max_len."""
  check_positive("max_new_tokens", max_new_tokens)
  if not _is_real(temperature) or not math.isfinite(temperature) or temperature < 0:
    raise ValueError(f"temperature must be a finite number >= 0 (0 = greedy), got {temperature!r}")
  if top_k is not None:
    check_positive("top_k", top_k)
  if not _is_real(top_p) or not 0 < top_p <= 1:  # NaN fails the comparison too
    raise ValueError(f"top_p must be a number in (0, 1] (1 = no nucleus filter), got {top_p!r}")
  return float(temperature)


def _is_real(value) -> bool:
  return isinstance(value, numbers.Real) and not isinstance(value, bool)


def _check_sampling(temperature, top_k, top_p, rng, vocab_size: int) -> bool:
  """Validate the sampling options (max_new_tokens is checked before); True for greedy."""
  temperature = check_sampling_options(
    max_new_tokens=1, temperature=temperature, top_k=top_k, top_p=top_p
  )
  if top_k is not None and top_k > vocab_size:
    raise ValueError(f"top_k={top_k} must lie in [1, vocab_size={vocab_size}]")
  greedy = temperature == 0
  if not greedy and rng is None:
    raise ValueError(f"temperature={temperature} samples, so rng (a jax.random key) is required")
  return greedy


def _check_eos(eos_id, vocab_size: int) -> None:
  if eos_id is not None and (
    not isinstance(eos_id, numbers.Integral)
    or isinstance(eos_id, bool)
    or not 0 <= eos_id < vocab_size
  ):
    raise ValueError(
      f"eos_id must be None or an int in [0, vocab_size={vocab_size}), got {eos_id!r}"
    )


def _check_prompt_valid(prompt_valid_BT, shape: tuple[int, int]) -> np.ndarray:
  """bool [B, T], each row left-padded (pad tokens first, then at least one real token)."""
  if prompt_valid_BT is None:
    return np.ones(shape, bool)
  valid_BT = np.asarray(prompt_valid_BT)
  if valid_BT.dtype != np.bool_ or valid_BT.shape != shape:
    raise ValueError(
      f"prompt_valid_BT must be bool of the prompt's shape {shape} (True = real token), got "
      f"{valid_BT.dtype} {valid_BT.shape}"
    )
  for b, row_T in enumerate(valid_BT):
    if not row_T.any():
      raise ValueError(f"prompt_valid_BT row {b} has no real token: every prompt needs one")
    if not row_T[np.argmax(row_T) :].all():
      raise ValueError(
        f"prompt_valid_BT row {b} = {row_T.astype(int).tolist()} is not left-padded: pad "
        "tokens (False) must all come before the real ones (True)"
      )
  return valid_BT


def _row_keys(rng, B: int):
  """One typed key per row [B]: `jax.random.split(rng, B)` of one key, or `rng` if it is [B]."""
  if rng is None:
    rng = jax.random.key(0)  # greedy: never drawn from
  if not jax.dtypes.issubdtype(jnp.result_type(rng), jax.dtypes.prng_key):
    rng = jax.random.wrap_key_data(jnp.asarray(rng, jnp.uint32))  # a raw uint32 PRNGKey
  if rng.shape == ():
    return jax.random.split(rng, B)
  if rng.shape != (B,):
    raise ValueError(f"rng must be one key or one key per row, shape (B={B},), got {rng.shape}")
  return rng


def filter_logits(logits_BV, *, top_k: int | None = None, top_p=1.0):
  """float32 logits_BV with the tokens outside the top k and outside the nucleus set to -inf.

  top_k: a static int, the k most likely tokens (`jax.lax.top_k`, no full sort); None keeps
  all V. top_p: a float in (0, 1], traceable: of the tokens left, keep the most likely ones
  until their probability (softmax of these logits) reaches top_p; the most likely token is
  always kept, and top_p = 1 keeps every token exactly (then nothing is sorted). Ties with the
  last kept logit are kept.
  """
  check_rank("logits_BV", logits_BV, 2, "[B, V]")
  logits_BV = jnp.asarray(logits_BV, jnp.float32)
  V = logits_BV.shape[-1]
  if top_k is not None and top_k < V:
    top_BK = jax.lax.top_k(logits_BV, top_k)[0]  # descending
    logits_BV = jnp.where(logits_BV < top_BK[:, -1:], -jnp.inf, logits_BV)

    def descending():
      return top_BK
  else:

    def descending():
      return -jnp.sort(-logits_BV, axis=-1)

  def nucleus(logits_BV):
    sorted_BK = descending()
    probs_BK = jax.nn.softmax(sorted_BK, axis=-1)
    cumulative_BK = jnp.cumsum(probs_BK, axis=-1)  # the mass of the tokens before each:
    before_BK = jnp.concatenate([jnp.zeros_like(probs_BK[:, :1]), cumulative_BK[:, :-1]], axis=-1)
    kept_B1 = jnp.sum(before_BK < top_p, axis=-1, keepdims=True)  # at least 1: before_BK[0] = 0
    threshold_B1 = jnp.take_along_axis(sorted_BK, kept_B1 - 1, axis=-1)
    return jnp.where(logits_BV < threshold_B1, -jnp.inf, logits_BV)

  return jax.lax.cond(jnp.asarray(top_p) < 1, nucleus, lambda x_BV: x_BV, logits_BV)


def _next_token(logits_BV, keys_B, step, temperature, top_p, *, greedy: bool, top_k):
  """Token ids [B]: argmax, or row b's sample with key fold_in(keys_B[b], step) from
  softmax(logits / temperature) filtered by `filter_logits(top_k, top_p)`."""
  if greedy:
    return jnp.argmax(logits_BV, axis=-1).astype(jnp.int32)
  logits_BV = filter_logits(logits_BV.astype(jnp.float32) / temperature, top_k=top_k, top_p=top_p)
  step_keys_B = jax.vmap(jax.random.fold_in, in_axes=(0, None))(keys_B, step)
  token_B = jax.vmap(jax.random.categorical)(step_keys_B, logits_BV)
  return token_B.astype(jnp.int32)


def _decode_loop(
  extend, cache, first_BT, first_valid_BT, keys_B, temperature, top_p, *, num_tokens, eos_id, **how
):
  """Prefill `first_BT`, then pick `num_tokens` tokens one at a time. Returns [B, num_tokens].

  extend(tokens_BT, cache, valid_BT or None) -> (logits_BTV, cache). After a row's first
  `eos_id` every later token of the row is eos_id; the loop stops once every row has one.
  `how`: greedy and top_k, as `_next_token` takes them.
  """
  B = first_BT.shape[0]
  pick = functools.partial(_next_token, keys_B=keys_B, temperature=temperature, top_p=top_p, **how)
  logits_BTV, cache = extend(first_BT, cache, first_valid_BT)
  token_B = pick(logits_BTV[:, -1], step=0)
  fill = 0 if eos_id is None else eos_id
  out_BM = jnp.full((B, num_tokens), fill, jnp.int32).at[:, 0].set(token_B)
  done_B = jnp.zeros((B,), jnp.bool_) if eos_id is None else token_B == eos_id

  def unfinished(carry):
    i, _, _, done_B = carry
    return (i < num_tokens) & ~jnp.all(done_B)

  def step(carry):
    i, out_BM, cache, done_B = carry
    previous_B1 = jax.lax.dynamic_slice_in_dim(out_BM, i - 1, 1, axis=1)
    logits_B1V, cache = extend(previous_B1, cache, None)
    token_B = pick(logits_B1V[:, 0], step=i)
    if eos_id is not None:
      token_B = jnp.where(done_B, eos_id, token_B)
      done_B = done_B | (token_B == eos_id)
    out_BM = jax.lax.dynamic_update_slice_in_dim(out_BM, token_B[:, None], i, axis=1)
    return i + 1, out_BM, cache, done_B

  carry = (jnp.int32(1), out_BM, cache, done_B)
  _, out_BM, _, _ = jax.lax.while_loop(unfinished, step, carry)
  return out_BM


def _eval_model(graphdef, params, rest):
  model = model_state.merge(graphdef, params, rest)
  model.eval()
  return model


_STATIC = ("graphdef", "max_new_tokens", "greedy", "top_k", "eos_id")


@functools.partial(jax.jit, static_argnames=_STATIC)
def _generate(
  graphdef,
  params,
  rest,
  prompt_BT,
  prompt_valid_BT,
  keys_B,
  temperature,
  top_p,
  *,
  max_new_tokens,
  greedy,
  top_k,
  eos_id,
):
  model = _eval_model(graphdef, params, rest)
  B, T = prompt_BT.shape
  cache = model.init_cache(B, T + max_new_tokens)

  def extend(tokens_BT, cache, valid_BT):
    return model.extend(tokens_BT, cache, valid_BT=valid_BT)

  new_BM = _decode_loop(
    extend,
    cache,
    prompt_BT,
    prompt_valid_BT,
    keys_B,
    temperature,
    top_p,
    num_tokens=max_new_tokens,
    greedy=greedy,
    top_k=top_k,
    eos_id=eos_id,
  )
  return jnp.concatenate([prompt_BT, new_BM], axis=1)


@functools.partial(jax.jit, static_argnames=_STATIC)
def _generate_seq2seq(
  graphdef,
  params,
  rest,
  src_BS,
  src_valid_BS,
  bos_B1,
  keys_B,
  temperature,
  top_p,
  *,
  max_new_tokens,
  greedy,
  top_k,
  eos_id,
):
  model = _eval_model(graphdef, params, rest)
  memory_BSD = model.encode(src_BS, src_valid_BS)
  cache = model.init_cache(memory_BSD, src_valid_BS, max_len=max_new_tokens)

  def extend(tokens_BT, cache, valid_BT):
    del valid_BT  # the decoder starts from bos in every row: no padding
    return model.extend(tokens_BT, cache)

  new_BM = _decode_loop(
    extend,
    cache,
    bos_B1,
    None,
    keys_B,
    temperature,
    top_p,
    num_tokens=max_new_tokens,
    greedy=greedy,
    top_k=top_k,
    eos_id=eos_id,
  )
  return jnp.concatenate([bos_B1, new_BM], axis=1)


def _traced_options(rng, B: int, temperature, top_p):
  """(keys_B, temperature, top_p) as arrays; no rng (greedy) becomes dummy keys."""
  return _row_keys(rng, B), jnp.float32(temperature), jnp.float32(top_p)


def _static_top_k(top_k: int | None, vocab_size: int) -> int | None:
  """top_k = V keeps every token: the same compilation as None."""
  return None if top_k is None or top_k >= vocab_size else int(top_k)


def generate(
  model,
  prompt_BT,
  *,
  max_new_tokens: int,
  temperature: float = 0.0,
  top_k: int | None = None,
  top_p: float = 1.0,
  rng=None,
  eos_id: int | None = None,
  prompt_valid_BT=None,
):
  """Continue `prompt_BT` by `max_new_tokens` tokens. Returns [B, T + M] int32, prompt first.

  Args:
    model: a decoder-only LM such as `GPT2` (`config.max_len`, `config.vocab_size`,
      `init_cache`, `extend(tokens_BT, cache, valid_BT=)`).
    prompt_BT: int token ids, T columns; rows shorter than T are left-padded (below).
    max_new_tokens: M > 0, with T + M <= the model's max_len.
    temperature: 0 = greedy (argmax); > 0 samples from softmax(logits / temperature).
    top_k: sample only among the k most likely tokens, 1 <= k <= V (static: each k
      compiles once).
    top_p: nucleus sampling, in (0, 1]: only among the most likely tokens whose
      probability reaches top_p (after top_k); 1 = off. Traced: changing it does not
      recompile.
    rng: jax.random key, required when temperature > 0: one key (split into one per row)
      or B keys, one per row.
    eos_id: end of text. After a row produces it, the row's later tokens are all eos_id,
      and decoding stops once every row has; `lengths_to_eos` counts each row's tokens
      before it. None: always M tokens.
    prompt_valid_BT: bool [B, T], True = real token, each row left-padded (pad tokens,
      whatever their ids, first; at least one real token); default all True. Pad tokens
      are never attended to and each row's positions start at 0 at its first real token.
  """
  max_len, vocab_size = model.config.max_len, model.config.vocab_size
  prompt_BT = _check_tokens("prompt_BT", prompt_BT, vocab_size)
  check_positive("max_new_tokens", max_new_tokens)
  B, T = prompt_BT.shape
  check_positive("prompt length T", T)
  if T + max_new_tokens > max_len:
    raise ValueError(
      f"prompt length T={T} + max_new_tokens={max_new_tokens} exceeds the model's max_len={max_len}"
    )
  greedy = _check_sampling(temperature, top_k, top_p, rng, vocab_size)
  _check_eos(eos_id, vocab_size)
  valid_BT = jnp.asarray(_check_prompt_valid(prompt_valid_BT, (B, T)))
  parts = model_state.split(model)
  options = _traced_options(rng, B, temperature, top_p)
  return _generate(
    *parts,
    prompt_BT,
    valid_BT,
    *options,
    max_new_tokens=max_new_tokens,
    greedy=greedy,
    top_k=_static_top_k(top_k, vocab_size),
    eos_id=None if eos_id is None else int(eos_id),
  )


def generate_seq2seq(
  model,
  src_BS,
  *,
  max_new_tokens: int,
  bos_id: int,
  src_valid_BS=None,
  temperature: float = 0.0,
  top_k: int | None = None,
  top_p: float = 1.0,
  rng=None,
  eos_id: int | None = None,
):
  """Translate `src_BS`: the decoder starts from `bos_id`. Returns [B, 1 + M] int32, bos first.

  Args:
    model: an `EncoderDecoderTransformer` (`config.max_len`, `config.vocab_size`,
      `config.tgt_vocab_size`, `encode`, `init_cache`, `extend`).
    src_BS: int source ids, S <= max_len. src_valid_BS: bool, True = real token.
    max_new_tokens: M > 0, M <= max_len (the decoder reads bos and M - 1 outputs).
    bos_id: the start token, 0 <= bos_id < V.
    temperature, top_k, top_p, rng, eos_id: as in `generate`.
  """
  max_len, vocab_size = model.config.max_len, model.config.tgt_vocab_size
  src_BS = _check_tokens("src_BS", src_BS, model.config.vocab_size)
  check_positive("max_new_tokens", max_new_tokens)
  if max_new_tokens > max_len:
    raise ValueError(f"max_new_tokens={max_new_tokens} exceeds the model's max_len={max_len}")
  if not isinstance(bos_id, int) or isinstance(bos_id, bool) or not 0 <= bos_id < vocab_size:
    raise ValueError(f"bos_id must be an int in [0, tgt_vocab_size={vocab_size}), got {bos_id!r}")
  greedy = _check_sampling(temperature, top_k, top_p, rng, vocab_size)
  _check_eos(eos_id, vocab_size)
  if src_valid_BS is not None:
    src_valid_BS = jnp.asarray(src_valid_BS)
    if src_valid_BS.dtype != jnp.bool_ or src_valid_BS.shape != src_BS.shape:
      raise ValueError(
        f"src_valid_BS must be bool of shape {src_BS.shape}, got {src_valid_BS.dtype} "
        f"{src_valid_BS.shape}"
      )
  B = src_BS.shape[0]
  bos_B1 = jnp.full((B, 1), bos_id, jnp.int32)
  parts = model_state.split(model)
  options = _traced_options(rng, B, temperature, top_p)
  return _generate_seq2seq(
    *parts,
    src_BS,
    src_valid_BS,
    bos_B1,
    *options,
    max_new_tokens=max_new_tokens,
    greedy=greedy,
    top_k=_static_top_k(top_k, vocab_size),
    eos_id=None if eos_id is None else int(eos_id),
  )


def lengths_to_eos(new_BM, eos_id: int) -> np.ndarray:
  """int [B]: how many tokens of each row of `new_BM` (generated tokens, prompt cut off)
  come before its first `eos_id`; M for a row without one."""
  new_BM = np.asarray(new_BM)
  check_rank("new_BM", new_BM, 2, "[B, M]")
  is_eos_BM = new_BM == eos_id
  return np.where(is_eos_BM.any(axis=1), is_eos_BM.argmax(axis=1), new_BM.shape[1])
