"""Training over several processes: the same losses as one device, checkpoints that move
between layouts, and a lost process that stops the others instead of hanging them.

Each multi-process run is two local processes with 4 forced CPU devices each, their
collectives through gloo, started through the CLI as a user would.
"""

import json
import re
import signal
import subprocess
import sys
import time

import jax
import numpy as np
import pytest

from tests.train.multiprocess import REPO, device_env, run, start, write_recipe
from tests.train.quick import quick_config
from tfmr_jax.train import load_run, read_metrics, train

STEPS = 20
SECTIONS = {
  "model": {"num_heads": 2},
  "optim": {"warmup_steps": 5},
  "train": {"num_steps": STEPS, "log_every": 1, "batch_size": 64, "eval_batch_size": 200},
}


def _losses(workdir) -> np.ndarray:
  return np.asarray([r["loss"] for r in read_metrics(str(workdir), "train")])


@pytest.fixture(scope="module")
def one_device_run(tmp_path_factory):
  """The work directory of the run on this process's one device."""
  workdir = tmp_path_factory.mktemp("one_device")
  train(quick_config("reverse", **SECTIONS), str(workdir))
  return workdir


@pytest.fixture(scope="module")
def one_device(one_device_run):
  """The 20 training losses of the run on this process's one device."""
  return _losses(one_device_run)


def _assert_same_parameters(workdir, reference) -> None:
  """The final parameters within 1e-6 of the reference run's, except the key bias: its
  gradient is zero in exact arithmetic (a constant on every key's logit cancels in the
  softmax), so it moves by round-off noise that Adam scales to the learning rate."""
  ours, theirs = load_run(str(workdir)).state.params, load_run(str(reference)).state.params
  flat = jax.tree_util.tree_flatten_with_path(ours)[0]
  for (path, a), b in zip(flat, jax.tree.leaves(theirs), strict=True):
    name = jax.tree_util.keystr(path, simple=True, separator="/")
    if "attention/key/bias" not in name:
      np.testing.assert_allclose(np.asarray(a), np.asarray(b), rtol=0, atol=1e-6, err_msg=name)


def _assert_ok(results) -> None:
  for i, (code, _, err) in enumerate(results):
    assert code == 0, f"process {i} exited {code}: {err[-3000:]}"


def test_two_processes_with_fsdp_train_as_one_device_and_resume_in_one(
  tmp_path, one_device, one_device_run
):
  recipe = write_recipe(tmp_path / "recipe.py", **SECTIONS)
  workdir = tmp_path / "run"
  mesh = ["--config.mesh.data=2", "--config.mesh.fsdp=4"]  # 8 devices over 2 processes
  results = run(recipe, str(workdir), processes=2, devices=4, args=[*mesh, "--stop-at-step=10"])
  _assert_ok(results)
  reports = [json.loads(out.strip().splitlines()[-1]) for _, out, _ in results]
  assert [r["step"] for r in reports] == [10, 10]  # both stopped at the same step
  # Only process 0 wrote the run's files; both wrote the checkpoint.
  np.testing.assert_allclose(_losses(workdir), one_device[:10], rtol=0, atol=1e-5)
  # The checkpoint of 2 processes x 4 devices, FSDP, resumed by 1 process on 1 device.
  train(quick_config("reverse", **SECTIONS), str(workdir))
  np.testing.assert_allclose(_losses(workdir), one_device, rtol=0, atol=1e-5)
  _assert_same_parameters(workdir, one_device_run)


@pytest.mark.slow  # its mirror image, 2 processes -> 1, is in the default suite
def test_one_device_checkpoint_resumes_in_two_processes(tmp_path, one_device):
  workdir = tmp_path / "run"
  train(quick_config("reverse", **SECTIONS), str(workdir), stop_at_step=10)
  recipe = write_recipe(tmp_path / "recipe.py", **SECTIONS)
  tp = ["--config.mesh.fsdp=4", "--config.mesh.model=2"]  # fsdp 4 x model 2
  _assert_ok(run(recipe, str(workdir), processes=2, devices=4, args=tp))
  np.testing.assert_allclose(_losses(workdir), one_device, rtol=0, atol=1e-5)


def _records_so_far(workdir) -> int:
  """Train records written so far by a run in progress (0 while a line is half written)."""
  try:
    return len(read_metrics(str(workdir), "train"))
  except json.JSONDecodeError:
    return 0


def test_a_killed_process_stops_the_other_within_a_minute_naming_it(tmp_path):
  sections = {**SECTIONS, "train": {**SECTIONS["train"], "num_steps": 100_000}}
  recipe = write_recipe(tmp_path / "recipe.py", **sections)
  workdir = tmp_path / "run"
  procs = start(
    recipe,
    str(workdir),
    processes=2,
    devices=4,
    args=["--config.distributed.heartbeat_timeout_s=5"],
  )
  try:
    deadline = time.monotonic() + 240
    while _records_so_far(workdir) < 3:  # both are stepping together
      assert time.monotonic() < deadline, "the run did not start"
      assert procs[0].poll() is None and procs[1].poll() is None, procs[0].stderr.read()
      time.sleep(0.5)
    procs[1].send_signal(signal.SIGKILL)
    killed = time.monotonic()
    _, err = procs[0].communicate(timeout=60)
    waited = time.monotonic() - killed
  finally:
    for p in procs:
      p.kill()
      p.communicate()  # reaps it and closes its pipes
  assert procs[0].returncode != 0
  assert waited < 60
  # JAX's coordination service names the lost process ("tasks are unhealthy ...: 1"),
  # unless gloo's transport fails first, in the middle of a collective with it.
  named = re.search(r"tasks are unhealthy \(stopped sending heartbeats\):\s*1\b", err)
  assert named or "gloo" in err, err[-3000:]


def _eight_devices(tmp_path, layouts: str) -> dict:
  """tests/train/eight_device_layouts.py's result for the comma-separated `layouts`."""
  out = subprocess.run(
    [sys.executable, "-m", "tests.train.eight_device_layouts", str(tmp_path), layouts],
    env=device_env(8),
    cwd=REPO,
    capture_output=True,
    text=True,
    timeout=600,
  )
  assert out.returncode == 0, out.stderr[-3000:]
  result = json.loads(out.stdout.strip().splitlines()[-1])
  assert result["devices"] == 8 and list(result["layouts"]) == layouts.split(",")
  return result


def test_fsdp_and_tensor_parallel_on_eight_devices_train_as_one_device_holding_their_share(
  tmp_path, one_device
):
  _check_layouts(_eight_devices(tmp_path, "fsdp 4 x model 2"), one_device)


@pytest.mark.slow  # the quick version above runs fsdp 4 x model 2 alone
def test_every_layout_on_eight_devices_trains_as_one_device_holding_its_share(tmp_path, one_device):
  layouts = "data 8,fsdp 8,data 4 x model 2,fsdp 4 x model 2"
  _check_layouts(_eight_devices(tmp_path, layouts), one_device)


def _check_layouts(result: dict, one_device) -> None:
  shares = {"data 8": 1, "fsdp 8": 8, "data 4 x model 2": 2, "fsdp 4 x model 2": 8}
  for name, layout in result["layouts"].items():
    np.testing.assert_allclose(layout["losses"], one_device, rtol=0, atol=1e-5, err_msg=name)
    # Parameters and optimizer moments: about 1/n of the replicated bytes per device
    # (norm scales and biases of width D stay whole: at most 30% above 1/n here).
    per_device, whole = layout["state_bytes_max"], layout["state_bytes_replicated"]
    n = shares[name]
    assert whole / n <= per_device <= 1.3 * whole / n, (name, per_device, whole)
  decoding = result["decoding"]
  assert decoding["sharded"] == decoding["one"]
  assert "P('fsdp', 'model')" in decoding["kernel_sharding"]
  # experiments/sharding_memory.py on a tiny GPT: the same shares, read off the shardings.
  memory = result["memory"]
  rows = memory["rows"]
  whole = rows["replicated (data 8)"]["state_bytes"]
  assert rows["fsdp 8"]["state_bytes"] <= 1.3 * whole / 8
  assert rows["data 4 x model 2"]["state_bytes"] < whole
  assert memory["compiled"]["temp_bytes"] > 0
  assert memory["compiled"]["state_bytes"] == rows["fsdp 4 x model 2"]["state_bytes"]
