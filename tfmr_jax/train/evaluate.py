"""Evaluation on the task's held-out set: teacher-forced metrics, and greedy decoding.

`evaluate_held_out` runs the compiled eval step over equal batches and returns the
task's metrics (loss, token accuracy, exact match or perplexity). For tasks with an
answer to produce (copy, sort, addition), `greedy_exact_match` also decodes every
held-out answer with the KV cache, from the prompt (or from BOS, for seq2seq), and
counts the sequences decoded exactly.
"""

import numpy as np
from flax import nnx

from tfmr_jax import decode
from tfmr_jax.train.loss import add_sums, finalize
from tfmr_jax.train.sharding import put_batch, to_host


def evaluate_held_out(eval_step, params, rest, task, mesh, *, batch_size: int) -> dict:
  """The task's metrics over its whole held-out set."""
  total = None
  for batch in task.eval_batches(batch_size):
    total = add_sums(total, eval_step(params, rest, put_batch(batch, mesh)))
  return finalize(total, task.metric_names)


def decodes_answers(task) -> bool:
  """Whether the task has answers to decode greedily (copy, sort, addition)."""
  return hasattr(task, "answer_len")


def greedy_answers(model: nnx.Module, task, inputs_BT: np.ndarray) -> np.ndarray:
  """Greedily decoded answers [B, answer_len]: from src (seq2seq) or the prompt (lm)."""
  M = task.answer_len
  if task.format == "seq2seq":
    out_BT = decode.generate_seq2seq(model, inputs_BT, max_new_tokens=M, bos_id=task.bos_id)
  else:
    out_BT = decode.generate(model, inputs_BT, max_new_tokens=M, temperature=0.0)
  return to_host(out_BT)[:, -M:]  # gathered, if decoding ran over many processes


def greedy_exact_match(model: nnx.Module, task, *, batch_size: int) -> float:
  """Fraction of held-out sequences whose greedily decoded answer is exactly right."""
  examples = task.eval_examples()
  if task.format == "seq2seq":
    inputs, answers = examples["src"], examples["targets"]
  else:
    inputs = examples["inputs"][:, : task.prompt_len]
    answers = examples["targets"][:, task.prompt_len - 1 :]
  correct = 0
  for start in range(0, len(inputs), batch_size):
    decoded = greedy_answers(model, task, inputs[start : start + batch_size])
    correct += int(np.sum(np.all(decoded == answers[start : start + batch_size], axis=1)))
  return correct / len(inputs)
