"""The training loop: `train(config, workdir)` -> final metrics.

    import tfmr_jax.train
    metrics = tfmr_jax.train.train(config, "runs/reverse")   # a notebook does the same

Top to bottom: join the multi-process run if the config asks for one; validate the
config (a resume must match the recorded run); build the task, the mesh, the model (a
new run starts from `train.init_from`'s weights, if set) and the optimizer; shard the
state over the mesh; restore the newest intact checkpoint if the work directory has
one, then record the config; then step, logging, evaluating and checkpointing on their
schedules; evaluate at the end.
Data is a pure function of (seed, step) and the checkpoint holds everything else,
so a resumed run takes exactly the steps the uninterrupted one would, on any layout.
In a multi-process run every process runs this loop on the same global batches (each
transferring only its own devices' rows) and takes part in every checkpoint; only
process 0 writes config.json, metrics.jsonl, TensorBoard events and the progress bar.
"""

import contextlib
import math
import os
import sys
import time

from tqdm import tqdm

from tfmr_jax import config as config_lib
from tfmr_jax.nn import state as model_state
from tfmr_jax.tasks import make_task
from tfmr_jax.train import distributed
from tfmr_jax.train.build import build_model, build_state, model_config_of
from tfmr_jax.train.checkpoint import Checkpointer
from tfmr_jax.train.evaluate import decodes_answers, evaluate_held_out, greedy_exact_match
from tfmr_jax.train.init_from import check_init_from, check_vocab, initial_params
from tfmr_jax.train.interrupt import stop_requests
from tfmr_jax.train.mesh import batch_devices, make_mesh
from tfmr_jax.train.metrics_log import MetricsLog
from tfmr_jax.train.optim import build_optimizer
from tfmr_jax.train.run_config import load_config, save_config
from tfmr_jax.train.run_identity import check_resume, pin_corpus
from tfmr_jax.train.sharding import place_state, put_batch, sharding_context, step_out_shardings
from tfmr_jax.train.step import all_finite, init_state, make_eval_step, make_train_step
from tfmr_jax.train.train_window import TrainWindow


class NonFiniteLossError(FloatingPointError):
  """The training loss became NaN or infinite; the last good checkpoint is kept."""


def train(
  config, workdir: str, *, stop_at_step: int | None = None, allow_config_change: bool = False
) -> dict:
  """Train the model `config` describes in `workdir`, resuming from its latest checkpoint.

  Args:
    config: a ConfigDict or nested dict (partial is fine: see `tfmr_jax.config`).
    workdir: where config.json, metrics.jsonl, tensorboard/ and checkpoints/ go.
    stop_at_step: stop after this many steps as if interrupted (checkpoint saved),
      e.g. to run a long schedule in slices.
    allow_config_change: resume even if `config` differs from the run's recorded
      config.json in fields that change the run (see `run_identity`); refused otherwise.

  Returns:
    {"step", "split", <held-out metrics>, "train_loss", "wall_time_s"}; after SIGTERM,
    Ctrl-C or `stop_at_step`, {"step", "stopped": reason, "wall_time_s"} instead.

  Raises:
    ConfigError before anything is built; NonFiniteLossError naming the step, when
    the loss is non-finite or a checkpoint would hold a non-finite parameter or
    optimizer value (it is not written);
    CheckpointUnavailableError if the work directory has checkpoints but none intact
    (a damaged newest one is passed over with a DamagedCheckpointWarning).
  """
  start_time = time.perf_counter()
  distributed.join(config)  # first: before anything touches a JAX backend
  config = config_lib.validate(config)
  primary = distributed.is_primary()
  t = config.train
  checkpoints = Checkpointer(os.path.join(workdir, "checkpoints"), keep=t.keep_checkpoints)
  with contextlib.ExitStack() as cleanup:
    cleanup.callback(checkpoints.close)
    if checkpoints.latest_step() is None:
      config = pin_corpus(config)
    else:
      recorded = pin_corpus(load_config(workdir))  # a no-op unless recorded before pinning
      config = pin_corpus(config, recorded=recorded)
      check_resume(
        config,
        recorded,
        workdir=workdir,
        checkpoint_step=checkpoints.latest_step(),
        allow_config_change=allow_config_change,
      )

    fresh = checkpoints.latest_step() is None  # a resume restores its own weights
    if fresh:
      check_init_from(config)
    task = make_task(**config.task)
    mesh = check_layout(config, task)
    cleanup.enter_context(sharding_context(mesh))
    tx, schedule = build_optimizer(config)
    if fresh and t.init_from:
      check_vocab(config, task)
      parts = model_state.split(build_model(config, task, seed=t.seed))
      model = model_state.merge(parts.graphdef, initial_params(config, parts.params), parts.rest)
      train_graphdef, eval_graphdef, state = init_state(model, tx)
      state = place_state(state, mesh)
    else:  # a resume builds it too, as the template its checkpoint restores into
      train_graphdef, eval_graphdef, state = build_state(config, task, tx, mesh)
    train_step = make_train_step(
      train_graphdef,
      tx,
      data_format=task.format,
      label_smoothing=config.optim.label_smoothing,
      grad_accum_steps=t.grad_accum_steps,
      debug_checks=t.debug_checks,
      out_shardings=step_out_shardings(state, mesh),
    )
    eval_step = make_eval_step(eval_graphdef, data_format=task.format)

    def evaluate_now(state) -> dict:
      return evaluate_held_out(
        eval_step, state.params, state.rest, task, mesh, batch_size=t.eval_batch_size
      )

    def save(state) -> None:
      """Checkpoint `state`, unless a parameter or optimizer value is non-finite."""
      if not bool(all_finite((state.params, state.opt_state))):
        raise NonFiniteLossError(
          f"step {int(state.step)} made non-finite parameters or optimizer state; not "
          f"saved, stopped. The last good checkpoint (step {checkpoints.latest_step()}) "
          f"is kept in {workdir}"
        )
      checkpoints.save(state, extra={"train_window": window.as_dict()})

    window = TrainWindow()  # the metrics since the last train record
    if checkpoints.latest_step() is not None:
      state = checkpoints.restore(state)  # the newest intact one, warning about damaged ones
      window = TrainWindow.from_dict(checkpoints.extra(int(state.step)).get("train_window", {}))
    start = int(state.step)
    checkpoints.set_aside_after(start)  # damaged newer ones: this run writes those steps again
    if primary:  # only now: a failed resume leaves the recorded run as it was
      save_config(config, workdir)
    log = MetricsLog(workdir, tensorboard=t.tensorboard, enabled=primary)
    cleanup.callback(log.close)
    log.truncate_after(start)
    stop = cleanup.enter_context(stop_requests())
    bar = cleanup.enter_context(
      tqdm(
        total=t.num_steps,
        initial=start,
        desc=task.name,
        disable=not (t.progress_bar and primary),
        dynamic_ncols=True,
      )
    )

    if t.eval_at_start and start == 0:
      held_out = evaluate_now(state)
      log.write(0, task.eval_split, held_out)
      _say(_describe(0, task.eval_split, held_out))
    for step in range(start, t.num_steps):
      batch = put_batch(task.train_batch(t.seed, step, t.batch_size), mesh)
      done = step + 1
      try:
        state, metrics = train_step(state, batch)
      except AssertionError as e:  # train.debug_checks found a non-finite value in the step
        raise NonFiniteLossError(
          f"step {done} made non-finite values; stopped. The last good checkpoint "
          f"(step {checkpoints.latest_step()}) is kept in {workdir}. {e}"
        ) from e
      loss = window.add(metrics)
      if not math.isfinite(loss):
        raise NonFiniteLossError(
          f"training loss is {loss} at step {done}; stopped. The last good checkpoint "
          f"(step {checkpoints.latest_step()}) is kept in {workdir}"
        )
      bar.update(1)
      if done % t.log_every == 0:
        record = window.flush(learning_rate=float(schedule(step)))
        log.write(done, "train", record)
        bar.set_postfix(loss=f"{record['loss']:.4f}")
      if done % t.eval_every == 0 and done < t.num_steps:
        held_out = evaluate_now(state)
        log.write(done, task.eval_split, held_out)
        _say(_describe(done, task.eval_split, held_out))
      if done % t.checkpoint_every == 0:
        save(state)
      if distributed.any_process(bool(stop)) or done == stop_at_step:
        save(state)
        return {
          "step": done,
          "stopped": stop.name or "stop_at_step",
          "wall_time_s": time.perf_counter() - start_time,
        }

    if window.pending():  # the last update's learning rate, as in the loop's records
      record = window.flush(learning_rate=float(schedule(int(state.step) - 1)))
      log.write(int(state.step), "train", record)
    final = evaluate_now(state)
    if decodes_answers(task):
      final["greedy_exact_match"] = greedy_exact_match(
        model_state.merge(eval_graphdef, state.params, state.rest),
        task,
        batch_size=t.eval_batch_size,
      )
    log.write(int(state.step), task.eval_split, final)
    _say(_describe(int(state.step), task.eval_split, final))
    save(state)
    return {
      "step": int(state.step),
      "split": task.eval_split,
      **final,
      "train_loss": window.last_loss,
      "wall_time_s": time.perf_counter() - start_time,
    }


def check_layout(config, task):
  """The mesh of `config` over every device, or ConfigError naming the field, the value
  and the rule: the mesh axes' product must be the device count, heads and widths must
  divide over the model axis, batches over the data x fsdp axes. `config` is validated;
  `task` is its task (the model's sizes come from it)."""
  mesh = make_mesh(config.mesh, model_config_of(config, task))
  config_lib.check_devices(config, batch_devices(mesh))
  return mesh


def preflight(config, workdir: str) -> None:
  """What `train` would refuse of its inputs, checked before it writes anything: a new
  run's `train.init_from`, the corpus (and tokenizer) of char_lm and text, then the
  device layout. `config` is validated."""
  if not _has_checkpoints(workdir):
    check_init_from(config)
  task = make_task(**config.task)  # reads (or downloads) the corpus of char_lm and text
  if config.task.name in ("char_lm", "text") and not _has_checkpoints(workdir):
    check_vocab(config, task)
  check_layout(config, task)


def _say(line: str) -> None:
  """One line to stderr, above the progress bar, from process 0 only."""
  if distributed.is_primary():
    tqdm.write(line, file=sys.stderr)


def _has_checkpoints(workdir: str) -> bool:
  directory = os.path.join(workdir, "checkpoints")
  return os.path.isdir(directory) and any(d.isdigit() for d in os.listdir(directory))


def _describe(step: int, split: str, metrics: dict) -> str:
  return f"step {step} {split}: " + ", ".join(f"{k} {v:.4f}" for k, v in metrics.items())
