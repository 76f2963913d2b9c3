"""Corpus loading: local files as they are; downloads checked by SHA-256 and cached. No network."""

import hashlib

import pytest

from tfmr_jax.tasks import CorpusError, load_text

TEXT = "First Citizen:\nBefore we proceed any further, hear me speak.\n"
SHA = hashlib.sha256(TEXT.encode()).hexdigest()


def test_local_path_is_read_as_is(tmp_path):
  path = tmp_path / "input.txt"
  path.write_text(TEXT)
  assert load_text(str(path), url="file:///nonexistent", sha256="0" * 64) == TEXT


def test_download_from_a_file_url_is_checked_and_cached(tmp_path):
  source = tmp_path / "remote" / "input.txt"
  source.parent.mkdir()
  source.write_text(TEXT)
  cache = tmp_path / "cache"
  got = load_text(
    str(tmp_path / "missing.txt"), url=source.as_uri(), sha256=SHA, cache_dir=str(cache)
  )
  assert got == TEXT
  cached = list(cache.iterdir())
  assert len(cached) == 1 and cached[0].read_text() == TEXT

  def no_network(url):
    raise AssertionError("the cached copy should have been used")

  assert (
    load_text(
      "missing.txt", url=source.as_uri(), sha256=SHA, cache_dir=str(cache), fetch=no_network
    )
    == TEXT
  )


def test_a_download_with_the_wrong_hash_is_rejected_and_not_cached(tmp_path):
  cache = tmp_path / "cache"
  with pytest.raises(ValueError, match=f"SHA-256 {SHA} does not match corpus_sha256 {'a' * 64}"):
    load_text(
      "missing.txt",
      url="https://example.invalid/input.txt",
      sha256="a" * 64,
      cache_dir=str(cache),
      fetch=lambda url: TEXT.encode(),
    )
  assert not cache.exists() or not any(cache.iterdir())


def test_missing_corpus_without_url_names_the_path(tmp_path):
  with pytest.raises(CorpusError, match="corpus_path .*missing.txt' does not exist"):
    load_text(str(tmp_path / "missing.txt"))
