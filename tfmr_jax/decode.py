"""Autoregressive decoding with a KV cache: greedy, temperature, top-k and top-p sampling.

Dimension key: B batch, T prompt length, M new tokens, S source length, V vocabulary,
K top-k candidates.

The prompt is prefilled in one call, then one token per step inside a
`jax.lax.while_loop`, which stops early once every row has produced `eos_id`. Everything
runs in one jitted function, compiled once per (model structure, shapes, max_new_tokens,
greedy or not, top_k, eos_id); temperature and top_p are traced, so changing them does
not recompile (top_k is static: `jax.lax.top_k` needs it). The model runs in eval mode
(no dropout) on a copy; the caller's model is left as it was.

Each row has its own key, so a row samples the same tokens in a batch as alone
(`tfmr_jax.sampling`: the order of temperature, top-k and top-p, and the key schedule).
The arguments are checked by `tfmr_jax.decode_checks` before anything compiles.

A batch of prompts of different lengths is left-padded (`prompt_valid_BT`, as
`tasks.encode_batch` makes it): pad tokens are never seen as keys and each row's
positions start at 0 at its first real token, so every row decodes as it would alone.

A model qualifies by duck typing: `init_cache(...)` and `extend(tokens_BT, cache)
-> (logits_BTV, cache)`, as `GPT2` and `EncoderDecoderTransformer` provide; `generate`
also passes `valid_BT=` to `extend` at the prefill, as `GPT2.extend` takes it.
"""

import functools

import jax
import jax.numpy as jnp
import numpy as np

from tfmr_jax.decode_checks import (
  check_eos,
  check_prompt_valid,
  check_sampling,
  check_sampling_options,
  check_tokens,
  static_top_k,
)
from tfmr_jax.nn import state as model_state
from tfmr_jax.ops.guards import check_positive, check_rank
from tfmr_jax.sampling import filter_logits, next_token, row_keys

# check_sampling_options and filter_logits are part of this module's API (tj.decode.*).
__all__ = [
  "check_sampling_options",
  "filter_logits",
  "generate",
  "generate_seq2seq",
  "lengths_to_eos",
]


def _decode_loop(
  extend, cache, first_BT, first_valid_BT, keys_B, temperature, top_p, *, num_tokens, eos_id, **how
):
  """Prefill `first_BT`, then pick `num_tokens` tokens one at a time. Returns [B, num_tokens].

  extend(tokens_BT, cache, valid_BT or None) -> (logits_BTV, cache). After a row's first
  `eos_id` every later token of the row is eos_id; the loop stops once every row has one.
  `how`: greedy and top_k, as `next_token` takes them.
  """
  B = first_BT.shape[0]
  pick = functools.partial(next_token, keys_B=keys_B, temperature=temperature, top_p=top_p, **how)
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
  model = model_state.merge_eval(graphdef, params, rest)
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
  model = model_state.merge_eval(graphdef, params, rest)
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
  return row_keys(rng, B), jnp.float32(temperature), jnp.float32(top_p)


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
  prompt_BT = check_tokens("prompt_BT", prompt_BT, vocab_size)
  check_positive("max_new_tokens", max_new_tokens)
  B, T = prompt_BT.shape
  check_positive("prompt length T", T)
  if T + max_new_tokens > max_len:
    raise ValueError(
      f"prompt length T={T} + max_new_tokens={max_new_tokens} exceeds the model's max_len={max_len}"
    )
  greedy = check_sampling(temperature, top_k, top_p, rng, vocab_size)
  check_eos(eos_id, vocab_size)
  valid_BT = jnp.asarray(check_prompt_valid(prompt_valid_BT, (B, T)))
  parts = model_state.split(model)
  options = _traced_options(rng, B, temperature, top_p)
  return _generate(
    *parts,
    prompt_BT,
    valid_BT,
    *options,
    max_new_tokens=max_new_tokens,
    greedy=greedy,
    top_k=static_top_k(top_k, vocab_size),
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
  src_BS = check_tokens("src_BS", src_BS, model.config.vocab_size)
  check_positive("max_new_tokens", max_new_tokens)
  if max_new_tokens > max_len:
    raise ValueError(f"max_new_tokens={max_new_tokens} exceeds the model's max_len={max_len}")
  if not isinstance(bos_id, int) or isinstance(bos_id, bool) or not 0 <= bos_id < vocab_size:
    raise ValueError(f"bos_id must be an int in [0, tgt_vocab_size={vocab_size}), got {bos_id!r}")
  greedy = check_sampling(temperature, top_k, top_p, rng, vocab_size)
  check_eos(eos_id, vocab_size)
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
    top_k=static_top_k(top_k, vocab_size),
    eos_id=None if eos_id is None else int(eos_id),
  )


def lengths_to_eos(new_BM, eos_id: int) -> np.ndarray:
  """int [B]: how many tokens of each row of `new_BM` (generated tokens, prompt cut off)
  come before its first `eos_id`; M for a row without one."""
  new_BM = np.asarray(new_BM)
  check_rank("new_BM", new_BM, 2, "[B, M]")
  is_eos_BM = new_BM == eos_id
  return np.where(is_eos_BM.any(axis=1), is_eos_BM.argmax(axis=1), new_BM.shape[1])
