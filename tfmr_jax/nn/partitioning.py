"""Logical axis names: what each dimension of a parameter or activation means.

Dimension key: B batch, T positions, D model dim, N query heads, K kv heads, H head dim,
F feed-forward dim, V vocabulary, P position table length.

Modules name the axes of their parameters by meaning (embed, heads, mlp, vocab, ...),
never by mesh axis. One rules table elsewhere (the training code's mesh module) maps
each logical name to a mesh axis ("data", "fsdp", "model") or to None (replicated);
these strings are the contract between the two.

Parameters carry the names as NNX partitioning metadata: `param_axes(EMBED, MLP)` is
the dict to pass as nnx's `kernel_metadata=` (and `bias_metadata=`,
`embedding_metadata=`, `scale_metadata=`). It sets `eager_sharding=False`, so building
a model without a mesh is what it always was; `nnx.get_partition_spec(state)` reads
the names back, mapped through the rules when inside `nnx.logical_axis_rules(...)`.

    parameter         shape     names
    token table       [V, D]    (vocab, embed)
    position table    [P, D]    (positions, embed)
    query kernel      [D, N*H]  (embed, heads)        key/value: (embed, kv_heads)
    output kernel     [N*H, D]  (heads, embed)
    FFN hidden, gate  [D, F]    (embed, mlp)          FFN out: (mlp, embed)
    norm scale, bias  [D] / [H] (norm,)
    untied head       [D, V]    (embed, vocab)
    one-head q, k, v  [D, H]    (embed, head_dim)     (SingleHeadAttention)

A bias is named by its kernel's output axis.

Activations go through `constrain(x, *names)`: a sharding constraint by logical names
when rules and a mesh are set (`nnx.logical_axis_rules` and `jax.set_mesh`), the
identity otherwise, so a single-device run is untouched.
"""

import jax
from flax.core import spmd
from jax.sharding import PartitionSpec

# Parameter axes.
VOCAB = "vocab"
EMBED = "embed"
HEADS = "heads"
KV_HEADS = "kv_heads"
MLP = "mlp"
NORM = "norm"
POSITIONS = "positions"
HEAD_DIM = "head_dim"
PARAM_AXES = (VOCAB, EMBED, HEADS, KV_HEADS, MLP, NORM, POSITIONS, HEAD_DIM)

# Activation axes.
ACT_BATCH = "act_batch"
ACT_LENGTH = "act_length"
ACT_EMBED = "act_embed"
ACT_HEADS = "act_heads"  # the N or K axis of [B, T, N, H] / [B, S, K, H]
ACT_MLP = "act_mlp"
ACTIVATION_AXES = (ACT_BATCH, ACT_LENGTH, ACT_EMBED, ACT_HEADS, ACT_MLP)


def param_axes(*names: str) -> dict:
  """The NNX metadata naming a parameter's axes, one name per dimension."""
  return {"out_sharding": names, "eager_sharding": False}


def constrain(x: jax.Array, *names: str | None) -> jax.Array:
  """x constrained to the mesh axes its logical `names` map to, one name per dimension,
  when logical axis rules and a mesh (`jax.set_mesh`) are both set; else x itself.

  A name the rules do not mention (or None) leaves that dimension unsharded. On a mesh
  whose axes are all Explicit it reshards (`jax.sharding.reshard`), as NNX does for
  parameters; otherwise it is `jax.lax.with_sharding_constraint`.
  """
  if len(names) != x.ndim:
    raise ValueError(f"constrain got {len(names)} names {names} for an array of rank {x.ndim}")
  rules = spmd.get_logical_axis_rules()
  mesh = jax.sharding.get_abstract_mesh()
  if not rules or mesh.empty:
    return x
  table = dict(rules)
  spec = PartitionSpec(*(table.get(name) for name in names))
  if mesh.are_all_axes_explicit:
    return jax.sharding.reshard(x, spec)
  return jax.lax.with_sharding_constraint(x, spec)
