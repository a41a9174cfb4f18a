"""Each rule at its edge: limits are inclusive, `dws` means a depthwise convolution followed by
a pointwise one, and `blocks` checks the order, not only the names."""

from __future__ import annotations

from blockspec import build_model, parse_spec, summarize

HEAD = "  output: [gap: {}, fc: {out: 10}]\n"


def verdicts(layers: str, rules: str) -> dict[str, bool]:
    spec = parse_spec(f"name: x\nrules: {rules}\nblocks:\n  C1: [{layers}]\n" + HEAD)
    return {rule.name: rule.ok for rule in summarize(spec).rules}


def test_the_limits_are_inclusive() -> None:
    """A 3×3 convolution to 8 channels with its batch norm, then gap and fc: 330 parameters
    as torch counts them, receptive field 3."""
    spec = parse_spec("name: x\nblocks:\n  C1: [conv: {out: 8}]\n" + HEAD)
    assert sum(p.numel() for p in build_model(spec).parameters()) == 330
    assert verdicts("conv: {out: 8}", "{max_params: 330, min_rf: 3}") == {"max_params": True, "min_rf": True}
    assert verdicts("conv: {out: 8}", "{max_params: 329, min_rf: 4}") == {"max_params": False, "min_rf": False}


def test_a_depthwise_convolution_counts_as_dws_only_before_a_pointwise_one() -> None:
    rules = "{require: [dws], forbid: [depthwise]}"
    assert verdicts("conv: {out: 8}, conv: {out: 8, groups: 8}, conv: {out: 8, k: 1}", rules) == {
        "require dws": True, "forbid depthwise": False}
    assert verdicts("conv: {out: 8}, conv: {out: 8, groups: 8}, conv: {out: 8}", rules) == {
        "require dws": False, "forbid depthwise": False}
    assert verdicts("conv: {out: 8}, conv: {out: 8, groups: 2}, conv: {out: 8, k: 1}", rules) == {
        "require dws": False, "forbid depthwise": True}
    # a strided pointwise counted as a plain one with stride 2 did, and `strided` is a conv kind
    assert verdicts("conv: {out: 8}, conv: {out: 8, groups: 8}, strided: {out: 8, k: 1}", rules)["require dws"]


def test_the_blocks_rule_checks_their_order() -> None:
    spec = parse_spec("name: x\nrules: {blocks: [output, C1]}\nblocks:\n  C1: [conv: {out: 8}]\n" + HEAD)
    (rule,) = summarize(spec).rules
    assert not rule.ok and rule.detail == "blocks C1 → output (expected output → C1)"
