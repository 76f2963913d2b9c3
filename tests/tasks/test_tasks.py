"""Each task's examples against an independent statement of what the task is."""

import numpy as np
import pytest

from tfmr_jax.tasks import Addition, CharLM, Copy, Reverse, Sort, make_task
from tfmr_jax.tasks.batching import padded_batches


def test_reverse_targets_are_the_inputs_backwards():
  task = Reverse(num_symbols=7, length=11, test_size=100)
  batch = task.train_batch(0, 0, 13)
  for x, y in zip(batch["inputs"], batch["targets"], strict=True):
    assert list(y) == list(reversed(list(x)))
  assert batch["weights"].shape == (13, 11) and (batch["weights"] == 1).all()
  assert task.vocab_size == 7 and task.max_len == 11
  assert task.decode_output(np.array([3, 1, 4])) == "3 1 4"
  np.testing.assert_array_equal(
    task.encode_input("1 2 3 4 5 6 0 1 2 3 4"), [1, 2, 3, 4, 5, 6, 0, 1, 2, 3, 4]
  )


def test_copy_teacher_forcing_starts_from_bos():
  task = Copy(num_symbols=5, length=7, test_size=50)
  batch = task.train_batch(1, 2, 9)
  assert task.vocab_size == 6 and task.bos_id == 0
  assert (batch["src"] >= 1).all() and (batch["src"] <= 5).all()
  np.testing.assert_array_equal(batch["targets"], batch["src"])
  assert (batch["tgt_in"][:, 0] == 0).all()
  np.testing.assert_array_equal(batch["tgt_in"][:, 1:], batch["src"][:, :-1])
  assert task.decode_output(task.encode_input("4 0 3 2 1 1 0")) == "4 0 3 2 1 1 0"


def test_sort_weights_exactly_the_sorted_half():
  task = Sort(num_symbols=3, length=6, test_size=100)
  batch = task.train_batch(0, 5, 17)
  assert batch["inputs"].shape == (17, 11)
  for x, y, w in zip(batch["inputs"], batch["targets"], batch["weights"], strict=True):
    sequence = list(x) + [y[-1]]
    assert sequence[6:] == sorted(sequence[:6])
    assert list(y) == sequence[1:]
    assert list(w) == [0.0] * 5 + [1.0] * 6  # targets 5..10 are the sorted tokens
  assert (task.prompt_len, task.answer_len, task.max_len) == (6, 6, 12)


def test_addition_answer_is_the_sum_written_backwards():
  task = Addition(num_digits=2, test_size=1000)
  batch = task.train_batch(0, 0, 50)
  for x, y in zip(batch["inputs"], batch["targets"], strict=True):
    sequence = list(x) + [y[-1]]
    a = int("".join(map(str, sequence[0:2])))
    b = int("".join(map(str, sequence[2:4])))
    assert int("".join(map(str, reversed(sequence[4:7])))) == a + b
    assert task.decode_output(np.array(sequence[4:7])) == str(a + b)
  assert (batch["weights"][:, 3:] == 1).all() and (batch["weights"][:, :3] == 0).all()
  np.testing.assert_array_equal(task.encode_input("7+85"), [0, 7, 8, 5])
  with pytest.raises(ValueError, match="at most 2 digits"):
    task.encode_input("100+1")


def test_addition_test_set_is_exactly_1000_sums_not_in_training():
  task = Addition(num_digits=2, test_size=1000)
  test_pairs = {tuple(r) for r in task.eval_examples()["inputs"][:, :4]}
  assert len(test_pairs) == 1000
  for step in range(10):
    train_pairs = {tuple(r) for r in task.train_batch(0, step, 512)["inputs"][:, :4]}
    assert not train_pairs & test_pairs


def test_eval_batches_pad_the_last_batch_with_zero_weight_rows():
  examples = {"inputs": np.arange(10).reshape(5, 2), "weights": np.ones((5, 2), np.float32)}
  batches = list(padded_batches(examples, 2))
  assert len(batches) == 3 and all(len(b["inputs"]) == 2 for b in batches)
  assert batches[-1]["weights"].tolist() == [[1, 1], [0, 0]]
  assert sum(b["weights"].sum() for b in batches) == 10


TEXT = "hello world, the quick brown fox jumps over the lazy dog. " * 20


def test_char_lm_vocabulary_split_and_windows():
  task = CharLM(text=TEXT, block_size=8, val_fraction=0.25)
  assert task.chars == sorted(set(TEXT))
  split = int(len(TEXT) * 0.75)
  assert task.decode_output(task.train_ids) == TEXT[:split]
  assert task.decode_output(task.val_ids) == TEXT[split:]
  batch = task.train_batch(0, 3, 5)
  for x, y in zip(batch["inputs"], batch["targets"], strict=True):
    window = task.decode_output(np.concatenate([x, y[-1:]]))
    assert window in TEXT[:split] and task.decode_output(y) == window[1:]
  evals = task.eval_examples()
  covered = "".join(task.decode_output(x) for x in evals["inputs"])
  assert covered == TEXT[split:][: len(covered)] and len(covered) >= len(TEXT) - split - 16
  assert task.decode_output(task.encode_input("lazy fox")) == "lazy fox"
  with pytest.raises(ValueError, match=r"not in the corpus: \['Z'\]"):
    task.encode_input("Zebra")


def test_make_task_reads_the_corpus_file(tmp_path):
  path = tmp_path / "corpus.txt"
  path.write_text(TEXT)
  task = make_task(
    "char_lm",
    corpus_path=str(path),
    corpus_url="",
    corpus_sha256="",
    cache_dir=str(tmp_path),
    block_size=8,
    val_fraction=0.1,
  )
  assert task.vocab_size == len(set(TEXT)) and task.max_len == 8
  with pytest.raises(ValueError, match="unknown task 'revers'"):
    make_task("revers")
