"""A GPT-2 from a Hugging Face folder: sample from it, or score a text's perplexity.

    pretrained = load_pretrained("gpt2/")   # config.json, model.safetensors, tokenizer files
    sample_pretrained(pretrained, ["Hello, I'm a language model,"], max_new_tokens=30)
    evaluate_text(pretrained, "text.txt")   # {"mean_loss", "perplexity", "tokens"}

Dimension key: B batch, T prompt length, P context length (the model's max_len), V vocabulary.

The tokenizer is the folder's (`tasks.load_tokenizer`: tokenizer.json, or vocab.json +
merges.txt). Every way the inputs can be unusable (the folder, a prompt too long for the
context, the text file) raises a ValueError naming the path or argument, the value and
the rule, before anything compiles.
"""

import dataclasses
import functools
import json
import math
import os
from collections.abc import Sequence

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from tfmr_jax import decode
from tfmr_jax.models import load_hf_dir
from tfmr_jax.nn import state as model_state
from tfmr_jax.tasks.corpus import CorpusError, decode_text
from tfmr_jax.tasks.tokenizer import Tokenizer, encode_batch, load_tokenizer


class PretrainedError(ValueError):
  """A Hugging Face folder, prompt or text cannot be used; the message says which and why."""


@dataclasses.dataclass
class Pretrained:
  """A GPT-2 or Llama (eval mode) and its tokenizer, loaded from `path`.

  eos_id: where a sampled row ends: the folder's config.json `eos_token_id` (the first
  of a list), else the tokenizer's <|endoftext|>; None when neither names one.
  """

  model: nnx.Module
  tokenizer: Tokenizer
  path: str
  eos_id: int | None = None

  @property
  def context(self) -> int:
    """P: the most positions the model reads at once."""
    return self.model.config.max_len


def load_pretrained(path: str) -> Pretrained:
  """The GPT-2 and tokenizer in the Hugging Face folder `path`."""
  if not os.path.isdir(path):
    raise PretrainedError(f"Hugging Face folder {path!r} does not exist or is not a folder")
  model = _load_hf_model(path)
  model.eval()
  tokenizer = load_tokenizer(path)
  eos_id = _eos_id(path, tokenizer, model.config.vocab_size)
  return Pretrained(model, tokenizer, path, eos_id=eos_id)


def _eos_id(path: str, tokenizer: Tokenizer, vocab_size: int) -> int | None:
  """config.json's eos_token_id (the first id of a list, as Llama 3 gives), else the
  tokenizer's end-of-text: a Llama folder's end of text is not GPT-2's <|endoftext|>."""
  with open(os.path.join(path, "config.json")) as f:  # _load_hf_model has read it
    given = json.load(f).get("eos_token_id")
  eos = given
  if isinstance(given, list):
    eos = given[0] if given else None
  if eos is None:
    return tokenizer.eot_id
  if not isinstance(eos, int) or isinstance(eos, bool) or not 0 <= eos < vocab_size:
    raise PretrainedError(
      f"Hugging Face folder {path!r}: config.json eos_token_id = {given!r}: must be a token "
      f"id in [0, vocab_size={vocab_size}), a list of them, or null"
    )
  return eos


def _load_hf_model(path: str) -> nnx.Module:
  """The model of the folder (`models.load_hf_dir`), its errors as one PretrainedError."""
  try:
    return load_hf_dir(path)
  except (FileNotFoundError, ValueError) as e:  # a missing file, another architecture, a shape
    raise PretrainedError(f"Hugging Face folder {path!r}: {e}") from None


def _as_pretrained(model_or_path) -> Pretrained:
  return model_or_path if isinstance(model_or_path, Pretrained) else load_pretrained(model_or_path)


def sample_pretrained(
  model_or_path: "Pretrained | str",
  prompts: Sequence[str],
  *,
  max_new_tokens: int = 50,
  temperature: float = 0.8,
  top_k: int | None = None,
  top_p: float = 1.0,
  seed: int = 0,
) -> list[str]:
  """Each prompt continued by up to `max_new_tokens` tokens: the text of its tokens and the new.

  The prompts run as one left-padded batch (each row decodes as it would alone, with its
  own key from `seed`); a row ends at the folder's end of text (`Pretrained.eos_id`), not part of
  the returned text. A prompt whose tokens plus max_new_tokens exceed the model's context
  is refused (PretrainedError), nothing is cut. Options as in `decode.generate`
  (temperature 0 = greedy); they are checked before the folder is read.
  """
  decode.check_sampling_options(
    max_new_tokens=max_new_tokens, temperature=temperature, top_k=top_k, top_p=top_p
  )
  if isinstance(prompts, str) or not prompts:
    raise PretrainedError("prompts must be a non-empty list of strings")
  pretrained = _as_pretrained(model_or_path)
  tokenizer, P = pretrained.tokenizer, pretrained.context
  eot = pretrained.eos_id
  V = pretrained.model.config.vocab_size
  if top_k is not None and top_k > V:
    raise PretrainedError(f"top_k={top_k} must lie in [1, vocab_size={V}]")
  ids_BT, valid_BT = encode_batch(tokenizer, prompts, pad_id=0 if eot is None else eot)
  for i, length in enumerate(valid_BT.sum(axis=1)):
    if length + max_new_tokens > P:
      raise PretrainedError(
        f"prompt {i} has {length} token(s); with max_new_tokens={max_new_tokens} that is "
        f"{length + max_new_tokens} positions, more than the model's context of {P}"
      )
  out_BT = decode.generate(
    pretrained.model,
    ids_BT,
    max_new_tokens=max_new_tokens,
    temperature=temperature,
    top_k=top_k,
    top_p=top_p,
    rng=jax.random.key(seed) if temperature > 0 else None,
    eos_id=eot,
    prompt_valid_BT=valid_BT,
  )
  new_BM = np.asarray(out_BT)[:, ids_BT.shape[1] :]
  lengths_B = [max_new_tokens] * len(prompts) if eot is None else decode.lengths_to_eos(new_BM, eot)
  # Decoded whole, prompt and new tokens together: a character may span the two.
  return [
    tokenizer.decode(np.concatenate([ids_BT[b][valid_BT[b]], new_BM[b, : lengths_B[b]]]))
    for b in range(len(prompts))
  ]


def read_text_file(path: str) -> str:
  """The text of the file at `path`, or PretrainedError: it must exist and hold UTF-8 text
  with no NUL byte (`tasks.corpus.decode_text`)."""
  if not os.path.exists(path):
    raise PretrainedError(f"text file {path!r} does not exist")
  if not os.path.isfile(path):
    raise PretrainedError(f"text file {path!r} is not a regular file")
  with open(path, "rb") as f:
    data = f.read()
  if not data:
    raise PretrainedError(f"text file {path!r} is empty: scoring needs at least two tokens")
  try:
    return decode_text(data, source=path, kind="text file")
  except CorpusError as e:  # a NUL byte, not UTF-8
    raise PretrainedError(str(e)) from None


def strided_windows(n: int, *, context: int, stride: int) -> list[tuple[int, int, int]]:
  """(begin, end, first scored) of each window over n tokens, Hugging Face's perplexity
  recipe: windows of `context` tokens start every `stride` tokens; a window scores the
  tokens from the previous window's end (each token but the first scored once, token t
  predicted from position t - 1); the last window ends at the text's end."""
  windows, previous_end = [], 0
  for begin in range(0, n, stride):
    end = min(begin + context, n)
    windows.append((begin, end, max(previous_end, begin + 1)))
    previous_end = end
    if end == n:
      break
  return windows


@functools.partial(jax.jit, static_argnames="graphdef")
def _window_nll(graphdef, params, rest, ids_1P):
  """float32 [P - 1]: -log p(ids[t + 1] | ids[: t + 1]) along one window."""
  model = model_state.merge(graphdef, params, rest)
  logits_PV = model(ids_1P)[0].astype(jnp.float32)
  target_P1 = ids_1P[0, 1:, None]
  picked_P = jnp.take_along_axis(logits_PV[:-1], target_P1, axis=-1)[:, 0]
  return jax.nn.logsumexp(logits_PV[:-1], axis=-1) - picked_P


def evaluate_text(model_or_path: "Pretrained | str", text_path: str, *, stride=None) -> dict:
  """{"mean_loss": nats per token, "perplexity": exp(mean_loss), "tokens": how many scored}
  of the text file, read by `strided_windows` with the model's context and `stride`
  (default context // 2; below the context). Every window is padded to the full context
  (causal attention: padding after a token cannot change its loss), so one shape compiles.
  """
  text = read_text_file(text_path)
  pretrained = _as_pretrained(model_or_path)
  P = pretrained.context
  stride = P // 2 if stride is None else stride
  if isinstance(stride, bool) or not isinstance(stride, int) or not 1 <= stride < P:
    raise PretrainedError(
      f"stride must be an int in [1, context - 1 = {P - 1}] (windows overlap, so that every "
      f"token but the first is scored), got {stride!r}"
    )
  ids_N = pretrained.tokenizer.encode(text)
  if len(ids_N) < 2:
    raise PretrainedError(
      f"text file {text_path!r} has {len(ids_N)} token; scoring needs at least two"
    )
  parts = model_state.split(pretrained.model)
  nll = []
  for begin, end, first in strided_windows(len(ids_N), context=P, stride=stride):
    window_1P = np.zeros((1, P), np.int32)
    window_1P[0, : end - begin] = ids_N[begin:end]
    nll_P = np.asarray(_window_nll(*parts, jnp.asarray(window_1P)), np.float64)
    nll.append(nll_P[first - 1 - begin : end - 1 - begin])  # token t from position t - 1
  nll = np.concatenate(nll)
  mean_loss = float(nll.mean())
  return {"mean_loss": mean_loss, "perplexity": math.exp(mean_loss), "tokens": len(nll)}
