"""The memory planner (lmforge/plan.py): exact parameter counts, the strategies' relations, activations equal to
what autograd saves, the peak within 15 % of a measured peak on the CPU, and bad input as one line."""

import json
import os
import subprocess
import sys

import pytest
import torch
import torch.nn.functional as F

from cli_checks import assert_one_line_error, invoke
from lmforge.config import load_config
from lmforge.errors import ConfigError
from lmforge.models import build_model
from lmforge.plan import activations, parse_size, plan, setup

# the measurements run on the CPU whatever the machine has, in float32 (auto would be bf16 for a GPT on a CPU
# with AVX512-BF16 or AMX, and the planner's bf16 terms are those of CUDA's kernels)
CPU = ["train.device=cpu", "train.dtype=float32"]
GPT = ["model.n_layer=3", "model.n_head=4", "model.n_embd=64", "model.block_size=32", "model.vocab_size=300"]
LSTM = ["model.arch=lstm", "model.n_layer=2", "model.n_embd=48", "model.hidden_size=80", "model.block_size=20",
        "model.vocab_size=300"]


@pytest.mark.parametrize("overrides", [GPT, GPT + ["model.tie_embeddings=false", "model.pos=rotary"], LSTM,
                                       LSTM + ["model.tie_embeddings=true", "model.n_layer=3"],
                                       ["model.arch=gru", "model.vocab_size=300"]])
def test_parameter_count_is_the_models(overrides):
    cfg = load_config(None, overrides)
    assert plan(cfg).parameters == sum(p.numel() for p in build_model(cfg.model).parameters())


def test_an_empty_vocab_size_is_the_tokenizers():
    cfg = load_config(None, ["tokenizer.vocab_size=5000", *GPT[:-1]])
    p = plan(cfg)
    assert (p.vocab_size, p.vocab_from) == (5000, "tokenizer.vocab_size")
    assert p.parameters == sum(x.numel() for x in build_model(cfg.model.model_copy(update={"vocab_size": 5000}))
                               .parameters())


def test_ddp_holds_what_single_does_and_fsdp_a_shard():
    cfg = load_config(None, [*GPT, *CPU, "model.n_layer=4", "model.n_embd=128"])
    p = plan(cfg, devices=4)
    single, ddp, fsdp = (p.strategies[name] for name in ("single", "ddp", "fsdp"))
    for row in ("parameters", "gradients", "optimizer_state", "activations", "activations_checkpointed"):
        assert getattr(ddp, row) == getattr(single, row), row
    assert ddp.buffers == single.gradients  # DDP's buckets: a second copy of the gradients
    for row in ("parameters", "gradients", "optimizer_state"):
        # FSDP2 pads dim 0 to a multiple of the ranks: a few rows more than an exact quarter
        assert getattr(single, row) / 4 <= getattr(fsdp, row) <= getattr(single, row) / 4 * 1.01, row
    assert fsdp.activations == single.activations
    # the transient: the root's parameters and one block's, gathered whole
    assert 0 < fsdp.buffers < single.parameters
    assert fsdp.peak < single.peak < ddp.peak


def test_optimizer_state_per_optimizer():
    def state(*extra):
        return plan(load_config(None, [*GPT, *CPU, *extra])).strategies["single"]

    adamw = state("optimizer.name=adamw")
    assert adamw.optimizer_state == 2 * adamw.parameters
    assert state("optimizer.name=sgd").optimizer_state == 0
    assert state("optimizer.name=sgd", "optimizer.momentum=0.9").optimizer_state == adamw.parameters
    muon = state("optimizer.name=muon")
    # momentum for the hidden matrices, two moments for the embeddings, the head and the gains
    assert adamw.parameters < muon.optimizer_state < adamw.optimizer_state and muon.optimizer_scratch > 0


def saved_for_backward(overrides: list[str]) -> tuple[int, int]:
    """(bytes autograd saves for one CPU training forward plus the logits the trainer holds, the planner's)."""
    cfg = load_config(None, [*overrides, *CPU, "train.micro_batch_size=3"])
    s = setup(cfg)
    torch.manual_seed(0)
    model = build_model(s.cfg.model)
    B, T, V = 3, cfg.model.block_size, s.cfg.model.vocab_size
    tokens = torch.randint(0, V, (B, T + 1))
    x, y = tokens[:, :-1].contiguous(), tokens[:, 1:].contiguous()
    state = {t.untyped_storage().data_ptr() for t in [*model.parameters(), *model.buffers()]}
    logits, _ = model(x)
    ce = F.cross_entropy(logits.float().flatten(0, 1), y.flatten(), reduction="sum")
    saved, seen, todo = {}, set(), [ce.grad_fn, model.aux_loss.grad_fn if model.aux_loss is not None else None]
    while todo:
        node = todo.pop()
        if node is None or node in seen:
            continue
        seen.add(node)
        for name in dir(node):
            if name.startswith("_saved_"):
                value = getattr(node, name)
                for t in value if isinstance(value, (tuple, list)) else [value]:
                    if isinstance(t, torch.Tensor) and t.untyped_storage().data_ptr() not in state:
                        saved[t.untyped_storage().data_ptr()] = t.untyped_storage().nbytes()
        todo += [f for f, _ in node.next_functions]
    held = 0 if logits.untyped_storage().data_ptr() in saved else logits.untyped_storage().nbytes()
    return sum(saved.values()) + held, activations(s, B).kept(False)


@pytest.mark.parametrize("overrides", [
    GPT,
    GPT + ["model.norm=rmsnorm", "model.pos=rotary", "model.qk_norm=true", "model.mlp=swiglu",
           "model.logit_softcap=15"],
    GPT + ["model.dropout=0.1", "model.mlp=relu2", "model.bias=true"],  # the CPU's math attention: (T, T)
    ["model.arch=encoder", *GPT[1:]],
    LSTM, LSTM + ["model.tie_embeddings=true", "model.dropout_between=0.2", "model.dropout=0.1"],
    LSTM + ["model.direction=both", "model.locked_dropout=true", "model.dropout_input=0.2"],
    ["model.arch=gru", *LSTM[1:], "model.n_layer=3", "model.dropout_between=0.1"],
    ["model.arch=rnn", *LSTM[1:]],
    ["model.arch=ffnn", "model.vocab_size=300", "model.direct=true"],
    ["model.arch=ffnn", "model.vocab_size=300", "model.dropout=0.1", "model.n_hidden=2"],
], ids=["gpt", "gpt-modern", "gpt-dropout", "encoder", "lstm", "lstm-tied-dropout", "bilm", "gru", "rnn", "ffnn",
        "ffnn-dropout"])
def test_activations_are_what_autograd_saves(overrides):
    measured, planned = saved_for_backward(overrides)
    assert planned == pytest.approx(measured, rel=0.005)


def test_checkpointing_keeps_block_inputs_and_one_block():
    s = setup(load_config(None, [*GPT, *CPU]))
    acts = activations(s, 4)
    assert acts.kept(True) == 3 * acts.block_input + max(acts.blocks) + acts.outside < acts.kept(False)
    lstm = activations(setup(load_config(None, [*LSTM, *CPU])), 4)
    assert lstm.kept(True) == lstm.kept(False)  # no blocks: nothing to recompute


# One step of lmforge's training loop as train/trainer.py: _optimizer_step runs it for one micro-batch (forward,
# cross-entropy in fp32, backward, clipping, the step, gradients dropped), its locals ending with the call.
MEASURE = r"""
import json, resource, sys
import torch
import torch.nn.functional as F
from lmforge.config import load_config
from lmforge.models import build_model
from lmforge.train.guard import grad_norm
from lmforge.train.optim import build_optimizer

torch.set_num_threads(1)
cfg = load_config(None, sys.argv[1:])
cpu = torch.device("cpu")


def rss():
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * resource.getpagesize()


def step(model, optimizer, x, y, carried):
    logits, carried = model(x, carried)
    ce = F.cross_entropy(logits.float().flatten(0, 1), y.flatten(), reduction="sum")
    loss = ce / y.numel()
    if model.aux_loss is not None:
        loss = loss + model.aux_loss
    loss.backward()
    grad_norm(list(model.parameters()), cfg.train.grad_clip)
    optimizer.step()
    optimizer.zero_grad(set_to_none=True)
    return None if carried is None else tuple(s.detach() for s in carried)


# warm-up: a step of a tiny model with the same optimizer loads the code it needs (fused AdamW alone maps ~70 MB)
tiny = torch.nn.Sequential(torch.nn.Embedding(8, 8), torch.nn.Linear(8, 8), torch.nn.Linear(8, 8))
tiny_opt = build_optimizer(tiny, cfg.optimizer, cpu)
F.cross_entropy(tiny(torch.zeros(8, dtype=torch.long)), torch.zeros(8, dtype=torch.long)).backward()
tiny_opt.step()
del tiny, tiny_opt
torch.manual_seed(0)
before = rss()
# the peak from here on: what the imports and the warm-up peaked at (which varies with the environment) is reset
with open("/proc/self/clear_refs", "w") as f:
    f.write("5")
model = build_model(cfg.model)
model.activation_checkpointing = cfg.train.activation_checkpointing
optimizer = build_optimizer(model, cfg.optimizer, cpu)
B, T, V = cfg.train.micro_batch_size, cfg.model.block_size, cfg.model.vocab_size
carried = None
for _ in range(2):  # the first step makes the optimizer state, the second's backward pass holds it
    tokens = torch.randint(0, V, (B, T + 1))
    carried = step(model, optimizer, tokens[:, :-1], tokens[:, 1:], carried)
with open("/proc/self/status") as f:
    high_water = next(int(line.split()[1]) * 1024 for line in f if line.startswith("VmHWM:"))
print(json.dumps({"peak": high_water - before}))
"""

# glibc's default lets freed blocks of up to 32 MB stay in the heap for reuse, so the resident set overstates
# what the tensors need (docs/planning.md: by 5-27 %); a fixed mmap threshold returns every tensor of 128 kB or
# more to the system when freed, so the peak resident set is the tensors' peak
MEASURE_ENV = {"MALLOC_MMAP_THRESHOLD_": "131072", "OMP_NUM_THREADS": "1"}
CALIBRATION = {  # docs/planning.md's table; the optimizers are the families' defaults
    "gpt-8x512-muon": ["model.n_layer=8", "model.n_head=8", "model.n_embd=512", "model.block_size=64",
                       "model.vocab_size=2048", "train.micro_batch_size=4"],
    "gpt-2x128-vocab32k": ["model.n_layer=2", "model.n_head=4", "model.n_embd=128", "model.block_size=128",
                           "model.vocab_size=32768", "train.micro_batch_size=8"],
    "lstm-2x512-adamw": ["model.arch=lstm", "model.n_layer=2", "model.n_embd=512", "model.hidden_size=512",
                         "model.block_size=35", "model.vocab_size=10000", "train.micro_batch_size=20"],
}


def measured_peak(overrides: list[str]) -> int:
    proc = subprocess.run([sys.executable, "-c", MEASURE, *overrides], capture_output=True, text=True,
                          env={**os.environ, **MEASURE_ENV}, timeout=120)
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout)["peak"]


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc's malloc and /proc/self/statm")
@pytest.mark.parametrize("name", CALIBRATION)
def test_peak_within_15_percent_of_the_measured_cpu_peak(name):
    overrides = [*CALIBRATION[name], *CPU]
    planned = plan(load_config(None, overrides)).strategies["single"].peak
    measured = measured_peak(overrides)
    assert planned == pytest.approx(measured, rel=0.15), \
        f"planned {planned / 2**20:.1f} MiB, measured {measured / 2**20:.1f} MiB"


def test_largest_micro_batch_fits_and_one_more_does_not():
    from lmforge.plan import _held, _peak  # the search's own terms

    cfg = load_config(None, [*GPT, *CPU])
    memory = 200 * 2**20
    s = setup(cfg)
    best = plan(cfg, device_memory=memory).strategies["single"].max_micro_batch
    held = _held(s, "single", 1)
    assert _peak(held, activations(s, best), False) <= memory < _peak(held, activations(s, best + 1), False)


def test_pick_the_simplest_strategy_that_fits():
    big = ["model.n_layer=24", "model.n_head=16", "model.n_embd=2048", "model.block_size=1024",
           "model.vocab_size=50304", "train.micro_batch_size=1", "train.device=cuda", "train.dtype=bfloat16"]
    assert plan(load_config(None, big), 8, parse_size("80GB")).pick == "single"
    assert plan(load_config(None, big), 8, parse_size("16G")).pick == "fsdp"
    tight = plan(load_config(None, big), 1, parse_size("16G"))
    assert tight.pick is None and "--devices" in tight.advice and "with fsdp" in tight.advice
    no_room = plan(load_config(None, big), 2, parse_size("1GB"))
    assert no_room.pick is None and "nothing fits" in no_room.advice
    long = plan(load_config(None, [*big, "model.block_size=8192", "train.micro_batch_size=4"]), 8, parse_size("80GB"))
    assert long.pick is None and "train.activation_checkpointing=true" in long.advice


@pytest.mark.parametrize("text, size", [("80GB", 80 * 10**9), ("80GiB", 80 * 2**30), ("24G", 24 * 2**30),
                                        ("512MB", 512 * 10**6), ("512mib", 512 * 2**20), ("1.5TB", 15 * 10**11),
                                        ("4096", 4096), (" 2 GiB ", 2 * 2**30)])
def test_sizes(text, size):
    assert parse_size(text) == size


def test_cli_text_and_json():
    code, out, err = invoke("plan", *GPT, "--devices", "4", "--device-memory", "24G")
    assert code == 0, err
    assert "fsdp x4" in out and "peak" in out and "pick: single" in out
    code, out, err = invoke("plan", *GPT, "--devices", "2", "--json")
    assert code == 0, err
    result = json.loads(out)
    assert set(result["strategies"]) == {"single", "ddp", "fsdp"} and result["pick"] == "single"
    assert result["device_memory"] == 80 * 10**9 and result["strategies"]["ddp"]["devices"] == 2


@pytest.mark.parametrize("args, needle", [
    (["--devices", "0"], "--devices 0"),
    (["--devices", "-3"], "--devices -3"),
    (["--device-memory", "80XB"], "--device-memory '80XB'"),
    (["--device-memory", "0GB"], "--device-memory '0GB'"),
    (["--device-memory", "-3GB"], "--device-memory '-3GB'"),
    (["--device-memory", "GB"], "--device-memory 'GB'"),
    (["no-such-recipe.yaml"], "no-such-recipe.yaml: recipe not found"),
    (["model.n_layer=zero"], "model.n_layer"),
    (["model.nope=1"], "model.nope: unknown key"),
])
def test_bad_input_is_one_line(args, needle):
    assert_one_line_error(*invoke("plan", *args)[::2], needle)


@pytest.mark.parametrize("devices", [1.5, "2", True])
def test_the_api_refuses_devices_that_are_not_a_whole_number(devices):
    with pytest.raises(ConfigError, match="--devices .*: expected a whole number of devices"):
        plan(load_config(None, GPT), devices=devices)
