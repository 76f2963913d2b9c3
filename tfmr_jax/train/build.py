"""The model a config describes (encoder, encoder-decoder or GPT, sized for its task), and
its training state, built on the run's mesh."""

import math

import jax
import optax
from flax import nnx
from jax.sharding import Mesh

from tfmr_jax.config import model_config
from tfmr_jax.models import GPT2, EncoderDecoderTransformer, TransformerConfig, TransformerEncoder
from tfmr_jax.nn import state as model_state
from tfmr_jax.train.sharding import place_state, state_shardings
from tfmr_jax.train.step import init_state

FAMILIES = {
  "encoder": TransformerEncoder,
  "encoder_decoder": EncoderDecoderTransformer,
  "gpt": GPT2,
}


def model_config_of(config, task) -> TransformerConfig:
  """The TransformerConfig of `config.model`, sized for `task` (its vocab_size and max_len)."""
  return model_config(config.model, vocab_size=task.vocab_size, max_len=task.max_len)


def build_model(config, task, *, seed: int) -> nnx.Module:
  """A freshly initialised model for `task` (its vocab_size and max_len), from `config.model`.

  Parameters come from the 'params' stream of `seed`, dropout masks from its
  'dropout' stream.
  """
  key = jax.random.key(seed)
  rngs = nnx.Rngs(params=jax.random.fold_in(key, 0), dropout=jax.random.fold_in(key, 1))
  return FAMILIES[config.model.kind](model_config_of(config, task), rngs=rngs)


def build_state(config, task, tx: optax.GradientTransformation, mesh: Mesh):
  """(train graphdef, eval graphdef, TrainState at step 0 on `mesh`) of a fresh model.

  When the layout shards parameters (mesh.fsdp or mesh.model > 1), the state is
  initialised by one jitted call whose outputs are already sharded, so neither the
  model nor its optimizer state is ever whole on one device; otherwise it is built
  eagerly and copied onto the mesh. Both draw the same random numbers; compiled, the
  initialisers' arithmetic may round differently, by at most an ulp or so (3e-8 seen).
  """
  seed = config.train.seed

  def fresh_state():
    return init_state(build_model(config, task, seed=seed), tx)[2]

  if math.prod(mesh.shape[axis] for axis in ("fsdp", "model")) == 1:
    train_graphdef, eval_graphdef, state = init_state(build_model(config, task, seed=seed), tx)
    return train_graphdef, eval_graphdef, place_state(state, mesh)
  abstract_model = nnx.eval_shape(lambda: build_model(config, task, seed=seed))
  train_graphdef, eval_graphdef = model_state.mode_graphdefs(abstract_model)
  shardings = state_shardings(jax.eval_shape(fresh_state), mesh)
  return train_graphdef, eval_graphdef, jax.jit(fresh_state, out_shardings=shardings)()
