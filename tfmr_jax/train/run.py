"""A trained run, reloaded from its work directory: evaluate it, or sample from it.

tfmr_jax.train.evaluate("runs/reverse")                  # held-out metrics, as a dict
tfmr_jax.train.sample("runs/char_lm", "ROMEO:", max_new_tokens=200)
tfmr_jax.train.sample("runs/copy", "3 1 4 1 5 9 2 6 5 3")  # a seq2seq task decodes its input
"""

import dataclasses
import os

import jax
import numpy as np
from flax import nnx

from tfmr_jax import config as config_lib
from tfmr_jax import decode
from tfmr_jax.nn import state as model_state
from tfmr_jax.tasks import make_task
from tfmr_jax.train.build import build_model
from tfmr_jax.train.checkpoint import Checkpointer
from tfmr_jax.train.evaluate import (
  decodes_answers,
  evaluate_held_out,
  greedy_answers,
  greedy_exact_match,
)
from tfmr_jax.train.mesh import DATA_PARALLEL, batch_devices, make_mesh
from tfmr_jax.train.optim import build_optimizer
from tfmr_jax.train.run_config import load_config
from tfmr_jax.train.sharding import place_state
from tfmr_jax.train.step import TrainState, init_state, make_eval_step


@dataclasses.dataclass
class Run:
  """A run's config, task, restored state and its model in eval mode."""

  config: object
  task: object
  state: TrainState
  eval_graphdef: object

  @property
  def step(self) -> int:
    return int(self.state.step)

  @property
  def model(self) -> nnx.Module:
    return model_state.merge(self.eval_graphdef, self.state.params, self.state.rest)


def load_run(workdir: str, *, step: int | None = None) -> Run:
  """The run in `workdir` at checkpoint `step` (default: the newest intact one).

  Raises CheckpointUnavailableError (a FileNotFoundError) naming the step and the steps
  that exist if `step` is missing or damaged, or if no checkpoint is intact.
  """
  config = load_config(workdir)
  task = make_task(**config.task)
  tx, _ = build_optimizer(config)
  _, eval_graphdef, state = init_state(build_model(config, task, seed=config.train.seed), tx)
  checkpoints = Checkpointer(
    os.path.join(workdir, "checkpoints"), keep=config.train.keep_checkpoints
  )
  try:
    if checkpoints.latest_step() is None:
      raise FileNotFoundError(f"no checkpoint in {workdir!r}/checkpoints: train first")
    state = checkpoints.restore(state, step)
  finally:
    checkpoints.close()
  return Run(config, task, state, eval_graphdef)


def evaluate(workdir: str, *, step: int | None = None) -> dict:
  """{"step", "split", <held-out metrics>} of the run's checkpoint (default: the latest)."""
  run = load_run(workdir, step=step)
  # Data parallel over this process's devices, whatever layout trained the run.
  mesh = make_mesh(DATA_PARALLEL, devices=jax.local_devices())
  config_lib.check_devices(run.config, batch_devices(mesh))
  state = place_state(run.state, mesh)
  eval_step = make_eval_step(run.eval_graphdef, data_format=run.task.format)
  metrics = evaluate_held_out(
    eval_step, state.params, state.rest, run.task, mesh, batch_size=run.config.train.eval_batch_size
  )
  if decodes_answers(run.task):
    metrics["greedy_exact_match"] = greedy_exact_match(
      run.model, run.task, batch_size=run.config.train.eval_batch_size
    )
  return {"step": run.step, "split": run.task.eval_split, **metrics}


def sample(
  workdir: str,
  text: str,
  *,
  max_new_tokens: int = 200,
  temperature: float = 0.8,
  top_k: int | None = None,
  top_p: float = 1.0,
  seed: int = 0,
) -> str:
  """The model's output for `text`.

  Language model (char_lm): `text` continued by `max_new_tokens` characters, sampled
  at `temperature` (0 = greedy) with the KV cache; past the model's context it
  slides on, keeping the last half of the window. Toy tasks: the greedy answer for
  the input `text` (e.g. "3 1 4 1 5" for reverse, copy and sort, "47+85" for addition).
  The options are checked first, whatever the task: ValueError unless max_new_tokens
  > 0, temperature is a finite number >= 0, top_k is None or in [1, V] and top_p in
  (0, 1] (nucleus sampling, 1 = off).
  """
  temperature = decode.check_sampling_options(
    max_new_tokens=max_new_tokens, temperature=temperature, top_k=top_k, top_p=top_p
  )
  run = load_run(workdir)
  task, model = run.task, run.model
  V = run.model.config.tgt_vocab_size  # the output vocabulary (vocab_size but seq2seq)
  if top_k is not None and top_k > V:
    raise ValueError(f"top_k={top_k} must lie in [1, vocab_size={V}]")
  tokens_T = task.encode_input(text)
  if task.format == "tagging":
    logits_BTV = model(tokens_T[None])
    return task.decode_output(np.asarray(logits_BTV.argmax(-1))[0])
  if decodes_answers(task):
    return task.decode_output(greedy_answers(model, task, tokens_T[None])[0])
  new_T = _continue(
    model,
    tokens_T,
    max_new_tokens=max_new_tokens,
    temperature=temperature,
    top_k=top_k,
    top_p=top_p,
    rng=jax.random.key(seed),
  )
  return text + task.decode_output(new_T)


def _continue(model, tokens_T, *, max_new_tokens, temperature, top_k, top_p, rng) -> np.ndarray:
  """`max_new_tokens` new tokens after `tokens_T`, window by window of the model's max_len."""
  W = model.config.max_len
  tokens = np.asarray(tokens_T)[-(W - 1) :]
  new = []
  while len(new) < max_new_tokens:
    context_T = np.concatenate([tokens, np.asarray(new, np.int32)])
    if new:
      context_T = context_T[-(W // 2) :]
    m = min(max_new_tokens - len(new), W - len(context_T))
    rng, key = jax.random.split(rng)
    out_BT = decode.generate(
      model,
      context_T[None],
      max_new_tokens=m,
      temperature=temperature,
      top_k=top_k,
      top_p=top_p,
      rng=key if temperature > 0 else None,
    )
    new.extend(np.asarray(out_BT[0, len(context_T) :]).tolist())
  return np.asarray(new, np.int32)
