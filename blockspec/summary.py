"""`summarize(spec)`: the analysis and rule results as one plain, JSON-ready record."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from blockspec.analysis import Analysis, LayerRow, trace
from blockspec.rules import RuleResult, check_rules
from blockspec.spec import Spec
from blockspec.train.whiten import frozen_stem_params


@dataclass(frozen=True)
class Summary:
    """A spec's exact geometry (`analysis`: per-layer shapes, receptive fields, parameters,
    MACs) and its rule results. In a notebook it shows as the layer table; `str()` is the
    table `build-summary` prints, `to_dict()` its JSON."""

    spec: Spec
    analysis: Analysis
    rules: tuple[RuleResult, ...]

    @property
    def trainable_params(self) -> int:
        """All but a frozen whitening stem's kernel (`train.whiten_stem: frozen`), which training
        sets once from the data and never updates."""
        return self.analysis.total_params - frozen_stem_params(self.spec)

    @property
    def rules_ok(self) -> bool:
        return all(rule.ok for rule in self.rules)

    def __repr__(self) -> str:  # the generated one printed the whole spec and analysis, kilobytes
        analysis = self.analysis
        rules = "no rules" if not self.rules else ("rules hold" if self.rules_ok else "rules violated")
        return (f"<Summary {self.spec.name!r}: {analysis.total_params:,} parameters, {analysis.macs:,} MACs, "
                f"receptive field {analysis.receptive_field}, {rules}>")

    def __str__(self) -> str:
        from blockspec.render import table_text

        return table_text(self)

    def _repr_markdown_(self) -> str:
        from blockspec.render import markdown

        return markdown(self)

    def to_dict(self, layers: bool = True) -> dict[str, Any]:
        """The JSON document of `build-summary --format json` (`compare`'s leaves out the layers)."""
        analysis = self.analysis
        rf_row = analysis.rf_row
        return {
            "name": self.spec.name,
            "input_shape": list(analysis.input_shape),
            "output_shape": list(analysis.output_shape),
            "total_params": analysis.total_params,
            "trainable_params": self.trainable_params,
            "macs": analysis.macs,
            "receptive_field": analysis.receptive_field,
            "receptive_field_layer": rf_row.name if rf_row else None,
            **({"layers": [_layer_dict(row) for row in analysis.rows]} if layers else {}),
            "rules": [{"name": r.name, "ok": r.ok, "detail": r.detail} for r in self.rules],
            "rules_ok": self.rules_ok,
        }


def summarize(spec: Spec) -> Summary:
    """At another input size, summarise the spec loaded at that size (`input_size=` of
    `load_spec`/`parse_spec`): then the spec, its analysis and a module built from it agree."""
    analysis = trace(spec)
    return Summary(spec, analysis, tuple(check_rules(spec, analysis)))


def _layer_dict(row: LayerRow) -> dict[str, Any]:
    window = row.window
    return {
        "block": row.block,
        "name": row.name,
        "kind": row.kind,
        "path": row.path,
        "in_shape": list(row.in_shape),
        "out_shape": list(row.out_shape),
        "k": window.k if window else None,
        "stride": window.stride if window else None,
        "dilation": window.dilation if window else None,
        "padding": window.padding if window else None,
        "rf": row.rf,
        "jump": row.jump,
        "params": row.params,
        "macs": row.macs,
    }
