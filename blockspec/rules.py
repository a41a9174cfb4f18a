"""The design rules of a spec (`rules:`), checked against its analysis."""

from __future__ import annotations

from dataclasses import dataclass

from blockspec.analysis import Analysis, LayerRow
from blockspec.spec import Spec


@dataclass(frozen=True)
class RuleResult:
    name: str
    ok: bool
    detail: str


def check_rules(spec: Spec, analysis: Analysis) -> list[RuleResult]:
    rules = spec.rules
    results: list[RuleResult] = []
    if rules.max_params is not None:
        total = analysis.total_params
        results.append(
            RuleResult(
                "max_params",
                total <= rules.max_params,
                f"{total:,} parameters (limit {rules.max_params:,})",
            )
        )
    if rules.min_rf is not None:
        rf = analysis.receptive_field
        results.append(
            RuleResult("min_rf", rf >= rules.min_rf, f"receptive field {rf} (need ≥ {rules.min_rf})")
        )
    where = _feature_sites(analysis)
    for feature in rules.require:
        sites = where.get(feature, [])
        detail = f"{feature} at {', '.join(sites)}" if sites else f"no {feature} layer"
        results.append(RuleResult(f"require {feature}", bool(sites), detail))
    for feature in rules.forbid:
        sites = where.get(feature, [])
        detail = f"{feature} at {', '.join(sites)}" if sites else f"no {feature} layer"
        results.append(RuleResult(f"forbid {feature}", not sites, detail))
    if rules.blocks is not None:
        actual = list(spec.blocks)
        results.append(
            RuleResult(
                "blocks",
                actual == rules.blocks,
                f"blocks {' → '.join(actual)} (expected {' → '.join(rules.blocks)})",
            )
        )
    return results


def _feature_sites(analysis: Analysis) -> dict[str, list[str]]:
    """Feature name → the layers that have it, in order.

    A depthwise `conv` directly followed by a 1×1 `conv` is depthwise-separable too: that is
    how hand-written networks spell it, and they should pass `require: [dws]` honestly.
    """
    sites: dict[str, list[str]] = {}
    rows = analysis.rows
    for row, after in zip(rows, rows[1:] + (None,)):
        features = set(row.features)
        if "depthwise" in features and after is not None and _is_pointwise(after):
            features.add("dws")
        for feature in sorted(features):
            sites.setdefault(feature, []).append(row.name)
    return sites


def _is_pointwise(row: LayerRow) -> bool:
    """A 1×1 convolution, plain or strided (a pointwise that also downsamples)."""
    return row.kind in ("conv", "strided") and row.window is not None and row.window.k == 1
