"""Beam search for the encoder-decoder, with the GNMT length penalty.

Dimension key: B batch, S source length, M new tokens, V target vocabulary, W beams,
X = B * W decoder rows (row b * W + w is beam w of source b), C = min(2 W, W V) candidates.

The paper decodes with beam size 4 and length penalty alpha = 0.6 (section 6.1), the
penalty of Wu et al. 2016: a hypothesis Y of |Y| tokens scores

    score(Y) = log P(Y | source) / lp(|Y|),     lp(L) = ((5 + L) / 6) ** alpha,

where Y ends with its first `eos_id` (counted in |Y|) or has all M tokens. alpha = 0 is
the plain log-probability; a larger alpha favours longer hypotheses. The paper's
maximum output length, input length + 50, is the caller's `max_new_tokens`.

Each step feeds the W live beams of every row through the decoder's KV cache, scores
their W * V extensions, keeps the best 2 W of them (at least W of which do not end),
moves those that end (eos, or the M-th token) into the W finished slots of the row by
score, and continues the best W that do not. The cache then follows the chosen beams:
every cache leaf with a leading X axis is gathered by the parent beam's row. The loop
(`jax.lax.while_loop`, all arrays of fixed size) stops after M steps, or once in every
row the W-th finished score reaches the best any live beam could still get: its
log-probability can only fall, and lp(L) is largest at L = M, so that bound is
log P(live) / lp(M).

One jitted function, compiled once per (model structure, shapes, beam_size,
max_new_tokens, eos_id); bos_id and length_penalty are traced.
"""

import functools
import math
import numbers
from typing import NamedTuple

import jax
import jax.numpy as jnp

from tfmr_jax.decode_checks import check_eos, check_tokens, is_real
from tfmr_jax.nn import state as model_state
from tfmr_jax.ops.guards import check_positive


class Beams(NamedTuple):
  """The W best hypotheses of each row, best first.

  Attributes:
    tokens_BWM: int32, the generated tokens (bos not included); after a hypothesis's
      first eos every token is eos_id.
    scores_BW: float32, log_probs_BW / lp(lengths_BW), descending along W; -inf marks a
      slot with no hypothesis (a row has fewer than W distinct ones; its tokens are all
      eos_id, or 0 without one, and its length 0).
    log_probs_BW: float32, log P(hypothesis | source), summed over its own tokens.
    lengths_BW: int32, |Y|: the tokens up to and including the first eos, else M (0 for
      an empty slot).
  """

  tokens_BWM: jax.Array
  scores_BW: jax.Array
  log_probs_BW: jax.Array
  lengths_BW: jax.Array


def length_penalty_factor(length, alpha):
  """lp(L) = ((5 + L) / 6) ** alpha (Wu et al. 2016), float32, elementwise over `length`."""
  return jnp.power((5.0 + jnp.asarray(length, jnp.float32)) / 6.0, jnp.float32(alpha))


def _reorder(cache, rows_X):
  """Gather every cache leaf with a leading X axis by `rows_X`; scalars (lengths) stay."""
  return jax.tree.map(lambda leaf: leaf if leaf.ndim == 0 else leaf[rows_X], cache)


def _top(scores_BC, k: int, *arrays_BC):
  """The k best of C along axis 1 (descending, ties to the lower index) and the matching
  entries of each of `arrays_BC` ([B, C] or [B, C, ...])."""
  best_BK, index_BK = jax.lax.top_k(scores_BC, k)
  picked = []
  for a in arrays_BC:
    index = index_BK.reshape(index_BK.shape + (1,) * (a.ndim - 2))
    picked.append(jnp.take_along_axis(a, index, axis=1))
  return best_BK, *picked


@functools.partial(jax.jit, static_argnames=("graphdef", "beam_size", "max_new_tokens", "eos_id"))
def _beam_search(
  graphdef, params, rest, src_BS, src_valid_BS, bos_id, alpha, *, beam_size, max_new_tokens, eos_id
):
  model = model_state.merge_eval(graphdef, params, rest)
  B, W, M = src_BS.shape[0], beam_size, max_new_tokens
  V = model.config.tgt_vocab_size
  C = min(2 * W, W * V)  # W + 1 could end (one eos per beam), so 2 W leaves >= W going on
  memory_XSD = jnp.repeat(model.encode(src_BS, src_valid_BS), W, axis=0)
  cache = model.init_cache(memory_XSD, jnp.repeat(src_valid_BS, W, axis=0), max_len=M)
  fill = 0 if eos_id is None else eos_id
  max_lp = length_penalty_factor(M, alpha)
  first_row_B1 = (jnp.arange(B) * W)[:, None]

  live = (  # only beam 0 is live at first, so that the W copies do not all expand
    jnp.full((B, W, M), fill, jnp.int32),
    jnp.zeros((B, W), jnp.float32).at[:, 1:].set(-jnp.inf),
  )
  done = (  # scores, tokens, log-probabilities, lengths
    jnp.full((B, W), -jnp.inf, jnp.float32),
    jnp.full((B, W, M), fill, jnp.int32),
    jnp.full((B, W), -jnp.inf, jnp.float32),
    jnp.zeros((B, W), jnp.int32),
  )

  def unfinished(carry):
    i, _, (_, live_logp_BW), (done_scores_BW, *_), _ = carry
    can_improve_B = live_logp_BW[:, 0] / max_lp > done_scores_BW[:, -1]
    return (i < M) & jnp.any(can_improve_B)

  def step(carry):
    i, last_X, (live_tokens_BWM, live_logp_BW), done, cache = carry
    logits_X1V, cache = model.extend(last_X[:, None], cache)
    logp_BWV = jax.nn.log_softmax(logits_X1V[:, 0].astype(jnp.float32)).reshape(B, W, V)
    sum_BC = (live_logp_BW[:, :, None] + logp_BWV).reshape(B, W * V)
    sum_BC, flat_BC = jax.lax.top_k(sum_BC, C)
    beam_BC, token_BC = flat_BC // V, (flat_BC % V).astype(jnp.int32)
    tokens_BCM = jnp.take_along_axis(live_tokens_BWM, beam_BC[:, :, None], axis=1)
    tokens_BCM = jnp.where(jnp.arange(M)[None, None] == i, token_BC[:, :, None], tokens_BCM)
    ends_BC = jnp.broadcast_to(i == M - 1, (B, C))
    if eos_id is not None:
      ends_BC = ends_BC | (token_BC == eos_id)

    # Finished: the W best of the old slots and the candidates that end here.
    length_BC = jnp.full((B, C), i + 1, jnp.int32)
    score_BC = jnp.where(ends_BC, sum_BC / length_penalty_factor(i + 1, alpha), -jnp.inf)
    done_scores_BW, done_tokens_BWM, done_logp_BW, done_length_BW = done
    done = _top(
      jnp.concatenate([done_scores_BW, score_BC], axis=1),
      W,
      jnp.concatenate([done_tokens_BWM, tokens_BCM], axis=1),
      jnp.concatenate([done_logp_BW, sum_BC], axis=1),
      jnp.concatenate([done_length_BW, length_BC], axis=1),
    )

    # Live: the W best candidates that go on; the cache follows their parent beams.
    live_logp_BW, live_tokens_BWM, parent_BW, token_BW = _top(
      jnp.where(ends_BC, -jnp.inf, sum_BC), W, tokens_BCM, beam_BC, token_BC
    )
    cache = _reorder(cache, (first_row_B1 + parent_BW).reshape(B * W))
    live = (live_tokens_BWM, live_logp_BW)
    return i + 1, token_BW.reshape(B * W), live, done, cache

  last_X = jnp.full((B * W,), bos_id, jnp.int32)
  carry = (jnp.int32(0), last_X, live, done, cache)
  _, _, _, done, _ = jax.lax.while_loop(unfinished, step, carry)
  scores_BW, tokens_BWM, log_probs_BW, lengths_BW = done
  empty_BW = scores_BW == -jnp.inf  # no hypothesis: clean fill, length 0
  tokens_BWM = jnp.where(empty_BW[:, :, None], fill, tokens_BWM)
  lengths_BW = jnp.where(empty_BW, 0, lengths_BW)
  return Beams(tokens_BWM, scores_BW, log_probs_BW, lengths_BW)


def beam_search_seq2seq(
  model,
  src_BS,
  *,
  beam_size: int,
  max_new_tokens: int,
  bos_id: int,
  eos_id: int | None,
  length_penalty: float = 0.6,
  src_valid_BS=None,
) -> Beams:
  """Beam search for `model`, an `EncoderDecoderTransformer`. Returns `Beams`, best first:
  `beams.tokens_BWM[:, 0]` is each row's best hypothesis, [B, M] int32 without bos.

  Args:
    src_BS: int source ids, S <= max_len. src_valid_BS: bool, True = real token (default
      all True).
    beam_size: W, a positive int (1 = greedy decoding, where eos_id is None or
      length_penalty is 0). W may exceed V: spare beams stay empty (-inf).
    max_new_tokens: M > 0, M <= max_len (the paper: source length + 50).
    bos_id: the start token, in [0, tgt_vocab_size).
    eos_id: end of text, in [0, tgt_vocab_size), or None (every hypothesis has M tokens).
    length_penalty: alpha >= 0 (finite; the paper's 0.6); traced, so changing it does not
      recompile.
  """
  vocab_size, max_len = model.config.tgt_vocab_size, model.config.max_len
  if not isinstance(beam_size, numbers.Integral) or isinstance(beam_size, bool) or beam_size < 1:
    raise ValueError(f"beam_size must be a positive int, got {beam_size!r}")
  check_positive("max_new_tokens", max_new_tokens)
  if max_new_tokens > max_len:
    raise ValueError(f"max_new_tokens={max_new_tokens} exceeds the model's max_len={max_len}")
  if not is_real(length_penalty) or not math.isfinite(length_penalty) or length_penalty < 0:
    raise ValueError(f"length_penalty must be a finite number >= 0, got {length_penalty!r}")
  if (
    not isinstance(bos_id, numbers.Integral)
    or isinstance(bos_id, bool)
    or not 0 <= bos_id < vocab_size
  ):
    raise ValueError(f"bos_id must be an int in [0, tgt_vocab_size={vocab_size}), got {bos_id!r}")
  check_eos(eos_id, vocab_size)
  src_BS = check_tokens("src_BS", src_BS, model.config.vocab_size)
  if src_valid_BS is None:  # all real: one compilation with or without a mask
    src_valid_BS = jnp.ones(src_BS.shape, jnp.bool_)
  src_valid_BS = jnp.asarray(src_valid_BS)
  if src_valid_BS.dtype != jnp.bool_ or src_valid_BS.shape != src_BS.shape:
    raise ValueError(
      f"src_valid_BS must be bool of shape {src_BS.shape}, got {src_valid_BS.dtype} "
      f"{src_valid_BS.shape}"
    )
  return _beam_search(
    *model_state.split(model),
    src_BS,
    src_valid_BS,
    jnp.int32(bos_id),
    jnp.float32(length_penalty),
    beam_size=int(beam_size),
    max_new_tokens=int(max_new_tokens),
    eos_id=None if eos_id is None else int(eos_id),
  )
