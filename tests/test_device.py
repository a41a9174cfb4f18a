"""Device choice: what the CPU path turns on, and that the bf16 CPU path really trains."""

from __future__ import annotations

from types import SimpleNamespace

import pytest
import torch

from blockspec.build import build_model
from blockspec.load import parse_spec
from blockspec.train.device import compile_refusal, cpu_has_native_bf16, graphs_replay_on, pick_device

SPEC = """
name: tiny
input: {channels: 3, size: 16}
classes: 4
blocks:
  C1: [conv: {out: 8}, strided: {out: 16}, dws: {out: 16}]
  output: [gap: {}, fc: {out: 4}]
"""


def test_cpu_uses_channels_last_and_bf16_only_with_hardware_support() -> None:
    info = pick_device("cpu")
    assert info.channels_last
    assert info.autocast_dtype == (torch.bfloat16 if cpu_has_native_bf16() else None)
    assert pick_device("cpu", amp=False, channels_last=False).autocast_dtype is None
    assert pick_device("cpu", amp=False).describe() == "cpu (fp32)"
    if cpu_has_native_bf16():
        assert info.describe() == "cpu (bfloat16, depthwise fp32)"
    assert not pick_device("cpu", amp=False, channels_last=False).channels_last


class FakeGPUs:
    """torch.cuda's answers for a machine with these GPUs (compute capability, or ROCm
    architecture name), recording `set_device`: what pick_device asks, without a GPU here."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch, *gpus: tuple[int, int] | str) -> None:
        self.gpus, self.current, self.set_to = gpus, 0, []
        rocm = isinstance(gpus[0], str)
        monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
        monkeypatch.setattr(torch.cuda, "device_count", lambda: len(gpus))
        monkeypatch.setattr(torch.cuda, "current_device", lambda: self.current)
        monkeypatch.setattr(torch.cuda, "set_device", self._set)
        monkeypatch.setattr(torch.version, "hip", "6.4" if rocm else None)
        # torch's own check, as it answers on such machines: for the current device, yes to
        # emulated bf16 unless told otherwise (a T4 stores it), yes to any ROCm GPU
        monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda including_emulation=True: rocm or including_emulation
                            or gpus[self.current] >= (8, 0))
        monkeypatch.setattr(torch.cuda, "get_device_capability", lambda device=None: gpus[self._index(device)])
        monkeypatch.setattr(torch.cuda, "get_device_properties",
                            lambda device=None: SimpleNamespace(gcnArchName=gpus[self._index(device)]))

    def _index(self, device: torch.device | int | None) -> int:
        index = device.index if isinstance(device, torch.device) else device
        return self.current if index is None else index

    def _set(self, device: torch.device | int) -> None:
        self.current = self._index(device)
        self.set_to.append(self.current)


@pytest.mark.parametrize(("gpus", "requested", "dtype"), [
    (((8, 0),), "cuda", torch.bfloat16),  # A100
    (((7, 5),), "cuda", None),  # T4: stores bf16 by emulation, has no cuDNN bf16 convolutions
    (((8, 6), (7, 5)), "cuda:1", None),  # torch's check answered for GPU 0, the current one
    (((7, 0), (9, 0)), "cuda:1", torch.bfloat16),
    (("gfx90a:sramecc+:xnack-",), "cuda", torch.bfloat16),  # MI210
    (("gfx1030",), "cuda", None),  # RDNA2: no bf16 arithmetic; torch says yes to any ROCm GPU
])
def test_cuda_trains_in_bf16_only_where_that_gpu_computes_it(
    monkeypatch: pytest.MonkeyPatch, gpus: tuple, requested: str, dtype: torch.dtype | None
) -> None:
    FakeGPUs(monkeypatch, *gpus)
    info = pick_device(requested)
    assert info.device == torch.device(requested) and info.autocast_dtype == dtype
    assert pick_device(requested, amp=False).autocast_dtype is None


def test_a_named_gpu_becomes_the_current_device(monkeypatch: pytest.MonkeyPatch) -> None:
    """Pinned memory, a graph capture's synchronisation and cuDNN's context follow the current
    device: `--device cuda:1` left them on GPU 0, taking its memory."""
    gpus = FakeGPUs(monkeypatch, (8, 0), (8, 0))
    pick_device("cuda:1")
    assert gpus.set_to == [1] and gpus.current == 1
    pick_device("cuda")  # the current one, whichever it is
    assert gpus.set_to == [1]


@pytest.mark.parametrize(("gpus", "graphs", "compile_refused"), [
    (((9, 0),), True, None),
    (((7, 0),), True, None),  # V100: Triton's oldest
    (((6, 0),), True, "Triton needs compute capability 7.0; this GPU has 6.0"),  # P100: failed inside torch
    (("gfx90a",), False, None),  # ROCm: MIOpen's convolutions are not graph-safe
])
def test_graphs_and_compile_only_where_they_run(
    monkeypatch: pytest.MonkeyPatch, gpus: tuple, graphs: bool, compile_refused: str | None
) -> None:
    FakeGPUs(monkeypatch, *gpus)
    info = pick_device("cuda")
    assert graphs_replay_on(info) is graphs and compile_refusal(info) == compile_refused


def test_off_cuda_neither_graphs_nor_compile() -> None:
    info = pick_device("cpu")
    assert not graphs_replay_on(info) and compile_refusal(info) == "CUDA only"


def test_unknown_device_is_a_spec_style_error() -> None:
    from blockspec.errors import SpecError

    with pytest.raises(SpecError, match="allowed: auto, cuda, mps, cpu"):
        pick_device("tpu")


@pytest.mark.skipif(not cpu_has_native_bf16(), reason="this CPU has no bf16 instructions")
def test_bf16_channels_last_cpu_step_matches_fp32_closely() -> None:
    """One SGD step under CPU bf16 autocast lands near the fp32 step from the same weights."""
    torch.manual_seed(0)
    reference = build_model(parse_spec(SPEC, "tiny.yaml"))
    fast = build_model(parse_spec(SPEC, "tiny.yaml")).to(memory_format=torch.channels_last)
    fast.load_state_dict(reference.state_dict())
    x, y = torch.randn(32, 3, 16, 16), torch.randint(0, 4, (32,))
    losses = []
    for model, autocast in ((reference, False), (fast, True)):
        inputs = x.contiguous(memory_format=torch.channels_last) if autocast else x
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=autocast):
            loss = torch.nn.functional.cross_entropy(model(inputs), y)
        loss.backward()
        losses.append(loss.item())
        for p in model.parameters():
            p.data -= 0.1 * p.grad
    assert abs(losses[0] - losses[1]) < 0.02
    for a, b in zip(reference.parameters(), fast.parameters(), strict=True):
        assert torch.allclose(a, b, atol=0.02), (a - b).abs().max()


def test_depthwise_convolutions_compute_in_fp32_under_cpu_autocast() -> None:
    """Built depthwise convs leave bf16 autocast (slow in oneDNN) and match fp32 exactly."""
    from blockspec.modules import DepthwiseConv2d

    torch.manual_seed(0)
    model = build_model(parse_spec(SPEC, "tiny.yaml"))
    depthwise = [m for m in model.modules() if isinstance(m, DepthwiseConv2d)]
    assert len(depthwise) == 1 and depthwise[0].groups == depthwise[0].in_channels == 16
    conv = depthwise[0]
    x = torch.randn(4, 16, 8, 8, requires_grad=True)
    plain = torch.nn.functional.conv2d(x, conv.weight, conv.bias, conv.stride, conv.padding, conv.dilation, conv.groups)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        inside = conv(x.bfloat16())
        pointwise = torch.nn.Conv2d(16, 4, 1)(x)
    assert pointwise.dtype == torch.bfloat16  # autocast was really on
    assert inside.dtype == torch.float32
    torch.testing.assert_close(inside, torch.nn.functional.conv2d(
        x.bfloat16().float(), conv.weight, conv.bias, conv.stride, conv.padding, conv.dilation, conv.groups))
    torch.testing.assert_close(conv(x), plain, rtol=0, atol=0)


def test_global_pooling_hands_back_a_channels_last_gradient_when_training() -> None:
    """The CPU pooling backward returns NCHW; the built GAP keeps channels-last for the
    layers before it (mixed layouts made their backward 3–4× slower), values unchanged."""
    from blockspec.modules import GlobalAvgPool2d

    torch.manual_seed(0)
    x = torch.randn(2, 8, 4, 4).contiguous(memory_format=torch.channels_last).requires_grad_()
    weights = torch.randn(2, 8, 1, 1)
    seen = []
    shown = x * 1.0  # a non-leaf, so its gradient can be watched on the way back
    shown.register_hook(seen.append)
    pooled = GlobalAvgPool2d()(shown)
    (pooled * weights).sum().backward()
    assert seen[0].is_contiguous(memory_format=torch.channels_last) and not seen[0].is_contiguous()
    stock = x.detach().clone().contiguous(memory_format=torch.channels_last).requires_grad_()
    stock_seen = []
    stock_shown = stock * 1.0
    stock_shown.register_hook(stock_seen.append)
    stock_pooled = torch.nn.AdaptiveAvgPool2d(1)(stock_shown)
    (stock_pooled * weights).sum().backward()
    assert torch.equal(pooled, stock_pooled)
    torch.testing.assert_close(seen[0], stock_seen[0], rtol=0, atol=0)
    assert stock_seen[0].is_contiguous()  # torch's own layout, which the module exists to change


@pytest.mark.parametrize("channels_last", [True, False])
@pytest.mark.parametrize(("size", "dilation", "kernel"), [((16, 16), 2, 3), ((12, 8), 2, 5), ((9, 9), 3, 3), ((9, 9), 2, 3)])
def test_dilated_depthwise_convolution_through_phases_equals_the_plain_one(
    channels_last: bool, size: tuple[int, int], dilation: int, kernel: int
) -> None:
    """The CPU's phase split of channels-last maps (undilated convolutions on the interleaved
    sub-grids) gives the plain dilated convolution's output and gradients, in the same memory
    format."""
    from blockspec.modules import DepthwiseConv2d

    torch.manual_seed(0)
    conv = DepthwiseConv2d(8, 8, kernel, padding=dilation * (kernel // 2), dilation=dilation, groups=8, bias=True)
    x = torch.randn(3, 8, *size)
    if channels_last:
        x = x.contiguous(memory_format=torch.channels_last)
    splits = channels_last and size[0] % dilation == 0 and size[1] % dilation == 0
    assert conv._splits_into_phases(x) == splits  # NCHW, or (9, 9) with dilation 2: the plain path
    ours, plain = x.clone().requires_grad_(), x.clone().requires_grad_()
    out = conv(ours)
    expected = torch.nn.functional.conv2d(plain, conv.weight, conv.bias, padding=conv.padding,
                                          dilation=conv.dilation, groups=8)
    torch.testing.assert_close(out, expected)
    assert out.stride() == expected.stride()
    grad = torch.randn_like(expected)
    got = torch.autograd.grad(out, (ours, conv.weight, conv.bias), grad)
    wanted = torch.autograd.grad(expected, (plain, conv.weight, conv.bias), grad)
    assert got[0].stride() == wanted[0].stride()
    for ours_grad, plain_grad in zip(got, wanted, strict=True):
        torch.testing.assert_close(ours_grad, plain_grad, rtol=1e-4, atol=1e-4)
