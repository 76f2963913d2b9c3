"""The `model` section as a `TransformerConfig`: one set of architecture rules.

The section's fields are the architecture's; their rules (heads divide widths,
rates in range, known choices) are `TransformerConfig`'s own, so they are written
once. The task supplies the sizes the section does not hold (vocab_size, max_len).
"""

from tfmr_jax.config.rules import ConfigError
from tfmr_jax.models import ModelConfigError, TransformerConfig


def model_config(model, *, vocab_size: int, max_len: int) -> TransformerConfig:
  """The TransformerConfig of a `model` section, sized for a task.

  kind "gpt" starts from the GPT-2 architecture (`TransformerConfig.gpt`), which the
  section's fields override; "encoder" gets a per-position head over the vocabulary;
  "encoder_decoder" shares its embeddings when `share_embeddings` says so, and ties its
  output layer when `tie_output` says so (None: when it shares them).
  """
  fields = dict(
    vocab_size=vocab_size,
    max_len=max_len,
    num_layers=model["num_layers"],
    d_model=model["d_model"],
    num_heads=model["num_heads"],
    num_kv_heads=model["num_kv_heads"],
    d_ff=model["d_ff"],
    dropout=model["dropout"],
    attention_dropout=model["attention_dropout"],
    window=model["window"],
    window_pattern=model["window_pattern"],
    norm=model["norm"],
    norm_kind=model["norm_kind"],
    positions=model["positions"],
    rope_base=model["rope_base"],
    activation=model["activation"],
    qk_norm=model["qk_norm"],
    use_bias=model["use_bias"],
    attention_implementation=model["attention_implementation"],
    dtype=model["dtype"],
    param_dtype=model["param_dtype"],
  )
  tie = model["tie_output"]
  if model["kind"] == "gpt":
    return TransformerConfig.gpt(**fields, tie_output=True if tie is None else tie)
  if model["kind"] == "encoder":
    if tie:
      raise ModelConfigError(
        "tie_output", tie, "model.kind 'encoder' has a per-position head of its own, never tied"
      )
    return TransformerConfig(**fields, num_outputs=vocab_size)
  share = model["share_embeddings"]
  return TransformerConfig(
    **fields, share_embeddings=share, tie_output=share if tie is None else tie
  )


def check_model(model) -> None:
  """ConfigError as `config.model.<field> = <value>: <rule>` where the architecture breaks one.

  The task's sizes are not known yet (a corpus may still have to be read); no rule
  of the section depends on them, so stand-ins do.
  """
  try:
    model_config(model, vocab_size=1, max_len=1)
  except ModelConfigError as e:
    raise ConfigError(f"config.model.{e.field} = {e.value!r}: {e.rule}") from None
