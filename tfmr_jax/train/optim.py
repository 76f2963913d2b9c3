"""The optimizer a config describes: AdamW or Adam, a learning-rate schedule, clipping.

Schedules (`config.optim.schedule`), as functions of the update count s = 0, 1, ...:
  constant       lr, after a linear warmup over warmup_steps (if any)
  warmup_cosine  linear warmup from 0 to lr, then cosine decay to lr * min_lr_ratio
                 at num_steps
  noam           the paper's lr * d_model^-0.5 * min((s+1)^-0.5, (s+1) warmup^-1.5);
                 `learning_rate` is the paper's "factor"
Weight decay (AdamW) applies to matrices and embeddings (ndim >= 2), not to biases
and LayerNorm scales, as in GPT-2 and nanoGPT.
"""

import jax
import jax.numpy as jnp
import optax


def learning_rate_schedule(optim, *, num_steps: int, d_model: int) -> optax.Schedule:
  """The learning rate of each update count, from `config.optim`."""
  lr, warmup = optim.learning_rate, optim.warmup_steps
  if optim.schedule == "noam":

    def noam(count):
      s = jnp.asarray(count, jnp.float32) + 1.0
      return lr * d_model**-0.5 * jnp.minimum(s**-0.5, s * warmup**-1.5)

    return noam
  if optim.schedule == "warmup_cosine":
    return optax.warmup_cosine_decay_schedule(
      init_value=0.0,
      peak_value=lr,
      warmup_steps=warmup,
      decay_steps=num_steps,
      end_value=lr * optim.min_lr_ratio,
    )
  if warmup == 0:
    return optax.constant_schedule(lr)
  return optax.join_schedules(
    [optax.linear_schedule(0.0, lr, warmup), optax.constant_schedule(lr)], [warmup]
  )


def build_optimizer(config) -> tuple[optax.GradientTransformation, optax.Schedule]:
  """(optax transformation, its learning-rate schedule) for `config.optim`."""
  o = config.optim
  schedule = learning_rate_schedule(
    o, num_steps=config.train.num_steps, d_model=config.model.d_model
  )
  if o.name == "adamw":
    step = optax.adamw(
      schedule,
      b1=o.b1,
      b2=o.b2,
      eps=o.eps,
      weight_decay=o.weight_decay,
      mask=lambda params: jax.tree.map(lambda p: p.ndim >= 2, params),
    )
  else:
    step = optax.adam(schedule, b1=o.b1, b2=o.b2, eps=o.eps)
  if o.grad_clip_norm > 0:
    step = optax.chain(optax.clip_by_global_norm(o.grad_clip_norm), step)
  return step, schedule
