"""Reading a text corpus: from a local path, or downloaded once with a SHA-256 check.

    text = load_text("data/input.txt")                          # a local file
    text = load_text("missing.txt", url=TINY_SHAKESPEARE_URL,     # fetched into the cache
                     sha256=TINY_SHAKESPEARE_SHA256)

A download is checked against `sha256` before it is stored; the cache file is
written atomically (a temporary file renamed into place), so an interrupted
download never leaves a truncated corpus behind.

Every way a corpus can be unusable (missing with no URL, a failed download, a
directory, an empty, binary or non-UTF-8 file, a checksum mismatch) raises one
`CorpusError`, a ValueError naming the path (or URL) and the rule.
"""

import hashlib
import logging
import os
import tempfile
import urllib.error
import urllib.request
from collections.abc import Callable

TINY_SHAKESPEARE_URL = (
  "https://raw.githubusercontent.com/karpathy/char-rnn/master/data/tinyshakespeare/input.txt"
)
TINY_SHAKESPEARE_SHA256 = "86c4e6aa9db7c042ec79f339dcb96d42b0075e16b8fc2e86bf0ca57e2dc565ed"
DEFAULT_CACHE_DIR = "~/.cache/tfmr_jax"

_log = logging.getLogger(__name__)


class CorpusError(ValueError):
  """A corpus cannot be used; the message names its path or URL and the rule it broke."""


def decode_text(data: bytes, *, source: str, kind: str = "corpus") -> str:
  """`data` as text, or CorpusError: it must be non-empty UTF-8 with no NUL bytes.

  The message names the file as `kind` `source` (e.g. "corpus 'input.txt'")."""
  if not data:
    raise CorpusError(f"{kind} {source!r} is empty: a corpus needs some text")
  nul = data.find(bytes(1))
  if nul >= 0:
    raise CorpusError(f"{kind} {source!r} has a NUL byte at offset {nul}: a binary file, not text")
  try:
    text = data.decode("utf-8")
  except UnicodeDecodeError as e:
    raise CorpusError(
      f"{kind} {source!r} is not UTF-8 text: byte {data[e.start]:#04x} at offset {e.start}"
    ) from None
  return text


def _read_file(path: str, *, content_sha256: str = "") -> str:
  """The text of the file at `path`; with `content_sha256`, it must still have that hash."""
  if os.path.isdir(path):
    raise CorpusError(f"corpus_path {path!r} is a directory, not a text file")
  try:
    with open(path, "rb") as f:
      data = f.read()
  except OSError as e:
    raise CorpusError(f"corpus_path {path!r} cannot be read: {e.strerror or e}") from None
  got = sha256_hex(data)
  if content_sha256 and got != content_sha256:
    raise CorpusError(
      f"corpus_path {path!r} has changed since the run first read it: its SHA-256 is "
      f"{got}, the run recorded {content_sha256} (config.task.corpus_content_sha256)"
    )
  return decode_text(data, source=path)


def fetch_url(url: str) -> bytes:
  """The bytes at `url` (http(s) or file://)."""
  with urllib.request.urlopen(url, timeout=60) as response:
    return response.read()


def sha256_hex(data: bytes) -> str:
  return hashlib.sha256(data).hexdigest()


def corpus_sha256(path: str, *, url_sha256: str = "") -> str:
  """SHA-256 of the corpus `load_text` reads: the file at `path` if it exists, else the
  checked download (`url_sha256`); "" if neither."""
  if os.path.exists(path):
    with open(path, "rb") as f:
      return sha256_hex(f.read())
  return url_sha256


def load_text(
  path: str,
  *,
  url: str = "",
  sha256: str = "",
  cache_dir: str = DEFAULT_CACHE_DIR,
  fetch: Callable[[str], bytes] = fetch_url,
  content_sha256: str = "",
) -> str:
  """The UTF-8 text at `path`; if there is none and `url` is given, the cached download.

  Args:
    path: local corpus file, used as is when it exists (no checksum).
    url: where to download the corpus from when `path` does not exist ("" = never).
    sha256: expected SHA-256 (hex) of the download; required with `url`.
    cache_dir: where downloads are kept, as `<cache_dir>/<sha256>-<file name>`.
    fetch: url -> bytes (tests pass a local stand-in).
    content_sha256: if set, the SHA-256 the corpus read must have (a run's recorded
      corpus): ValueError naming the path and both hashes if it changed.
  """
  if os.path.exists(path):
    return _read_file(path, content_sha256=content_sha256)
  if content_sha256 and content_sha256 != sha256:
    raise CorpusError(
      f"corpus_path {path!r}, which the run read (SHA-256 {content_sha256}), does not exist"
    )
  if not url:
    raise CorpusError(f"corpus_path {path!r} does not exist and no corpus_url is set")
  if not sha256:
    raise CorpusError(f"corpus_url {url!r} needs corpus_sha256 to check the download")
  cache_dir = os.path.expanduser(cache_dir)
  cached = os.path.join(cache_dir, f"{sha256[:16]}-{os.path.basename(url) or 'corpus.txt'}")
  if os.path.exists(cached):
    with open(cached, "rb") as f:
      data = f.read()
    if sha256_hex(data) == sha256:
      return decode_text(data, source=cached)
  _log.warning("corpus_path %r not found: downloading %s into %s", path, url, cached)
  try:
    data = fetch(url)
  except (OSError, urllib.error.URLError) as e:  # URLError, HTTPError, timeouts
    reason = getattr(e, "reason", None) or e
    raise CorpusError(
      f"corpus_path {path!r} does not exist and downloading corpus_url {url!r} failed: "
      f"{' '.join(str(reason).split())}"
    ) from None
  got = sha256_hex(data)
  if got != sha256:
    raise CorpusError(f"corpus_url {url!r}: SHA-256 {got} does not match corpus_sha256 {sha256}")
  os.makedirs(cache_dir, exist_ok=True)
  fd, tmp = tempfile.mkstemp(dir=cache_dir, suffix=".part")
  with os.fdopen(fd, "wb") as f:
    f.write(data)
  os.replace(tmp, cached)
  return decode_text(data, source=url)
