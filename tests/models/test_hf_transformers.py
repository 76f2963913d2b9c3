"""transformers itself loads what to_hf writes and gives our logits (skipped without torch).

The project environment has no torch, so this skips there and in CI; the same check runs
from two environments with tests/golden/check_export_with_transformers.py (see
tests/golden/README.md for the figures it measured).
"""

import jax
import numpy as np
import pytest

from tests.models.test_hf_export import RANDOM, trained_ish
from tfmr_jax.models import to_hf

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")


def test_gpt2lmheadmodel_loads_the_export_with_our_logits(tmp_path):
  model = trained_ish(RANDOM)
  out = to_hf(model, tmp_path / "hf")
  reference, info = transformers.GPT2LMHeadModel.from_pretrained(
    out, dtype=torch.float32, attn_implementation="eager", output_loading_info=True
  )
  assert not any(info.get(k) for k in ("missing_keys", "unexpected_keys", "mismatched_keys"))
  reference.eval()
  tokens = np.random.default_rng(0).integers(0, RANDOM.vocab_size, (2, RANDOM.max_len))
  with torch.no_grad():
    want = reference(torch.from_numpy(tokens).long()).logits.numpy()
  got = np.asarray(jax.jit(lambda t: model(t))(tokens))
  np.testing.assert_allclose(got, want, atol=1e-4, rtol=0)
