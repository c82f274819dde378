"""Per-layer folding (PE, SIMD): explicit (a fold spec / JSON file) or automatic for a target cycles per inference.

Legal foldings are FINN's: ``PE`` divides ``MH`` and ``SIMD`` divides ``MW``; a layer then needs
``SF · NF = (MW / SIMD) · (MH / PE)`` cycles per vector, and the pipeline's initiation interval is the largest of
these (cycles.py). :func:`auto_fold` picks, independently for every layer, the legal folding meeting the target at
the least :attr:`LayerConfig.cost <hwgen.arch.dataflow.config.LayerConfig.cost>`: the layer's LUT count by the
calibrated analytic FPGA model (:func:`hwgen.estimate.fpga.fold_cost`: ECP5 LUT4s, multipliers built from LUTs,
weights in block RAM free); ties go to fewer cycles, then fewer PEs.
"""
from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import replace
from functools import lru_cache
from pathlib import Path

from ...errors import HwgenError
from .config import LayerConfig, LayerFold


def divisors(n: int) -> list[int]:
    return [d for d in range(1, n + 1) if n % d == 0]


@lru_cache(maxsize=1024)
def legal_folds(layer: LayerConfig) -> tuple[LayerConfig, ...]:
    """Every legal folding of ``layer`` (as configurations; those the load port cannot address are left out);
    cached: a sweep folds the same layers for many targets."""
    result = []
    for pe in divisors(layer.mh):
        for simd in divisors(layer.mw):
            try:
                result.append(replace(layer, pe=pe, simd=simd))
            except ValueError:
                continue
    return tuple(result)


@lru_cache(maxsize=1024)
def ranked_folds(layer: LayerConfig) -> tuple[tuple[float, int, int, int, LayerConfig], ...]:
    """Every legal folding of ``layer`` as ``(cost, cycles, pe, lanes = PE·SIMD, configuration)``, cheapest
    first, ties to fewer cycles, then fewer PEs: the order :func:`auto_fold` chooses in (no two foldings tie on
    all three: PE and the cycles fix SIMD). Cached per layer, so a target is a scan, not a search."""
    return tuple(sorted(((c.cost, c.cycles, c.pe, c.pe * c.simd, c) for c in legal_folds(layer)),
                        key=lambda row: row[:3]))


def auto_fold(layers: Sequence[LayerConfig], target_cycles: int, names: Sequence[str] | None = None,
              max_lanes: int | None = None) -> tuple[LayerFold, ...]:
    """The cheapest legal folding of every layer with ``SF · NF ≤ target_cycles`` (cycles per inference) and at
    most ``max_lanes`` MAC lanes (``PE · SIMD``, a multiplier budget per layer; default unlimited); raises
    :class:`HwgenError` giving the best achievable cycles when a layer cannot meet the target."""
    return tuple(layer.fold for layer in auto_fold_configs(layers, target_cycles, names, max_lanes))


def auto_fold_configs(layers: Sequence[LayerConfig], target_cycles: int, names: Sequence[str] | None = None,
                      max_lanes: int | None = None) -> tuple[LayerConfig, ...]:
    """:func:`auto_fold`, as the folded layer configurations."""
    if isinstance(target_cycles, bool) or not isinstance(target_cycles, int) or target_cycles < 1:
        raise HwgenError(f"target cycles must be a positive integer, got {target_cycles!r}")
    folded = []
    for index, layer in enumerate(layers):
        ranked = ranked_folds(layer)
        # the first (cheapest) folding within the lane budget that meets the target
        choice = next((c for _, cycles, _, lanes, c in ranked
                       if cycles <= target_cycles and (max_lanes is None or lanes <= max_lanes)), None)
        if choice is None:
            name = names[index] if names else f"layer {index}"
            best = min(cycles for _, cycles, _, lanes, _ in ranked if max_lanes is None or lanes <= max_lanes)
            budget = "" if max_lanes is None else f" with at most {max_lanes} MAC lanes"
            raise HwgenError(f"'{name}' ({layer.mw}×{layer.mh}) cannot run in {target_cycles} cycles per inference"
                             f"{budget}; the best achievable is {best} cycles")
        folded.append(choice)
    return tuple(folded)


def reuse_fold(layers: Sequence[LayerConfig], names: Sequence[str], reuse: Mapping[str, int]) -> tuple[LayerFold, ...]:
    """hls4ml's ``ReuseFactor`` as folding. An ``io_parallel`` Dense layer with reuse factor ``R`` has
    ``MW·MH / R`` multipliers, each used ``R`` times per input: its II is ``R`` cycles, so it gets the cheapest
    legal folding with ``SF · NF = R`` exactly (``PE·SIMD = MW·MH / R`` MAC lanes). Layers without a reuse factor
    (a BatchNorm's diagonal layer) get the cheapest folding meeting the largest ``R``, so the pipeline's II is the
    largest reuse factor, as in hls4ml."""
    target = max((reuse[name] for name in names if name in reuse), default=None)
    folds = []
    for name, layer in zip(names, layers):
        candidates = legal_folds(layer)
        if name in reuse:
            exact = [c for c in candidates if c.cycles == reuse[name]]
            if not exact:
                raise HwgenError(f"'{name}' ({layer.mw}×{layer.mh}): ReuseFactor {reuse[name]} is not "
                                 "(MW/SIMD)·(MH/PE) "
                                 "for any folding with SIMD dividing MW and PE dividing MH")
            folds.append(min(exact, key=lambda c: (c.cost, c.pe)).fold)
        else:
            meeting = [c for c in candidates if c.cycles <= target] or [min(candidates, key=lambda c: c.cycles)]
            folds.append(min(meeting, key=lambda c: (c.cost, c.cycles, c.pe)).fold)
    return tuple(folds)


def parse_fold(spec, names: Sequence[str]) -> tuple[LayerFold, ...]:
    """An explicit folding: a JSON file path, a list with one ``{"pe", "simd"}`` (or :class:`LayerFold`) per
    layer, or a mapping layer name → ``{"pe", "simd"}`` naming every layer."""
    if isinstance(spec, (str, Path)):
        path = Path(spec)
        try:
            spec = json.loads(path.read_text())
        except (OSError, ValueError) as error:
            raise HwgenError(f"{path}: cannot read the fold file ({error})") from None
    if isinstance(spec, Mapping):
        unknown = sorted(set(spec) - set(names))
        missing = [name for name in names if name not in spec]
        if unknown or missing:
            raise HwgenError(f"fold: {'unknown layers ' + ', '.join(map(repr, unknown)) if unknown else ''}"
                             f"{'; ' if unknown and missing else ''}"
                             f"{'no entry for ' + ', '.join(map(repr, missing)) if missing else ''}")
        spec = [spec[name] for name in names]
    if not isinstance(spec, Sequence) or len(spec) != len(names):
        raise HwgenError(f"fold: expected {len(names)} entries (one per layer), got {spec!r:.80}")
    folds = []
    for name, entry in zip(names, spec):
        if isinstance(entry, LayerFold):
            folds.append(entry)
            continue
        if not isinstance(entry, Mapping) or set(entry) - {"pe", "simd"}:
            raise HwgenError(f"fold entry for '{name}': expected {{\"pe\": int, \"simd\": int}}, got {entry!r:.80}")
        try:
            folds.append(LayerFold(entry.get("pe", 1), entry.get("simd", 1)))
        except ValueError as error:
            raise HwgenError(f"fold entry for '{name}': {error}") from None
    return tuple(folds)
