"""`defaults.ghost_batch`: batch norm statistics from groups of images in training, plain
BatchNorm2d otherwise (same parameters, same state_dict, same evaluation)."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from torch import nn

from blockspec.build import build_model
from blockspec.load import load_spec
from blockspec.modules import GhostBatchNorm2d
from tests.cli_helpers import ROOT, metrics, run_cli, without_timing
from tests.synthetic import tiny_spec_text, write_colour_folder

FLAGSHIP = ROOT / "architectures" / "flagship.yaml"


def _batch(n: int = 128) -> torch.Tensor:
    torch.manual_seed(0)
    # Groups with different means, so that per-group and whole-batch statistics differ.
    return torch.randn(n, 8, 6, 6) * 3 + torch.arange(n).view(n, 1, 1, 1) / 16


def _per_group(x: torch.Tensor, size: int) -> torch.Tensor:
    groups = x.split(size)
    return torch.cat([nn.functional.batch_norm(g, None, None, training=True) for g in groups])


def test_a_last_group_of_one_value_a_channel_joins_the_group_before() -> None:
    """Batch 7 in groups of 3 on a 1×1 map leaves one image alone, whose one value a channel
    batch norm cannot normalise (torch refuses): it is normalised with the two before it."""
    x = _batch(7)[:, :, :1, :1]
    ghost = GhostBatchNorm2d(8, ghost_batch=3).train()
    expected = torch.cat([_per_group(x[:3], 3), _per_group(x[3:], 4)])
    torch.testing.assert_close(ghost(x), expected)


def test_groups_of_one_image_on_a_1x1_map_are_a_spec_error(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "g.yaml"
    path.write_text("name: g\ndefaults: {ghost_batch: 1}\nblocks:\n  C1: [conv: {out: 8}, gap: {}, norm: {}]\n"
                    "  output: [fc: {out: 10}]\n")
    code, _, err = run_cli(["check", str(path)], capsys)
    assert code == 2 and "blocks.C1[2].type = 'batch': ghost batch norm over groups of 1 image" in err


def test_each_group_is_normalised_by_its_own_statistics() -> None:
    x = _batch()
    ghost = GhostBatchNorm2d(8, ghost_batch=32).train()
    expected = _per_group(x, 32)
    torch.testing.assert_close(ghost(x), expected)
    whole = nn.BatchNorm2d(8).train()(x)
    assert (ghost(x) - whole).abs().max() > 0.1


def test_uneven_last_group_and_small_batches() -> None:
    ghost = GhostBatchNorm2d(8, ghost_batch=32).train()
    x = _batch(80)  # groups of 32, 32 and 16: the last training batch of CIFAR-10 at batch 128
    expected = _per_group(x, 32)
    torch.testing.assert_close(ghost(x), expected)
    small = _batch(20)  # no larger than one group: whole-batch statistics
    torch.testing.assert_close(ghost(small), nn.BatchNorm2d(8).train()(small))


def test_running_statistics_move_as_far_as_whole_batch_ones() -> None:
    x = _batch(32).repeat(4, 1, 1, 1)  # four groups with the same statistics as the whole batch
    ghost, plain = GhostBatchNorm2d(8, ghost_batch=32).train(), nn.BatchNorm2d(8).train()
    for _ in range(3):
        ghost(x)
        plain(x)
    torch.testing.assert_close(ghost.running_mean, plain.running_mean)
    # Unbiased variances of 32·36 against 128·36 values: 1 + 3/4607 apart.
    torch.testing.assert_close(ghost.running_var, plain.running_var, rtol=1e-3, atol=0)
    assert int(ghost.num_batches_tracked) == int(plain.num_batches_tracked) == 3
    ghost.eval(), plain.eval()
    plain.load_state_dict(ghost.state_dict())
    torch.testing.assert_close(ghost(x), plain(x), rtol=0, atol=0)


def test_update_bn_recomputes_whole_batch_statistics() -> None:
    """torch's `update_bn` (momentum None, a cumulative average) works on ghost norms and gives
    BatchNorm2d's running statistics."""
    from torch.optim.swa_utils import update_bn

    batches = [_batch(), _batch(64) * 2]
    ghost, plain = GhostBatchNorm2d(8, ghost_batch=32), nn.BatchNorm2d(8)
    update_bn(batches, ghost)
    update_bn(batches, plain)
    torch.testing.assert_close(ghost.running_mean, plain.running_mean, rtol=0, atol=0)
    torch.testing.assert_close(ghost.running_var, plain.running_var, rtol=0, atol=0)
    assert ghost.momentum == 0.1  # restored for training


def test_spec_builds_ghost_norms_with_the_same_parameters_and_state() -> None:
    plain = build_model(load_spec(FLAGSHIP, edits=["defaults.ghost_batch=null"]))
    ghost = build_model(load_spec(FLAGSHIP, edits=["defaults.ghost_batch=32"]))
    norms = [m for m in ghost.modules() if isinstance(m, nn.BatchNorm2d)]
    assert norms and all(isinstance(m, GhostBatchNorm2d) and m.ghost_batch == 32 for m in norms)
    assert not any(isinstance(m, GhostBatchNorm2d) for m in plain.modules())
    assert plain.state_dict().keys() == ghost.state_dict().keys()
    assert sum(p.numel() for p in plain.parameters()) == sum(p.numel() for p in ghost.parameters())
    ghost.load_state_dict(plain.state_dict())  # checkpoints move between the two
    x = torch.randn(4, 3, 32, 32)
    torch.testing.assert_close(ghost.eval()(x), plain.eval()(x), rtol=0, atol=0)


@pytest.mark.parametrize("value", ["0", "-8", "half"])
def test_bad_ghost_batch_names_the_field(value: str, capsys: pytest.CaptureFixture[str]) -> None:
    argv = ["build-summary", str(FLAGSHIP), "--set", f"defaults.ghost_batch={value}"]
    code, _, err = run_cli(argv, capsys)
    assert code != 0
    assert "defaults.ghost_batch" in err and value in err
    assert "Traceback" not in err


def test_training_run_uses_ghost_norms(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """The same seed, with and without groups of 4 in batches of 16: the header says which, and
    the recorded losses and accuracies differ (the groups' statistics reach the gradients)."""
    spec = tmp_path / "tiny.yaml"
    spec.write_text(tiny_spec_text(write_colour_folder(tmp_path / "data"), epochs=1))
    histories = {}
    for name, edits in (("plain", []), ("ghost", ["--set", "defaults.ghost_batch=4"])):
        argv = ["train", str(spec), "--out", str(tmp_path / name), "--workers", "0", *edits]
        code, stdout, err = run_cli(argv, capsys)
        assert code == 0, err
        assert ("batch norm in groups of 4" in stdout) == (name == "ghost")
        histories[name] = without_timing(metrics(tmp_path / name))
    assert histories["plain"] != histories["ghost"]
