"""The training step: SGD and Muon with rates on the device equal torch's SGD and MuonSGD, and
the step a CUDA graph captures equals the eager one (the capture itself where CUDA is present)."""

from __future__ import annotations

import copy

import pytest
import torch
from torch import nn

from blockspec import load_spec
from blockspec.errors import SpecError
from blockspec.train.ema import make_ema
from blockspec.train.muon import DeviceRateMuonSGD, MuonSGD, normalised_kernels
from blockspec.train.sgd_update import DeviceRateSGD
from blockspec.train.step import EagerStep, GraphedStep

FLAGSHIP = "architectures/flagship.yaml"


def small_model() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(
        nn.Conv2d(3, 8, 3, bias=False), nn.BatchNorm2d(8), nn.ReLU(), nn.Flatten(), nn.Linear(8 * 6 * 6, 4)
    )


def sgd(model: nn.Module, nesterov: bool = True, device_rates: bool = False) -> torch.optim.SGD:
    """Two groups as blockspec's `make_optimizer` builds them: decay on weights only."""
    weights = [p for p in model.parameters() if p.ndim > 1]
    others = [p for p in model.parameters() if p.ndim <= 1]
    groups = [{"params": weights, "weight_decay": 5e-4}, {"params": others, "weight_decay": 0.0}]
    kind = DeviceRateSGD if device_rates else torch.optim.SGD
    return kind(groups, lr=0.05, momentum=0.9, nesterov=nesterov)


def muon(model: nn.Module, nesterov: bool = True, device_rates: bool = False) -> torch.optim.Optimizer:
    """Muon's groups as `make_optimizer` builds them: the kernel that feeds the batch norm apart."""
    kernels = {id(k) for k in normalised_kernels(model)}
    groups = [{"params": [p for p in model.parameters() if id(p) not in kernels], "weight_decay": 0.0},
              {"params": [p for p in model.parameters() if id(p) in kernels], "orthogonal": True}]
    kind = DeviceRateMuonSGD if device_rates else MuonSGD
    return kind(groups, lr=0.05, momentum=0.9, nesterov=nesterov)


OPTIMIZERS = {"sgd": sgd, "muon": muon}


def train(model: nn.Module, optimizer: torch.optim.Optimizer, data, schedule=None) -> None:
    for x, y in data:
        optimizer.zero_grad(set_to_none=True)
        nn.functional.cross_entropy(model(x), y).backward()
        optimizer.step()
        if schedule is not None:
            schedule.step()


def onecycle(optimizer: torch.optim.Optimizer, steps: int) -> torch.optim.lr_scheduler.OneCycleLR:
    return torch.optim.lr_scheduler.OneCycleLR(optimizer, max_lr=0.05, total_steps=steps)


def batches(count: int, size: int = 16) -> list[tuple[torch.Tensor, torch.Tensor]]:
    generator = torch.Generator().manual_seed(1)
    return [(torch.randn(size, 3, 8, 8, generator=generator), torch.randint(0, 4, (size,), generator=generator))
            for _ in range(count)]


def assert_same_state(a: nn.Module, b: nn.Module, opt_a: torch.optim.Optimizer, opt_b: torch.optim.Optimizer) -> None:
    for (name, x), y in zip(a.state_dict().items(), b.state_dict().values(), strict=True):
        assert torch.allclose(x.float(), y.float(), atol=1e-6, rtol=1e-5), name
    for p, q in zip(a.parameters(), b.parameters(), strict=True):
        assert torch.allclose(opt_a.state[p]["momentum_buffer"], opt_b.state[q]["momentum_buffer"], atol=1e-6, rtol=1e-5)


@pytest.mark.parametrize("name", OPTIMIZERS)
@pytest.mark.parametrize("nesterov", [True, False])
def test_device_rates_follow_the_host_rate_optimizer_while_the_schedule_moves_rate_and_momentum(
    name: str, nesterov: bool
) -> None:
    """DeviceRateSGD against torch.optim.SGD, DeviceRateMuonSGD against MuonSGD."""
    data = batches(12)
    torch_model, own_model = small_model(), small_model()
    torch_opt = OPTIMIZERS[name](torch_model, nesterov)
    own_opt = OPTIMIZERS[name](own_model, nesterov, device_rates=True)
    train(torch_model, torch_opt, data, onecycle(torch_opt, 12))
    momenta = []
    schedule = onecycle(own_opt, 12)
    for batch in data:
        momenta.append(own_opt.param_groups[0]["momentum"])
        train(own_model, own_opt, [batch], schedule)
    assert len(set(momenta)) > 6  # the schedule really moved the momentum
    assert_same_state(torch_model, own_model, torch_opt, own_opt)


@pytest.mark.parametrize("name", OPTIMIZERS)
def test_a_run_stepped_with_device_rates_resumes_under_the_host_rate_optimizer(name: str) -> None:
    """The state is the same: three steps of ours, saved and loaded into a fresh torch SGD (or
    MuonSGD), then three of that, end where six of it do."""
    make = OPTIMIZERS[name]
    data = batches(6)
    reference, ours = small_model(), small_model()
    reference_opt, our_opt = make(reference), make(ours, device_rates=True)
    train(reference, reference_opt, data)
    train(ours, our_opt, data[:3])
    resumed = copy.deepcopy(ours)
    resumed_opt = make(resumed)
    resumed_opt.load_state_dict(our_opt.state_dict())
    train(resumed, resumed_opt, data[3:])
    assert_same_state(reference, resumed, reference_opt, resumed_opt)


def test_a_graphed_step_refuses_torch_sgd() -> None:
    model = small_model()
    with pytest.raises(TypeError, match="DeviceRateSGD"):
        GraphedStep(model, nn.CrossEntropyLoss(), sgd(model), None, no_autocast)


def no_autocast():
    return torch.autocast("cpu", enabled=False)


@pytest.mark.parametrize("name", OPTIMIZERS)
def test_the_captured_computation_equals_the_eager_step_with_ema(name: str) -> None:
    """GraphedStep.compute (what a capture records) trains exactly as EagerStep does."""
    eager_model, graph_model = small_model(), small_model()
    eager_opt, graph_opt = OPTIMIZERS[name](eager_model), OPTIMIZERS[name](graph_model, device_rates=True)
    eager_ema, graph_ema = make_ema(eager_model, 0.9), make_ema(graph_model, 0.9)
    loss_fn = nn.CrossEntropyLoss(label_smoothing=0.1)
    eager = EagerStep(eager_model, loss_fn, eager_opt, eager_ema, eager_model, no_autocast)
    graphed = GraphedStep(graph_model, loss_fn, graph_opt, graph_ema, no_autocast)
    schedules = onecycle(eager_opt, 8), onecycle(graph_opt, 8)
    for x, y in batches(8):
        eager_loss, eager_logits = eager(x, y)
        graph_loss, graph_logits = graphed.compute(x, y)
        assert torch.allclose(eager_loss, graph_loss, atol=1e-6)
        assert torch.allclose(eager_logits, graph_logits, atol=1e-5)
        for schedule in schedules:
            schedule.step()
    assert_same_state(eager_model, graph_model, eager_opt, graph_opt)
    for x, y in zip(eager_ema.module.state_dict().values(), graph_ema.module.state_dict().values(), strict=True):
        assert torch.allclose(x.float(), y.float(), atol=1e-6)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
@pytest.mark.parametrize("name", OPTIMIZERS)
def test_graph_replays_train_as_the_eager_step_on_cuda(name: str) -> None:
    device = torch.device("cuda")
    make = OPTIMIZERS[name]
    eager_model, graph_model = small_model().to(device), small_model().to(device)
    eager_opt, graph_opt = make(eager_model, device_rates=True), make(graph_model, device_rates=True)
    eager_ema, graph_ema = make_ema(eager_model, 0.9), make_ema(graph_model, 0.9)
    loss_fn = nn.CrossEntropyLoss()
    eager = GraphedStep(eager_model, loss_fn, eager_opt, eager_ema, no_autocast, warmup=10**9)  # never captures
    graphed = GraphedStep(graph_model, loss_fn, graph_opt, graph_ema, no_autocast, warmup=3)
    schedules = onecycle(eager_opt, 10), onecycle(graph_opt, 10)
    data = [(x.to(device), y.to(device)) for x, y in batches(9)] + [
        (x.to(device), y.to(device)) for x, y in batches(1, size=5)  # a short last batch: eager
    ]
    for x, y in data:
        eager(x, y)
        graphed(x, y)
        for schedule in schedules:
            schedule.step()
    assert graphed.captured is not None and not graphed.failed and graphed.state == "captured"
    torch.cuda.synchronize()
    assert_same_state(eager_model, graph_model, eager_opt, graph_opt)


def test_spec_refuses_graphs_without_sgd_or_muon_or_with_compile(tmp_path) -> None:
    text = open(FLAGSHIP).read()
    optimizer = next(line for line in text.splitlines() if line.startswith("  optimizer:"))
    for edit, message in (
        ("  optimizer: {name: adam, lr: 0.001}", "needs optimizer sgd or muon"),
        (f"{optimizer}\n  compile: reduce-overhead", "cannot be combined with compile"),
    ):
        path = tmp_path / "graphs.yaml"
        edited = text.replace(optimizer, edit)
        path.write_text(edited.replace("  label_smoothing: 0.1", "  label_smoothing: 0.1\n  cuda_graphs: true"))
        with pytest.raises(SpecError) as caught:
            load_spec(path)
        assert "train.cuda_graphs" in str(caught.value) and message in str(caught.value)
    for name in ("sgd", "muon"):
        path.write_text(
            text.replace(optimizer, f"  optimizer: {{name: {name}, lr: 0.1}}").replace(
                "  label_smoothing: 0.1", "  label_smoothing: 0.1\n  cuda_graphs: true"
            )
        )
        assert load_spec(path).train.cuda_graphs, name


def test_device_rates_take_a_network_whose_every_kernel_is_muons() -> None:
    """No kernel is left to decay, so the first parameter group is empty: building the
    graphed step's optimizer raised IndexError."""
    from blockspec import build_model, parse_spec
    from blockspec.train.optim import make_optimizer

    spec = parse_spec("name: m\nblocks:\n  C1: [conv: {out: 8}]\n  output: [conv: {out: 10, k: 1}, gap: {}, flatten: {}]\n"
                      "train: {optimizer: {name: muon}}\n")
    model = build_model(spec)
    optimizer = make_optimizer(spec, model, device_rates=True)
    assert not optimizer.param_groups[0]["params"]
    model(torch.randn(4, 3, 32, 32)).sum().backward()
    before = model.C1[0].conv.weight.clone()
    optimizer.step()
    assert not torch.equal(before, model.C1[0].conv.weight)
