"""Command-line flags over the spec: batch size rescales the learning rate unless --lr is given,
and the EMA decay so that the average spans the same epochs."""

from __future__ import annotations

import pytest

from blockspec.errors import SpecError
from blockspec.load import parse_spec
from blockspec.train.optim import peak_lr
from blockspec.train.overrides import apply_overrides

SPEC = """
name: tiny
blocks:
  C1: [conv: {out: 8}]
  output: [gap: {}, fc: {out: 10}]
train:
  batch_size: 128
  optimizer: {name: OPTIMIZER, lr: 0.1}
  scheduler: {name: onecycle, max_lr: MAX_LR}
"""


def spec(optimizer: str = "sgd", max_lr: str = "null", extra: str = ""):
    return parse_spec(SPEC.replace("OPTIMIZER", optimizer).replace("MAX_LR", max_lr) + extra, "tiny.yaml")


def test_sgd_rates_scale_linearly_with_the_batch() -> None:
    scaled = apply_overrides(spec(), batch_size=512)
    assert scaled.train.batch_size == 512
    assert scaled.train.optimizer.lr == pytest.approx(0.4)
    assert peak_lr(scaled) == pytest.approx(0.4)
    with_peak = apply_overrides(spec(max_lr="0.2"), batch_size=64)
    assert peak_lr(with_peak) == pytest.approx(0.1) and with_peak.train.optimizer.lr == pytest.approx(0.05)


def test_adam_rates_scale_with_the_square_root() -> None:
    assert apply_overrides(spec("adamw"), batch_size=512).train.optimizer.lr == pytest.approx(0.2)
    adam = apply_overrides(spec("adam", max_lr="0.2"), batch_size=512).train
    assert adam.optimizer.lr == pytest.approx(0.2) and adam.scheduler.max_lr == pytest.approx(0.4)


def test_muons_kernel_rate_scales_with_the_square_root_and_its_sgd_rate_linearly() -> None:
    muon = apply_overrides(spec("muon", max_lr="0.2"), batch_size=512).train
    assert muon.optimizer.lr == pytest.approx(0.4) and muon.optimizer.muon_lr == pytest.approx(0.02)


def test_lr_names_sgds_rate_alone_and_leaves_muons_peak_as_the_batch_sets_it() -> None:
    """--lr cleared `max_lr`, which also set Muon's peak (muon_lr × max_lr / lr), and skipped
    the batch's √ scaling of muon_lr: `--batch-size 512 --lr 0.4` halved Muon's peak."""
    from blockspec.train.optim import peak_muon_lr

    assert peak_muon_lr(apply_overrides(spec("muon", max_lr="0.2"), lr=0.3)) == pytest.approx(0.02)
    both = apply_overrides(spec("muon"), batch_size=512, lr=0.4)
    assert peak_muon_lr(both) == pytest.approx(peak_muon_lr(apply_overrides(spec("muon"), batch_size=512))) == pytest.approx(0.02)


def test_explicit_lr_wins_and_same_batch_changes_nothing() -> None:
    assert peak_lr(apply_overrides(spec(max_lr="0.2"), batch_size=512, lr=0.03)) == pytest.approx(0.03)
    assert apply_overrides(spec(), batch_size=128) == spec()


def test_ema_keeps_its_horizon_in_epochs_at_another_batch() -> None:
    with_ema = spec(extra="  ema: 0.999\n")
    for batch, lr in ((512, None), (512, 0.03), (64, None)):
        decay = apply_overrides(with_ema, batch_size=batch, lr=lr).train.ema
        steps = 50_000 // batch  # an epoch of CIFAR-10 at this batch
        assert decay**steps == pytest.approx(0.999 ** (50_000 // 128), rel=0.02)
    assert apply_overrides(with_ema, epochs=3).train.ema == 0.999
    assert apply_overrides(spec(), batch_size=512).train.ema is None


def test_bad_flag_value_names_the_flag() -> None:
    with pytest.raises(SpecError) as raised:
        apply_overrides(spec(), batch_size=0)
    assert str(raised.value) == "--batch-size = 0: Input should be greater than 0"


def test_a_rescaled_field_out_of_range_names_the_field_and_the_flag() -> None:
    """--batch-size raises the EMA decay to the batch ratio; at an absurd ratio it underflows
    to 0. No `--ema` flag exists: the problem names the field and the flag that moved it."""
    with pytest.raises(SpecError) as raised:
        apply_overrides(spec(extra="  ema: 0.999\n"), batch_size=10**9)
    assert str(raised.value) == "train.ema (rescaled by --batch-size) = 0.0: Input should be greater than 0"


def test_the_first_difference_of_two_specs_is_short_even_for_lists_of_other_lengths() -> None:
    """A resume refused for an added layer printed both blocks' every field, kilobytes."""
    from pathlib import Path

    from blockspec.load import load_spec
    from blockspec.train.resume import first_difference

    flagship = Path(__file__).resolve().parents[1] / "architectures" / "flagship.yaml"
    own = load_spec(flagship)
    assert first_difference(load_spec(flagship, edits=["train.epochs=3"]), own) == "train.epochs: 3 here, 40 in the run"
    shorter = load_spec(flagship, edits=["blocks.C1=[conv: {out: 32}]"])
    assert first_difference(shorter, own) == "blocks.C1: 1 entry here, 2 entries in the run"
    changed = load_spec(flagship, edits=["blocks.C2[0].strided.out=48"])
    assert first_difference(changed, own) == "blocks.C2[0].out: 48 here, 64 in the run"
