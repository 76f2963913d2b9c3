"""Bad command lines, configs, work directories and corpora: one line, exit 2, nothing touched.

Each row of a table is one bad input: the command line (`{workdir}`, `{tmp}` and
`{configs}` filled in), the exit code, and a fragment of the error that names the
field or file, the value and the rule. Every CLI row also checks that stderr is one
line `tfmr-jax <command>: error: ...` without a traceback, and that the work directory
is left as it was (absent stays absent).
"""

import json
import os
import shutil

import jax
import numpy as np
import pytest

from tfmr_jax import cli
from tfmr_jax import config as config_lib
from tfmr_jax.tasks import Addition, CorpusError, make_task

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CONFIGS = os.path.join(REPO, "configs")
REVERSE = ["train", "--config={configs}/reverse.py", "--workdir={workdir}"]
ADDITION = ["train", "--config={configs}/addition.py", "--workdir={workdir}"]


def _snapshot(path: str):
  """What is at `path`: None, or every file and folder under it with its size and mtime."""
  if not os.path.exists(path):
    return None
  if not os.path.isdir(path):
    return os.stat(path).st_mtime_ns
  entries = {}
  for root, dirs, files in os.walk(path):
    for name in dirs + files:
      full = os.path.join(root, name)
      stat = os.stat(full)
      entries[os.path.relpath(full, path)] = (stat.st_size, stat.st_mtime_ns)
  return entries


def run_cli(argv, *, workdir: str, tmp: str, capsys):
  """cli.main(argv) with the placeholders filled in: (exit code, stderr)."""
  filled = [a.format(workdir=workdir, tmp=tmp, configs=CONFIGS) for a in argv]
  rc = cli.main(filled)
  _, err = capsys.readouterr()
  return rc, err


def assert_clean_error(rc, err, *, command: str, fragment: str) -> None:
  assert rc == 2, err
  assert "Traceback" not in err, err
  lines = err.strip().splitlines()
  assert len(lines) == 1, err
  assert lines[0].startswith(f"tfmr-jax {command}: error: "), err
  assert fragment in lines[0], err


# Floor A: config values, validated before anything is built or compiled.
CONFIG_CASES = [
  (REVERSE + ["--config.optim.eps=inf"], "config.optim.eps = inf: must be a finite number > 0"),
  (
    REVERSE + ["--config.optim.grad_clip_norm=nan"],
    "config.optim.grad_clip_norm = nan: must be a finite number >= 0",
  ),
  (
    REVERSE + ["--config.optim.learning_rate=nan"],
    "config.optim.learning_rate = nan: must be a finite number > 0",
  ),
  (
    REVERSE + ["--config.optim.learning_rate=inf"],
    "config.optim.learning_rate = inf: must be a finite number > 0",
  ),
  (
    REVERSE + ["--config.optim.weight_decay=inf"],
    "config.optim.weight_decay = inf: must be a finite number >= 0",
  ),
  (REVERSE + ["--config.model.dropout=nan"], "config.model.dropout = nan: must be a finite number"),
  (
    REVERSE
    + ["--config.model.positions=rope", "--config.model.d_model=36", "--config.model.num_heads=4"],
    "config.model.positions = 'rope': rotary embeddings rotate channel pairs, so they need an "
    "even head dim; d_model / num_heads = 36 / 4 = 9",
  ),
  (
    REVERSE + ["--config.model.activation=swishglu"],
    "config.model.activation = 'swishglu': must be one of ('relu', 'gelu', 'swiglu', 'geglu')",
  ),
  (
    REVERSE + ["--config.model.window=0"],
    "config.model.window = 0: must be a positive int or None",
  ),
  (
    REVERSE + ["--config.model.window_pattern=local,global"],
    "config.model.window_pattern = 'local,global': marks local layers, but window=None: set a "
    "window",
  ),
  (
    REVERSE + ["--config.model.window=4", "--config.model.window_pattern=local,sliding"],
    "config.model.window_pattern = 'local,sliding': must be comma-separated names from "
    "('local', 'global'), e.g. 'local,global'",
  ),
  (
    REVERSE + ["--config.model.attention_dropout=1.0"],
    "config.model.attention_dropout = 1.0: must be a rate in [0, 1)",
  ),
  (
    ADDITION + ["--config.task.num_digits=19"],
    "config.task.num_digits = 19: must be an int in [1, 18]",
  ),
  # The device layout (this process has one CPU device) and the multi-process section.
  (
    REVERSE + ["--config.mesh.data=2"],
    "config.mesh = data 2 x fsdp 1 x model 1: the product of the mesh axes, 2, must equal "
    "the number of devices, 1",
  ),
  (
    REVERSE + ["--config.mesh.model=0"],
    "config.mesh.model = 0: must be a positive number of devices, or -1",
  ),
  (
    REVERSE + ["--config.mesh.fsdp=-1"],
    "config.mesh.fsdp = -1: only one mesh axis may be -1 (config.mesh.data already is)",
  ),
  (
    REVERSE + ["--config.distributed.coordinator_address=10.0.0.1:1234"],
    "config.distributed.num_processes = None: a multi-process run needs coordinator_address",
  ),
  (
    REVERSE
    + [
      "--config.distributed.coordinator_address=10.0.0.1",
      "--config.distributed.num_processes=2",
      "--config.distributed.process_id=0",
    ],
    "config.distributed.coordinator_address = '10.0.0.1': must be 'HOST:PORT'",
  ),
  (
    REVERSE
    + [
      "--config.distributed.coordinator_address=10.0.0.1:1234",
      "--config.distributed.num_processes=2",
      "--config.distributed.process_id=2",
    ],
    "config.distributed.process_id = 2: must be less than config.distributed.num_processes = 2",
  ),
  (REVERSE + ["--stop-at-step=0"], "flag --stop_at_step=0: 0 is not a positive integer"),
  (REVERSE + ["--stop-at-step=-1"], "flag --stop_at_step=-1: -1 is not a positive integer"),
]


@pytest.mark.parametrize("argv,fragment", CONFIG_CASES)
def test_bad_config_exits_2_naming_field_value_and_rule(argv, fragment, tmp_path, capsys):
  workdir = str(tmp_path / "run")
  rc, err = run_cli(argv, workdir=workdir, tmp=str(tmp_path), capsys=capsys)
  assert_clean_error(rc, err, command="train", fragment=fragment)
  assert not os.path.exists(workdir)


@pytest.mark.skipif(jax.default_backend() == "gpu", reason="cuDNN is there on a GPU")
def test_cudnn_off_gpu_is_refused_at_validation(tmp_path, capsys):
  workdir = str(tmp_path / "run")
  argv = REVERSE + ["--config.model.attention_implementation=cudnn"]
  rc, err = run_cli(argv, workdir=workdir, tmp=str(tmp_path), capsys=capsys)
  fragment = (
    f"config.model.attention_implementation = 'cudnn': cuDNN attention needs a GPU backend "
    f"and a head dim d_model / num_heads that is a multiple of 8 and at most 128; got "
    f"backend {jax.default_backend()!r}"
  )
  assert_clean_error(rc, err, command="train", fragment=fragment)
  assert not os.path.exists(workdir)


def test_addition_digits_at_the_int64_limit_are_right_and_one_past_is_refused():
  """18 digits: every label is the true sum; 19 would overflow int64 (all labels wrong)."""
  config = config_lib.validate({"task": {"name": "addition", "num_digits": 18}})
  assert config.task.num_digits == 18
  n = 18
  batch = Addition(num_digits=n, test_size=100).train_batch(seed=0, step=0, batch_size=100)
  sequence_BT = np.concatenate([batch["inputs"], batch["targets"][:, -1:]], axis=1)
  for row in sequence_BT:
    a, b = (int("".join(map(str, row[i * n : (i + 1) * n]))) for i in (0, 1))
    assert int("".join(map(str, row[2 * n :][::-1]))) == a + b
  with pytest.raises(config_lib.ConfigError, match=r"num_digits = 19: must be an int in \[1, 18\]"):
    config_lib.validate({"task": {"name": "addition", "num_digits": 19}})
  with pytest.raises(ValueError, match=r"num_digits must be in \[1, 18\]"):
    Addition(num_digits=19, test_size=100)


# Floor B: the files the CLI reads and the work directory it writes.
SMALL_REVERSE = [
  "--config.task.num_symbols=4",
  "--config.task.length=4",
  "--config.task.test_size=10",
  "--config.optim.warmup_steps=1",
  "--config.train.num_steps=4",
  "--config.train.checkpoint_every=2",
  "--config.train.batch_size=8",
  "--config.train.eval_batch_size=10",
  "--config.train.eval_every=10000",
  "--config.train.progress_bar=false",
  "--config.train.tensorboard=false",
]


@pytest.fixture(scope="module")
def trained_run(tmp_path_factory):
  """A 4-step reverse run with checkpoints at steps 2 and 4 (about 5 s)."""
  workdir = str(tmp_path_factory.mktemp("trained") / "run")
  argv = ["train", f"--config={CONFIGS}/reverse.py", f"--workdir={workdir}", *SMALL_REVERSE]
  assert cli.main(argv) == 0
  return workdir


def _write(path, content) -> None:
  mode = "wb" if isinstance(content, bytes) else "w"
  with open(path, mode) as f:
    f.write(content)


def _setup_files(tmp: str) -> None:
  """The bad files the rows below name: recipes, a file as workdir, a corrupt run."""
  _write(os.path.join(tmp, "syntax.py"), "def get_config(:\n  pass\n")
  _write(os.path.join(tmp, "raises.py"), "def get_config():\n  raise RuntimeError('no GPU')\n")
  _write(os.path.join(tmp, "no_get_config.py"), "x = 1\n")
  _write(os.path.join(tmp, "a_file"), "not a directory\n")
  os.makedirs(os.path.join(tmp, "corrupt"))
  _write(os.path.join(tmp, "corrupt", "config.json"), '{"task": {"name": ')


FILE_CASES = [
  (
    ["train", "--config={tmp}/missing.py", "--workdir={workdir}"],
    "config file '{tmp}/missing.py' does not exist",
  ),
  (
    ["train", "--config={tmp}/syntax.py", "--workdir={workdir}"],
    "config file '{tmp}/syntax.py' line 1: syntax error: invalid syntax",
  ),
  (
    ["train", "--config={tmp}/raises.py", "--workdir={workdir}"],
    "config file '{tmp}/raises.py': get_config() raised RuntimeError: no GPU",
  ),
  (
    ["train", "--config={tmp}/no_get_config.py", "--workdir={workdir}"],
    "config file '{tmp}/no_get_config.py' defines no get_config()",
  ),
  (
    ["train", "--config={configs}/char_lm.py:nosuch", "--workdir={workdir}"],
    "config file '{configs}/char_lm.py': get_config('nosuch') raised ValueError: unknown preset "
    "'nosuch' for configs/char_lm.py; choose from ('cpu', 'nanogpt_cpu', 'baby')",
  ),
  (["train", "--config={tmp}", "--workdir={workdir}"], "config file '{tmp}' is not a regular file"),
  (["train", "--config"], "--config needs a value: FILE[:ARG]"),
  (REVERSE[:2] + ["--workdir={tmp}/a_file"], "--workdir '{tmp}/a_file' is a file, not a directory"),
  (
    REVERSE[:2] + ["--workdir={tmp}/a_file/run"],
    "--workdir '{tmp}/a_file/run' cannot be created: '{tmp}/a_file' is a file",
  ),
  (
    ["evaluate", "--workdir={tmp}/corrupt"],
    "'{tmp}/corrupt/config.json' is not a valid config.json: Expecting value: line 1 column 19",
  ),
  (
    ["train", "--workdir={tmp}/corrupt"],
    "'{tmp}/corrupt/config.json' is not a valid config.json: Expecting value",
  ),
  (["evaluate", "--workdir={tmp}/a_file"], "--workdir '{tmp}/a_file' is a file, not a directory"),
]


@pytest.mark.parametrize("argv,fragment", FILE_CASES)
def test_bad_file_exits_2_naming_the_file_and_the_cause(argv, fragment, tmp_path, capsys):
  tmp = str(tmp_path)
  _setup_files(tmp)
  workdir = os.path.join(tmp, "run")
  before = {name: _snapshot(os.path.join(tmp, name)) for name in os.listdir(tmp)}
  rc, err = run_cli(argv, workdir=workdir, tmp=tmp, capsys=capsys)
  fragment = fragment.format(tmp=tmp, configs=CONFIGS)
  assert_clean_error(rc, err, command=argv[0], fragment=fragment)
  assert {name: _snapshot(os.path.join(tmp, name)) for name in os.listdir(tmp)} == before


def test_read_only_workdir_is_refused_before_training(tmp_path, capsys, monkeypatch):
  """Root may write anywhere, so the read-only answer of os.access is simulated."""
  workdir = str(tmp_path / "readonly")
  os.makedirs(workdir)
  real_access = os.access
  monkeypatch.setattr(
    cli.os, "access", lambda p, mode: False if p == workdir else real_access(p, mode)
  )
  rc, err = run_cli(REVERSE, workdir=workdir, tmp=str(tmp_path), capsys=capsys)
  fragment = f"--workdir {workdir!r}: {workdir!r} is not writable"
  assert_clean_error(rc, err, command="train", fragment=fragment)
  assert os.listdir(workdir) == []


def test_evaluate_a_step_never_saved_names_the_saved_ones(trained_run, capsys):
  before = _snapshot(trained_run)
  rc, err = run_cli(
    ["evaluate", "--workdir={workdir}", "--step=3"], workdir=trained_run, tmp="", capsys=capsys
  )
  fragment = f"--step 3: no checkpoint of that step in '{trained_run}/checkpoints'; saved: 2, 4"
  assert_clean_error(rc, err, command="evaluate", fragment=fragment)
  assert _snapshot(trained_run) == before


EXPORT_CASES = [
  (
    ["export", "--workdir={workdir}", "--out={tmp}/hf"],
    "cannot be exported to Hugging Face's format: model is a TransformerEncoder",
  ),
  (["export", "--workdir={workdir}", "--out={tmp}/hf", "--step=3"], "--step 3: no checkpoint"),
  (["export", "--workdir={workdir}"], "export needs --out DIR"),
]


@pytest.mark.parametrize("argv,fragment", EXPORT_CASES)
def test_export_refusals_write_nothing(argv, fragment, trained_run, tmp_path, capsys):
  """The reverse run is an encoder: Hugging Face's GPT-2 format cannot hold it."""
  before = _snapshot(trained_run)
  rc, err = run_cli(argv, workdir=trained_run, tmp=str(tmp_path), capsys=capsys)
  assert_clean_error(rc, err, command="export", fragment=fragment)
  assert _snapshot(trained_run) == before and os.listdir(tmp_path) == []


# Floor C: the char_lm corpus. Each is one CorpusError (a ValueError) naming the path.
CORPUS_FILES = {
  "empty.txt": b"",
  "binary.bin": bytes(range(256)),
  "latin1.txt": "caf\xe9 au lait\n".encode("latin-1"),
  "nul.txt": b"text\x00more text",
  "short.txt": b"x" * 50,
  "short_val.txt": b"y" * 100,
}
CHAR_LM = [
  "train",
  "--config={configs}/char_lm.py",
  "--workdir={workdir}",
  "--config.task.cache_dir={tmp}/cache",
]
CORPUS_CASES = [  # (corpus_path, corpus_url or None for the recipe's, message fragment)
  ("{tmp}/empty.txt", None, "corpus '{tmp}/empty.txt' is empty"),
  ("{tmp}/binary.bin", None, "corpus '{tmp}/binary.bin' has a NUL byte at offset 0"),
  ("{tmp}/latin1.txt", None, "corpus '{tmp}/latin1.txt' is not UTF-8 text: byte 0xe9 at offset 3"),
  ("{tmp}/nul.txt", None, "corpus '{tmp}/nul.txt' has a NUL byte at offset 4: a binary file"),
  ("{tmp}", None, "corpus_path '{tmp}' is a directory, not a text file"),
  (
    "{tmp}/short.txt",
    None,
    "corpus '{tmp}/short.txt' is too short: its training text (val_fraction=0.1 of 50 "
    "characters) has 45 characters, fewer than block_size + 1 = 65",
  ),
  (
    "{tmp}/short_val.txt",
    None,
    "corpus '{tmp}/short_val.txt' is too short: its held-out text (val_fraction=0.1 of 100 "
    "characters) has 10 characters, fewer than block_size + 1 = 65",
  ),
  (
    "{tmp}/missing.txt",
    "",
    "corpus_path '{tmp}/missing.txt' does not exist and no corpus_url is set",
  ),
  (
    "{tmp}/missing.txt",
    "file://{tmp}/offline/input.txt",
    "corpus_path '{tmp}/missing.txt' does not exist and downloading corpus_url "
    "'file://{tmp}/offline/input.txt' failed: [Errno 2] No such file or directory",
  ),
]


@pytest.mark.parametrize("path,url,fragment", CORPUS_CASES)
def test_bad_corpus_is_one_corpus_error_and_exit_2(path, url, fragment, tmp_path, capsys):
  tmp = str(tmp_path)
  for name, data in CORPUS_FILES.items():
    _write(os.path.join(tmp, name), data)
  path, fragment = path.format(tmp=tmp), fragment.format(tmp=tmp)
  fields = dict(config_lib.defaults("char_lm").task)
  fields.update(corpus_path=path, cache_dir=os.path.join(tmp, "cache"))
  if url is not None:
    fields["corpus_url"] = url.format(tmp=tmp)
  with pytest.raises(CorpusError) as raised:
    make_task(**fields)
  assert isinstance(raised.value, ValueError) and fragment in str(raised.value)

  workdir = os.path.join(tmp, "run")
  argv = CHAR_LM + [f"--config.task.corpus_path={path}"]
  if url is not None:
    argv.append(f"--config.task.corpus_url={url.format(tmp=tmp)}")
  before = {name: _snapshot(os.path.join(tmp, name)) for name in os.listdir(tmp)}
  rc, err = run_cli(argv, workdir=workdir, tmp=tmp, capsys=capsys)
  assert_clean_error(rc, err, command="train", fragment=fragment)
  assert {name: _snapshot(os.path.join(tmp, name)) for name in os.listdir(tmp)} == before


# Floor D: sample's options, checked before the run is loaded (any task).
SAMPLE = ["sample", "--workdir={workdir}", "--prompt=1 2 3 0"]
SAMPLE_CASES = [
  (SAMPLE + ["--max-new-tokens=0"], "max_new_tokens must be a positive int, got 0"),
  (SAMPLE + ["--max-new-tokens=-5"], "max_new_tokens must be a positive int, got -5"),
  (
    SAMPLE + ["--temperature=nan"],
    "temperature must be a finite number >= 0 (0 = greedy), got nan",
  ),
  (
    SAMPLE + ["--temperature=inf"],
    "temperature must be a finite number >= 0 (0 = greedy), got inf",
  ),
  (
    SAMPLE + ["--temperature=-0.5"],
    "temperature must be a finite number >= 0 (0 = greedy), got -0.5",
  ),
  (SAMPLE + ["--top-k=0"], "top_k must be a positive int, got 0"),
  (SAMPLE + ["--top-k=99"], "top_k=99 must lie in [1, vocab_size=4]"),
  (SAMPLE + ["--top-p=2"], "top_p must be a number in (0, 1] (1 = no nucleus filter), got 2.0"),
  (SAMPLE + ["--prompt=1 2 3 0"], "sample --workdir needs one --prompt"),
]


@pytest.mark.parametrize("argv,fragment", SAMPLE_CASES)
def test_bad_sampling_option_exits_2(argv, fragment, trained_run, capsys):
  before = _snapshot(trained_run)
  rc, err = run_cli(argv, workdir=trained_run, tmp="", capsys=capsys)
  assert_clean_error(rc, err, command="sample", fragment=fragment)
  assert _snapshot(trained_run) == before


# Floor E: fine-tuning (configs/finetune_gpt2.py): the text file and train.init_from.
# Refused before anything compiles or the work directory is written.
FINETUNE = [
  "train",
  "--config={configs}/finetune_gpt2.py",
  "--workdir={workdir}",
  "--config.train.init_from=hf:{hf}",
  "--config.task.corpus_url=",
  "--config.task.cache_dir={tmp}/cache",
]
TINY = ["--config.model.num_layers=2", "--config.model.num_heads=2", "--config.model.d_model=8"]
GOLDEN_TEXT = os.path.join(REPO, "tests", "golden", "gpt2_bpe_tiny", "text.txt")
TINY_TEXT = TINY + [
  f"--config.task.corpus_path={GOLDEN_TEXT}",
  "--config.task.block_size=32",
  "--config.task.val_fraction=0.4",
]
FINETUNE_CASES = [
  (
    TINY + ["--config.task.corpus_path={tmp}/empty.txt", "--config.task.block_size=32"],
    "config.task.corpus_path: corpus '{tmp}/empty.txt' is empty: a corpus needs some text",
  ),
  (
    TINY + ["--config.task.corpus_path={tmp}/latin1.txt", "--config.task.block_size=32"],
    "config.task.corpus_path: corpus '{tmp}/latin1.txt' is not UTF-8 text: byte 0xe9 at offset 3",
  ),
  (
    TINY_TEXT + ["--config.train.init_from=hf:{tmp}/nowhere"],
    "config.train.init_from = 'hf:{tmp}/nowhere': folder '{tmp}/nowhere' does not exist",
  ),
  (
    TINY_TEXT + ["--config.train.init_from=hf:{tmp}/vocab_50258"],
    "config.train.init_from = 'hf:{tmp}/vocab_50258': its vocab_size = 50258 differs from the "
    "50257 tokens of the tokenizer in config.task.tokenizer_dir = '{tmp}/vocab_50258'; they "
    "must be equal",
  ),
  (
    [f"--config.task.corpus_path={GOLDEN_TEXT}"],  # the recipe's 124M architecture
    "config.model.num_layers = 12: config.train.init_from = 'hf:{hf}' holds a GPT-2 with "
    "num_layers = 2 (n_layer in its config.json); the model section must match the weights "
    "it starts from (set --config.model.num_layers=2)",
  ),
  (
    TINY + [f"--config.task.corpus_path={GOLDEN_TEXT}"],  # the recipe's block_size 1024
    "config.task.block_size = 1024: must be at most the 64 positions (n_positions) of the "
    "weights of config.train.init_from = 'hf:{hf}'",
  ),
  (
    TINY_TEXT + ["--config.train.init_from=hf:"],
    "config.train.init_from = 'hf:': 'hf:' needs the Hugging Face GPT-2 folder after it",
  ),
]


@pytest.mark.parametrize("argv,fragment", FINETUNE_CASES)
def test_bad_finetune_input_exits_2_before_compiling(argv, fragment, gpt2_hf_dir, tmp_path, capsys):
  tmp, hf = str(tmp_path), str(gpt2_hf_dir)
  _write(os.path.join(tmp, "empty.txt"), b"")
  _write(os.path.join(tmp, "latin1.txt"), "caf\xe9 au lait\n".encode("latin-1"))
  other = os.path.join(tmp, "vocab_50258")  # the golden folder, its config.json one token more
  shutil.copytree(hf, other)
  with open(os.path.join(other, "config.json")) as f:
    hf_config = json.load(f)
  _write(os.path.join(other, "config.json"), json.dumps({**hf_config, "vocab_size": 50258}))
  workdir = os.path.join(tmp, "run")
  filled = [a.format(workdir=workdir, tmp=tmp, configs=CONFIGS, hf=hf) for a in FINETUNE + argv]
  before = _snapshot(hf)
  rc = cli.main(filled)
  _, err = capsys.readouterr()
  assert_clean_error(rc, err, command="train", fragment=fragment.format(tmp=tmp, hf=hf))
  assert not os.path.exists(workdir) and _snapshot(hf) == before


# Floor E: a Hugging Face GPT-2 folder (`gpt2_hf_dir`: the tiny golden model and GPT-2's
# tokenizer), its prompts and the text to score; refused before anything compiles.
LONG_PROMPT = " word" * 60  # 60 tokens: 60 + 5 new > the context of 64
HF_CASES = [
  (
    ["evaluate", "--hf-dir={hf}", "--text={tmp}/missing.txt"],
    "text file '{tmp}/missing.txt' does not exist",
  ),
  (
    ["evaluate", "--hf-dir={hf}", "--text={tmp}/empty.txt"],
    "text file '{tmp}/empty.txt' is empty: scoring needs at least two tokens",
  ),
  (
    ["evaluate", "--hf-dir={hf}", "--text={tmp}/latin1.txt"],
    "text file '{tmp}/latin1.txt' is not UTF-8 text: byte 0xe9 at offset 3",
  ),
  (["evaluate", "--hf-dir={hf}", "--text={tmp}"], "text file '{tmp}' is not a regular file"),
  (
    ["evaluate", "--hf-dir={hf}", "--text={tmp}/one_token.txt"],
    "text file '{tmp}/one_token.txt' has 1 token; scoring needs at least two",
  ),
  (
    ["evaluate", "--hf-dir={hf}", "--text={tmp}/ok.txt", "--stride=64"],
    "stride must be an int in [1, context - 1 = 63]",
  ),
  (["evaluate", "--hf-dir={hf}"], "evaluate --hf-dir needs --text FILE"),
  (
    ["sample", "--hf-dir={hf}", "--prompt=Hi", f"--prompt={LONG_PROMPT}", "--max-new-tokens=5"],
    "prompt 1 has 60 token(s); with max_new_tokens=5 that is 65 positions, more than the "
    "model's context of 64",
  ),
  (["sample", "--hf-dir={hf}"], "sample --hf-dir needs at least one --prompt"),
  (
    ["sample", "--hf-dir={hf}", "--prompt=Hi", "--top-p=0"],
    "top_p must be a number in (0, 1] (1 = no nucleus filter), got 0.0",
  ),
  (
    ["sample", "--hf-dir={hf}", "--prompt=Hi", "--top-p=nan"],
    "top_p must be a number in (0, 1] (1 = no nucleus filter), got nan",
  ),
  (
    ["sample", "--hf-dir={hf}", "--prompt=Hi", "--top-k=50258", "--max-new-tokens=5"],
    "top_k=50258 must lie in [1, vocab_size=50257]",
  ),
  (
    ["sample", "--hf-dir={tmp}/nothing", "--prompt=Hi"],
    "Hugging Face folder '{tmp}/nothing' does not exist",
  ),
  (
    ["sample", "--hf-dir={tmp}", "--prompt=Hi"],
    "Hugging Face folder '{tmp}': '{tmp}/config.json' does not exist: a Hugging Face model "
    "folder needs one",
  ),
  (["train", "--hf-dir={hf}"], "--hf-dir goes with sample or evaluate, without --workdir"),
]


@pytest.mark.parametrize("argv,fragment", HF_CASES)
def test_bad_hf_dir_input_exits_2_before_compiling(argv, fragment, gpt2_hf_dir, tmp_path, capsys):
  from tfmr_jax import decode
  from tfmr_jax.train import pretrained

  tmp = str(tmp_path)
  for name, data in {
    "empty.txt": b"",
    "latin1.txt": "caf\xe9 au lait\n".encode("latin-1"),
    "one_token.txt": b"Hello",
    "ok.txt": b"Hello world, this is fine.",
  }.items():
    _write(os.path.join(tmp, name), data)
  compiled = decode._generate._cache_size(), pretrained._window_nll._cache_size()
  filled = [a.format(hf=gpt2_hf_dir, tmp=tmp) for a in argv]
  rc = cli.main(filled)
  _, err = capsys.readouterr()
  assert_clean_error(rc, err, command=argv[0], fragment=fragment.format(tmp=tmp))
  assert (decode._generate._cache_size(), pretrained._window_nll._cache_size()) == compiled
