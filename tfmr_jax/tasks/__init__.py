"""Toy tasks and text data: examples are pure functions of (seed, step).

Tasks know nothing of models. Each gives `train_batch(seed, step, batch_size)`,
`eval_batches(batch_size)` over a fixed held-out set, its example `format`
("tagging", "seq2seq" or "lm"), `vocab_size`, `max_len`, and text conversion for
sampling (`encode_input`, `decode_output`).

    task = make_task("reverse", num_symbols=10, length=16, test_size=10_000)
    batch = task.train_batch(seed=0, step=7, batch_size=128)   # dict of numpy arrays
"""

from tfmr_jax.tasks.addition import Addition
from tfmr_jax.tasks.char_lm import CharLM
from tfmr_jax.tasks.copy import Copy
from tfmr_jax.tasks.corpus import (
  TINY_SHAKESPEARE_SHA256,
  TINY_SHAKESPEARE_URL,
  CorpusError,
  corpus_sha256,
  load_text,
)
from tfmr_jax.tasks.heldout import HeldOut, max_test_size, sequence_hash_B
from tfmr_jax.tasks.reverse import Reverse
from tfmr_jax.tasks.sort import Sort
from tfmr_jax.tasks.text import TextLM, cached_token_ids
from tfmr_jax.tasks.tokenizer import TokenizerError, fingerprint_sha256, load_tokenizer

TASKS = {cls.name: cls for cls in (Reverse, Copy, Sort, Addition, CharLM, TextLM)}
FORMATS = {name: cls.format for name, cls in TASKS.items()}


def make_task(name: str, **fields):
  """The task `name` built from its config fields (those of `config.task` but `name`).

  char_lm takes corpus_path, corpus_url, corpus_sha256, cache_dir, corpus_content_sha256,
  block_size and val_fraction, and reads (or downloads) the corpus here. text takes the
  same, tokenizer_dir and tokenizer_sha256: it loads that tokenizer (refused if it no
  longer matches a recorded tokenizer_sha256) and the corpus's token ids (tokenized once,
  then cached in cache_dir).
  """
  if name not in TASKS:
    raise ValueError(f"unknown task {name!r}; choose from {', '.join(sorted(TASKS))}")
  if name == "char_lm":
    path = fields.pop("corpus_path")
    text = load_text(
      path,
      url=fields.pop("corpus_url"),
      sha256=fields.pop("corpus_sha256"),
      cache_dir=fields.pop("cache_dir"),
      content_sha256=fields.pop("corpus_content_sha256", ""),
    )
    return CharLM(text=text, source=path, **fields)
  if name == "text":
    return _text_task(**fields)
  return TASKS[name](**fields)


def _text_task(
  *,
  corpus_path: str,
  corpus_url: str,
  corpus_sha256: str,
  cache_dir: str,
  tokenizer_dir: str,
  block_size: int,
  val_fraction: float,
  corpus_content_sha256: str = "",
  tokenizer_sha256: str = "",
) -> TextLM:
  try:
    tokenizer = load_tokenizer(tokenizer_dir)
  except TokenizerError as e:
    raise CorpusError(f"config.task.tokenizer_dir = {tokenizer_dir!r}: {e}") from None
  got = fingerprint_sha256(tokenizer)
  if tokenizer_sha256 and got != tokenizer_sha256:
    raise CorpusError(
      f"config.task.tokenizer_dir = {tokenizer_dir!r}: its tokenizer changed since the run "
      f"began (its files' SHA-256 {got}, the run recorded {tokenizer_sha256} in "
      "config.task.tokenizer_sha256): the run's token ids would change; restore the files or "
      "use a new workdir"
    )
  ids_T = cached_token_ids(
    corpus_path,
    tokenizer,
    cache_dir=cache_dir,
    url=corpus_url,
    sha256=corpus_sha256,
    content_sha256=corpus_content_sha256,
  )
  return TextLM(
    ids_T=ids_T,
    tokenizer=tokenizer,
    block_size=block_size,
    val_fraction=val_fraction,
    source=corpus_path,
  )


__all__ = [
  "FORMATS",
  "TASKS",
  "TINY_SHAKESPEARE_SHA256",
  "TINY_SHAKESPEARE_URL",
  "Addition",
  "CharLM",
  "Copy",
  "CorpusError",
  "HeldOut",
  "Reverse",
  "Sort",
  "TextLM",
  "corpus_sha256",
  "load_text",
  "make_task",
  "max_test_size",
  "sequence_hash_B",
]
