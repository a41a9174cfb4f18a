"""`optimizer: {name: muon}`: orthogonalised steps on the kernels that feed a batch norm,
torch's SGD on everything else, one schedule for both."""

from __future__ import annotations

import copy
from pathlib import Path

import pytest
import torch
from torch import nn
from torch.utils._python_dispatch import TorchDispatchMode

from blockspec.build import build_model
from blockspec.load import load_spec, parse_spec
from blockspec.train.muon import DeviceRateMuonSGD, MuonSGD, normalised_kernels, orthogonalize, orthogonalize_each
from blockspec.train.optim import make_optimizer, make_scheduler, peak_muon_lr
from blockspec.train.overrides import apply_overrides
from tests.cli_helpers import ROOT, metrics, run_cli
from tests.synthetic import tiny_spec_text, write_colour_folder

FLAGSHIP = ROOT / "architectures" / "flagship.yaml"
MUON = ["train.optimizer.name=muon", "train.optimizer.muon_lr=0.03"]


@pytest.mark.parametrize("shape", [(32, 288), (128, 128), (128, 9), (10, 400)])
def test_orthogonalize_pushes_every_singular_value_near_one(shape: tuple[int, int]) -> None:
    """A matrix with singular values spread over 30× comes out with all of them in about
    [0.7, 1.2] and its singular vectors kept: close to the exact U·Vᵀ."""
    torch.manual_seed(0)
    rank = min(shape)
    u, _ = torch.linalg.qr(torch.randn(shape[0], rank))
    v, _ = torch.linalg.qr(torch.randn(shape[1], rank))
    matrix = u @ torch.diag(torch.logspace(-1.5, 0, rank)) @ v.T
    result = orthogonalize(matrix)
    singular = torch.linalg.svdvals(result)
    assert singular.min() > 0.6 and singular.max() < 1.25, singular
    polar = u @ v.T
    assert (result * polar).sum() / (polar.norm() * result.norm()) > 0.97


def test_orthogonalize_each_gives_each_matrix_its_own_result_in_its_place() -> None:
    torch.manual_seed(0)
    shapes = [(32, 288), (128, 128), (32, 27), (32, 288), (128, 128), (10, 400), (128, 128)]
    matrices = [torch.randn(shape) for shape in shapes]
    for matrix, result in zip(matrices, orthogonalize_each(matrices), strict=True):
        torch.testing.assert_close(result, orthogonalize(matrix), rtol=1e-5, atol=1e-6)


class _MatrixProducts(TorchDispatchMode):
    def __init__(self) -> None:
        super().__init__()
        self.count = 0

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):  # noqa: ANN001, ANN204
        self.count += func.overloadpacket in (torch.ops.aten.mm, torch.ops.aten.bmm, torch.ops.aten.baddbmm)
        return func(*args, **(kwargs or {}))


@pytest.mark.parametrize("optimizer_class", [MuonSGD, DeviceRateMuonSGD])
def test_a_muon_step_takes_kernels_of_one_shape_together(optimizer_class: type) -> None:
    """Five iterations of three products for each shape of kernel, however many kernels share
    it: on a GPU each product is a launch, and a small network's step waits on launches."""
    counts = {}
    for kernels in (2, 8):
        torch.manual_seed(0)
        model = nn.Sequential(*[nn.Conv2d(8, 8, 3, padding=1, bias=False) for _ in range(kernels)])
        optimizer = optimizer_class([{"params": list(model.parameters()), "orthogonal": True}], lr=0.05,
                                    momentum=0.9, nesterov=True)
        model(torch.randn(2, 8, 6, 6)).square().mean().backward()
        with _MatrixProducts() as products:
            optimizer.step()
        counts[kernels] = products.count
    assert counts == {2: 15, 8: 15}


def _small_model(order_act_first: bool = False) -> nn.Sequential:
    torch.manual_seed(0)
    unit = [nn.Conv2d(8, 8, 3, padding=1, bias=False), nn.ReLU(), nn.BatchNorm2d(8)] if order_act_first else [
        nn.Conv2d(8, 8, 3, padding=1, bias=False), nn.BatchNorm2d(8), nn.ReLU()]
    return nn.Sequential(
        nn.Conv2d(3, 8, 3, bias=False), nn.BatchNorm2d(8), nn.ReLU(),
        nn.Sequential(*unit),
        nn.Conv2d(8, 8, 3, groups=8, bias=False), nn.BatchNorm2d(8),
        nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(8, 4),
    )


def test_only_ungrouped_kernels_that_feed_a_batch_norm_are_taken() -> None:
    model = _small_model()
    assert [k.shape for k in normalised_kernels(model)] == [(8, 3, 3, 3), (8, 8, 3, 3)]  # not depthwise, not fc
    after_activation = _small_model(order_act_first=True)  # a ReLU between: the scale matters
    assert [k.shape for k in normalised_kernels(after_activation)] == [(8, 3, 3, 3)]


def test_the_flagship_gives_muon_its_eleven_full_and_pointwise_kernels() -> None:
    spec = load_spec(FLAGSHIP, edits=MUON)
    model = build_model(spec)
    optimizer = make_optimizer(spec, model)
    orthogonal = [g for g in optimizer.param_groups if g["orthogonal"]]
    assert len(orthogonal) == 1 and orthogonal[0]["lr"] == 0.03 and orthogonal[0]["weight_decay"] == 0
    shapes = sorted(tuple(p.shape) for p in orthogonal[0]["params"])
    assert len(shapes) == 11 and (128, 128, 1, 1) in shapes and (32, 3, 3, 3) in shapes
    grouped = [id(p) for g in optimizer.param_groups for p in g["params"]]
    assert sorted(grouped) == sorted(id(p) for p in model.parameters())  # each parameter once


def _batches(count: int) -> list[tuple[torch.Tensor, torch.Tensor]]:
    generator = torch.Generator().manual_seed(1)
    return [(torch.randn(16, 3, 10, 10, generator=generator), torch.randint(0, 4, (16,), generator=generator))
            for _ in range(count)]


def _train(model: nn.Module, optimizer: torch.optim.Optimizer, data, schedule=None) -> list[float]:
    losses = []
    for x, y in data:
        optimizer.zero_grad(set_to_none=True)
        loss = nn.functional.cross_entropy(model(x), y)
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
        if schedule is not None:
            schedule.step()
    return losses


def _groups(model: nn.Module, muon_lr: float | None) -> list[dict]:
    kernels = {id(k) for k in normalised_kernels(model)} if muon_lr else set()
    rest = [p for p in model.parameters() if id(p) not in kernels]
    groups = [{"params": [p for p in rest if p.ndim > 1], "weight_decay": 5e-4},
              {"params": [p for p in rest if p.ndim <= 1], "weight_decay": 0.0}]
    if muon_lr:
        groups.append({"params": [p for p in model.parameters() if id(p) in kernels], "lr": muon_lr,
                       "orthogonal": True})
    return groups


@pytest.mark.parametrize("nesterov", [True, False])
def test_groups_without_the_flag_step_exactly_as_torch_sgd(nesterov: bool) -> None:
    ours, reference = _small_model(), _small_model()
    data = _batches(5)
    _train(ours, MuonSGD(_groups(ours, None), lr=0.05, momentum=0.9, nesterov=nesterov), data)
    _train(reference, torch.optim.SGD(_groups(reference, None), lr=0.05, momentum=0.9, nesterov=nesterov), data)
    for a, b in zip(ours.parameters(), reference.parameters(), strict=True):
        torch.testing.assert_close(a, b, rtol=1e-6, atol=1e-7)


def test_a_muon_step_turns_every_filter_by_about_the_rate_and_keeps_the_output_scale() -> None:
    model = _small_model()
    kernel = model[3][0].weight
    optimizer = MuonSGD(_groups(model, 0.1), lr=0.05, momentum=0.9, nesterov=True)
    before = kernel.detach().clone()
    _train(model, optimizer, _batches(1))
    rescaled = before * (8**0.5 / before.norm())  # what the step renormalises the kernel to first
    step = (rescaled - kernel.detach()).reshape(8, -1) / 0.1
    singular = torch.linalg.svdvals(step)
    assert singular.min() > 0.6 and singular.max() < 1.25  # every direction moved, none dominating
    assert kernel.norm().item() == pytest.approx(8**0.5, rel=0.02)  # a small turn hardly changes the norm


def test_muon_learns_a_fixed_batch_faster_than_it_starts() -> None:
    model = _small_model()
    optimizer = MuonSGD(_groups(model, 0.05), lr=0.05, momentum=0.9, nesterov=True)
    data = _batches(1) * 40
    losses = _train(model, optimizer, data)
    assert losses[-1] < 0.3 * losses[0]


def test_onecycle_peaks_each_group_at_its_own_rate_and_resume_continues_exactly() -> None:
    spec = load_spec(FLAGSHIP, edits=[*MUON, "train.epochs=2", "train.scheduler.max_lr=0.2"])
    assert peak_muon_lr(spec) == pytest.approx(0.06)
    model = _small_model()
    optimizer = make_optimizer(spec, model)
    schedule = make_scheduler(spec, optimizer, steps_per_epoch=10)
    data = _batches(20)
    rates = []
    for batch in data[:10]:
        rates.append([group["lr"] for group in optimizer.param_groups])
        _train(model, optimizer, [batch], schedule)
    peaks = [max(column) for column in zip(*rates, strict=True)]
    assert sorted({round(peak, 9) for peak in peaks}) == [0.06, 0.2]
    resumed = copy.deepcopy(model)
    resumed_opt = make_optimizer(spec, resumed)
    resumed_schedule = make_scheduler(spec, resumed_opt, steps_per_epoch=10)
    # copies, as from a checkpoint file (a live state_dict shares the momentum buffers); after
    # the schedule is made, as a resumed session loads them
    resumed_opt.load_state_dict(copy.deepcopy(optimizer.state_dict()))
    resumed_schedule.load_state_dict(copy.deepcopy(schedule.state_dict()))
    _train(model, optimizer, data[10:], schedule)
    _train(resumed, resumed_opt, data[10:], resumed_schedule)
    for a, b in zip(model.parameters(), resumed.parameters(), strict=True):
        assert torch.equal(a, b)


def test_the_batch_size_flag_scales_sgds_rate_linearly_and_muons_by_the_square_root() -> None:
    scaled = apply_overrides(load_spec(FLAGSHIP, edits=MUON), batch_size=512)
    assert scaled.train.optimizer.lr == pytest.approx(0.4)
    assert scaled.train.optimizer.muon_lr == pytest.approx(0.06)


def test_muon_with_cuda_graphs_gets_its_rates_on_the_device() -> None:
    spec = parse_spec(
        tiny_spec_text(Path("unused"), optimizer="{name: muon, lr: 0.05}", extra="  cuda_graphs: true"), "tiny.yaml"
    )
    assert spec.train.cuda_graphs
    model = _small_model()
    assert type(make_optimizer(spec, model, device_rates=True)) is DeviceRateMuonSGD
    assert type(make_optimizer(spec, model)) is MuonSGD


def test_a_muon_run_names_its_rate_and_learns_the_colour_folder(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """The command line end to end: the first line names both rates, and six epochs on four
    flat colours end well above chance (25 %)."""
    data_root = write_colour_folder(tmp_path / "data")
    spec = tmp_path / "tiny.yaml"
    spec.write_text(tiny_spec_text(data_root, epochs=6, optimizer="{name: muon, lr: 0.05, muon_lr: 0.04}"))
    code, stdout, _ = run_cli(["train", str(spec), "--out", str(tmp_path / "run"), "--workers", "0"], capsys)
    assert code == 0
    assert "lr 0.05 (Muon 0.04 on the kernels that feed a batch norm)" in stdout
    assert metrics(tmp_path / "run")[-1]["test_acc"] > 60


@pytest.mark.parametrize("optimizer_class", [MuonSGD, DeviceRateMuonSGD])
def test_a_step_before_any_gradient_changes_nothing(optimizer_class: type) -> None:
    conv = nn.Conv2d(4, 4, 3, bias=False)
    before = conv.weight.detach().clone()
    optimizer_class([{"params": [conv.weight], "orthogonal": True}], lr=0.05, momentum=0.9, nesterov=True).step()
    assert torch.equal(conv.weight, before)
