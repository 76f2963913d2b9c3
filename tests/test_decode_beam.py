"""decode_beam.beam_search_seq2seq against greedy decoding and an exhaustive NumPy search
whose log-probabilities come from the model's full forward pass on each hypothesis."""

import functools
import itertools

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from tfmr_jax import decode, decode_beam
from tfmr_jax.models import EncoderDecoderTransformer, TransformerConfig

V, BOS, EOS = 5, 0, 1  # a vocabulary small enough to enumerate every hypothesis
SRC = jnp.array([[2, 6, 3, 1, 4], [5, 0, 2, 3, 3]])
SRC_VALID = jnp.arange(5)[None, :] < jnp.array([[5], [3]])


def tiny_model(eos_bias: float = 0.0):
  config = TransformerConfig(
    vocab_size=7,
    tgt_vocab_size=V,
    num_layers=1,
    num_decoder_layers=1,
    d_model=8,
    num_heads=2,
    d_ff=12,
    max_len=8,
    dropout=0.1,
  )
  model = EncoderDecoderTransformer(config, rngs=nnx.Rngs(3))
  model.output.bias[...] = model.output.bias[...].at[EOS].add(eos_bias)
  return model


@pytest.fixture(scope="module")
def tiny():
  return tiny_model()


@pytest.fixture(scope="module")
def tiny_eos():
  """eos made likely, so that hypotheses of every length compete."""
  return tiny_model(eos_bias=1.0)


def all_hypotheses(M: int, eos: int | None) -> list[tuple[int, ...]]:
  """Every output: no eos before the last token; it ends with eos or has M tokens."""
  body_tokens = [v for v in range(V) if v != eos]
  out = []
  for length in range(1 if eos is not None else M, M + 1):
    last_tokens = range(V) if length == M else [eos]
    for body in itertools.product(body_tokens, repeat=length - 1):
      out.extend(body + (last,) for last in last_tokens)
  return out


@functools.partial(jax.jit, static_argnums=0)
def _eval_forward(graphdef, state, src_BS, tgt_BT, src_valid_BS):
  model = nnx.merge(graphdef, state)
  model.eval()
  return model(src_BS, tgt_BT, src_valid_BS)


MAX_M = 4  # the longest output any test here scores


def next_token_log_probs(model) -> np.ndarray:
  """float64 [2, V^(MAX_M - 1), MAX_M, V]: log_softmax of the teacher-forced full forward
  pass (no cache) on decoder input [bos, p] for every p of MAX_M - 1 tokens, in
  itertools.product order; entry [b, n, t] is the next-token distribution of source b after
  bos and the first t tokens of p (the decoder is causal)."""
  graphdef, state = nnx.split(model)
  prefixes_NP = np.array(list(itertools.product(range(V), repeat=MAX_M - 1)), np.int32)
  N = len(prefixes_NP)
  tgt_in_NM = np.concatenate([np.full((N, 1), BOS, np.int32), prefixes_NP], axis=1)
  src_XS = np.repeat(np.asarray(SRC), N, axis=0)  # row-major: source b, prefix n
  valid_XS = np.repeat(np.asarray(SRC_VALID), N, axis=0)
  tgt_in_XM = np.tile(tgt_in_NM, (2, 1))
  logits_XMV = np.asarray(_eval_forward(graphdef, state, src_XS, tgt_in_XM, valid_XS), np.float64)
  logp_XMV = logits_XMV - np.log(np.exp(logits_XMV).sum(-1, keepdims=True))
  return logp_XMV.reshape(2, N, MAX_M, V)


def next_log_probs(tables, row: int, prefix: tuple[int, ...]) -> np.ndarray:
  """float64 [V]: log P(next token | source row, bos, prefix)."""
  padded = prefix + (0,) * (MAX_M - 1 - len(prefix))  # any row that starts with the prefix
  return tables[row, np.ravel_multi_index(padded, (V,) * (MAX_M - 1)), len(prefix)]


def reference_log_probs(tables, row: int, hypotheses) -> np.ndarray:
  """float64 log P(y | source row) of each hypothesis, summed from `next_token_log_probs`."""
  return np.array(
    [sum(next_log_probs(tables, row, y[:t])[y[t]] for t in range(len(y))) for y in hypotheses]
  )


def gnmt_penalty(length, alpha: float):
  return ((5.0 + np.asarray(length, np.float64)) / 6.0) ** alpha


def trim(tokens_M, length: int) -> tuple[int, ...]:
  return tuple(int(t) for t in tokens_M[:length])


@pytest.mark.parametrize("eos_id, alpha", [(None, 0.6), (EOS, 0.0)])
def test_beam_size_1_is_greedy(tiny, tiny_eos, eos_id, alpha):
  """One beam follows the argmax; with eos and alpha = 0 the argmax hypothesis that ends
  also beats every continuation, so the search stops where greedy decoding does."""
  model = tiny if eos_id is None else tiny_eos
  kwargs = dict(max_new_tokens=6, bos_id=BOS, eos_id=eos_id, src_valid_BS=SRC_VALID)
  greedy = np.asarray(decode.generate_seq2seq(model, SRC, **kwargs))[:, 1:]
  beams = decode_beam.beam_search_seq2seq(model, SRC, beam_size=1, length_penalty=alpha, **kwargs)
  assert beams.tokens_BWM.shape == (2, 1, 6)
  np.testing.assert_array_equal(beams.tokens_BWM[:, 0], greedy)
  if eos_id is not None:
    assert (greedy[:, :-1] == eos_id).any(), "no row ends early: the eos path is not tested"
  else:
    assert len(set(greedy.ravel().tolist())) > 1, "a constant output tests little"


@pytest.mark.parametrize("alpha", [0.0, 0.6, 2.0])
@pytest.mark.parametrize("eos_bias", [0.0, 2.0])
def test_a_beam_as_wide_as_the_search_space_finds_every_hypothesis(alpha, eos_bias):
  """W = V^M keeps every prefix alive, so the W slots hold every hypothesis of the
  exhaustive search, ranked by its length-penalised score, best first."""
  M = 3
  model = tiny_model(eos_bias)
  beams = decode_beam.beam_search_seq2seq(
    model,
    SRC,
    beam_size=V**M,
    max_new_tokens=M,
    bos_id=BOS,
    eos_id=EOS,
    length_penalty=alpha,
    src_valid_BS=SRC_VALID,
  )
  hypotheses = all_hypotheses(M, EOS)
  lengths = np.array([len(y) for y in hypotheses])
  tables = next_token_log_probs(model)
  for row in range(2):
    want_scores = reference_log_probs(tables, row, hypotheses) / gnmt_penalty(lengths, alpha)
    found = beams.scores_BW[row] > -np.inf
    assert found.sum() == len(hypotheses)
    got = {
      trim(tokens, n): float(score)
      for tokens, score, n in zip(
        beams.tokens_BWM[row][found],
        beams.scores_BW[row][found],
        beams.lengths_BW[row][found],
        strict=True,
      )
    }
    want = dict(zip(hypotheses, want_scores, strict=True))
    assert set(got) == set(want)
    np.testing.assert_allclose([got[y] for y in hypotheses], want_scores, rtol=1e-5, atol=1e-5)
    assert (
      trim(beams.tokens_BWM[row, 0], beams.lengths_BW[row, 0])
      == hypotheses[int(np.argmax(want_scores))]
    )
    assert np.all(np.diff(beams.scores_BW[row][found]) <= 0)


def reference_beam_search(tables, row: int, *, W: int, M: int, alpha: float):
  """The documented search in plain Python over `next_token_log_probs`, all M steps, no
  early stop: each step keeps the 2 W most likely extensions of the live beams; those that
  end (eos, or the M-th token) compete for the W finished slots by log P / lp(length),
  the W most likely others stay live. Returns [(hypothesis, score)], best first."""
  live, finished = [((), 0.0)], []
  for i in range(M):
    candidates = []
    for y, log_p in live:
      log_p_V = next_log_probs(tables, row, y)
      candidates += [(y + (v,), log_p + log_p_V[v]) for v in range(V)]
    candidates = sorted(candidates, key=lambda c: -c[1])[: 2 * W]
    ends = [c for c in candidates if c[0][-1] == EOS or i == M - 1]
    finished += [(y, log_p / gnmt_penalty(i + 1, alpha)) for y, log_p in ends]
    finished = sorted(finished, key=lambda f: -f[1])[:W]
    live = [c for c in candidates if c not in ends][:W]
  return finished


@pytest.mark.parametrize("alpha", [0.0, 0.6, 5.0])
def test_moderate_beam_scores_are_its_hypotheses_own_scores(tiny_eos, alpha):
  """W = 3: every returned hypothesis is padded with eos after its first eos, its length
  counts the tokens up to that eos, and its score is its own recomputed log-probability
  over lp(its own length); none beats the exhaustive optimum; they are those of the
  search written out in Python."""
  M, W = 4, 3
  beams = decode_beam.beam_search_seq2seq(
    tiny_eos,
    SRC,
    beam_size=W,
    max_new_tokens=M,
    bos_id=BOS,
    eos_id=EOS,
    length_penalty=alpha,
    src_valid_BS=SRC_VALID,
  )
  tokens_BWM, lengths_BW = np.asarray(beams.tokens_BWM), np.asarray(beams.lengths_BW)
  assert tokens_BWM.shape == (2, W, M) and beams.scores_BW.shape == (2, W)
  np.testing.assert_array_equal(
    lengths_BW,
    decode.lengths_to_eos(tokens_BWM.reshape(-1, M), EOS).reshape(2, W)
    + (tokens_BWM == EOS).any(-1),
  )
  assert (lengths_BW < M).any(), "no hypothesis ends early: the eos path is not tested"
  hypotheses = all_hypotheses(M, EOS)
  tables = next_token_log_probs(tiny_eos)
  for row in range(2):
    for w in range(W):
      n = lengths_BW[row, w]
      assert (tokens_BWM[row, w, n:] == EOS).all()
    returned = [trim(tokens_BWM[row, w], lengths_BW[row, w]) for w in range(W)]
    assert len(set(returned)) == W
    log_probs = reference_log_probs(tables, row, returned)
    np.testing.assert_allclose(beams.log_probs_BW[row], log_probs, rtol=1e-5, atol=1e-5)
    want_scores = log_probs / gnmt_penalty(lengths_BW[row], alpha)
    np.testing.assert_allclose(beams.scores_BW[row], want_scores, rtol=1e-5, atol=1e-5)
    assert np.all(np.diff(beams.scores_BW[row]) <= 0)
    lengths = np.array([len(y) for y in hypotheses])
    best = np.max(reference_log_probs(tables, row, hypotheses) / gnmt_penalty(lengths, alpha))
    assert beams.scores_BW[row, 0] <= best + 1e-5
    # The same hypotheses as the search run to the end in Python: the early stop and the
    # cache's reordering change nothing.
    want = reference_beam_search(tables, row, W=W, M=M, alpha=alpha)
    assert returned == [y for y, _ in want]
    np.testing.assert_allclose(beams.scores_BW[row], [f for _, f in want], rtol=1e-5, atol=1e-5)


def test_a_larger_length_penalty_prefers_longer_hypotheses():
  """For a shorter y and a longer z (log P < 0), z wins iff log P(z) / log P(y) <
  lp(|z|) / lp(|y|) = ((5 + |z|) / (5 + |y|)) ** alpha, which grows with alpha: the best
  length never falls as alpha grows. With eos made very likely, alpha = 0 picks a short
  hypothesis (one row: eos alone) and alpha = 10 the longest."""
  M, alphas = 3, [0.0, 0.6, 2.0, 5.0, 10.0]
  model = tiny_model(eos_bias=3.0)
  hypotheses = all_hypotheses(M, EOS)
  lengths = np.array([len(y) for y in hypotheses])
  tables = next_token_log_probs(model)
  best_lengths = []
  for alpha in alphas:
    beams = decode_beam.beam_search_seq2seq(
      model,
      SRC,
      beam_size=V**M,
      max_new_tokens=M,
      bos_id=BOS,
      eos_id=EOS,
      length_penalty=alpha,
      src_valid_BS=SRC_VALID,
    )
    best_lengths.append(np.asarray(beams.lengths_BW[:, 0]))
    for row in range(2):
      scores = reference_log_probs(tables, row, hypotheses) / gnmt_penalty(lengths, alpha)
      best = hypotheses[int(np.argmax(scores))]
      assert trim(beams.tokens_BWM[row, 0], beams.lengths_BW[row, 0]) == best
  best_lengths = np.stack(best_lengths)  # [alpha, B]
  assert np.all(np.diff(best_lengths, axis=0) >= 0), best_lengths
  assert np.all(best_lengths[0] < M) and np.all(best_lengths[-1] == M), best_lengths
  assert best_lengths[0].min() == 1, best_lengths


def test_compiles_once_per_shape(tiny, tiny_eos):
  """bos_id, length_penalty, the source ids and padding and the weights are traced."""
  kwargs = dict(beam_size=3, max_new_tokens=4, eos_id=EOS)
  decode_beam.beam_search_seq2seq(tiny, SRC, bos_id=BOS, **kwargs)
  before = decode_beam._beam_search._cache_size()
  decode_beam.beam_search_seq2seq(
    tiny_eos, (SRC + 1) % 7, bos_id=2, length_penalty=1.5, src_valid_BS=SRC_VALID, **kwargs
  )
  assert decode_beam._beam_search._cache_size() == before


@pytest.mark.parametrize(
  "kwargs, message",
  [
    (dict(beam_size=0), "beam_size must be a positive int, got 0"),
    (dict(beam_size=2.0), "beam_size must be a positive int, got 2.0"),
    (dict(beam_size=True), "beam_size must be a positive int, got True"),
    (dict(length_penalty=-0.1), "length_penalty must be a finite number >= 0, got -0.1"),
    (dict(length_penalty=float("nan")), "length_penalty must be a finite number >= 0, got nan"),
    (dict(length_penalty="0.6"), "length_penalty must be a finite number >= 0, got '0.6'"),
    (dict(bos_id=V), rf"bos_id must be an int in \[0, tgt_vocab_size={V}\), got {V}"),
    (dict(eos_id=-1), rf"eos_id must be None or an int in \[0, vocab_size={V}\), got -1"),
    (dict(max_new_tokens=0), "max_new_tokens must be a positive int, got 0"),
    (dict(max_new_tokens=9), "max_new_tokens=9 exceeds the model's max_len=8"),
    (dict(src_valid_BS=SRC_VALID[:1]), r"src_valid_BS must be bool of shape \(2, 5\)"),
  ],
)
def test_bad_arguments(tiny, kwargs, message):
  before = decode_beam._beam_search._cache_size()
  args = dict(beam_size=2, max_new_tokens=3, bos_id=BOS, eos_id=EOS) | kwargs
  with pytest.raises(ValueError, match=message):
    decode_beam.beam_search_seq2seq(tiny, SRC, **args)
  assert decode_beam._beam_search._cache_size() == before  # raised before compiling
