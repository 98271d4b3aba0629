"""Product catalogue from labelled captures, and its evaluation: above the pipeline.

``python -m iotwatch.learn.products build|evaluate|evaluate-hosts ../shared/pcaps`` profiles every
capture through the pipeline (the inventory ``analyze`` attaches), builds the catalogue that
:mod:`iotwatch.inventory.products` matches devices against, and measures it with folds grouped
by capture set or by physical device (docs/inventory.md, "Product models")."""

from __future__ import annotations

import argparse
import csv
import hashlib
import re
import sys
from collections import Counter, defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ..inventory.fingerprints import DeviceSignals
from ..inventory.products import (
    DEFAULT_PATH,
    Catalogue,
    Labelled,
    Match,
    ProductSample,
    build_catalogue,
    device_tokens,
)
from ..inventory.traffic import DeviceTraffic


def iot_sentinel(root: str | Path) -> list[Labelled]:
    """IoT Sentinel's setup captures under ``root`` (``../shared/pcaps``): the folder is the product,
    ``MANIFEST.tsv`` gives the device's MAC, ``LABELS.tsv`` the type of that host (the Hue switch's
    and the D-Link door sensor's captures show their hub: labelled hub), else
    ``iot_sentinel/MODELS.tsv`` the product's type. Group: the
    product and its setup letter (``Setup-A``…), except for products recorded in one setup only,
    whose captures 1–7 and 8+ are two groups."""
    root = Path(root)
    types: dict[str, str] = {}
    with open(root / "iot_sentinel" / "MODELS.tsv", newline="") as f:
        for row in csv.reader(f, delimiter="\t"):
            if len(row) >= 3:
                types[row[0]] = row[2]
    macs: dict[str, str] = {}
    with open(root / "MANIFEST.tsv", newline="") as f:
        for r in csv.DictReader(f, delimiter="\t"):
            if r["set"] == "iot_sentinel":
                m = re.search(r"device MAC ([0-9a-f:]{17})", r["ground_truth"])
                if m:
                    macs[r["file"]] = m.group(1)
    host_types: dict[tuple[str, str], str] = {}
    with open(root / "LABELS.tsv", newline="") as f:
        for r in csv.DictReader(f, delimiter="\t"):
            if r["file"].startswith("iot_sentinel/") and r["device_type"] != "unknown":
                host_types[(r["file"].removeprefix("iot_sentinel/"), r["host_mac"])] = r["device_type"]
    out: list[Labelled] = []
    for rel, mac in sorted(macs.items()):
        prod = rel.split("/")[0]
        m = re.match(r"Setup-([A-Z])-(\d+)", Path(rel).name)
        if prod not in types or m is None:
            continue
        t = host_types.get((rel, mac), types[prod])
        out.append(Labelled(root / "iot_sentinel" / rel, prod, t, mac, f"{prod}/{m.group(1)}", mac))
    setups: dict[str, set[str]] = defaultdict(set)
    for x in out:
        setups[x.product].add(x.group)
    for x in out:
        if len(setups[x.product]) == 1:
            n = int(re.match(r"Setup-[A-Z]-(\d+)", x.path.name).group(1))  # type: ignore[union-attr]
            x.group = f"{x.group}/{'1-7' if n <= 7 else '8+'}"
    return out


@dataclass(slots=True)
class Profiled:
    """What the inventory saw of one capture (see :func:`profile_capture`)."""

    devices: dict[str, Any]
    sig: dict[str, DeviceSignals]
    traffic: dict[str, DeviceTraffic]
    seq: dict[str, list[int]]
    seen: dict[str, float] = field(default_factory=dict)  # seconds seen (active windows)


def _cache_file(path: Path) -> Path:
    import os

    from ..inventory import analyser, fingerprints, parse, traffic

    h = hashlib.sha256()
    for mod in (parse, fingerprints, traffic, analyser, sys.modules[__name__]):
        h.update(Path(mod.__file__ or "").read_bytes())
    st = path.stat()
    h.update(f"{path.resolve()}|{st.st_size}|{st.st_mtime_ns}".encode())
    return Path(os.environ.get("IOTWATCH_CACHE", "/tmp/iotwatch-inventory-cache")) / f"product-{h.hexdigest()[:24]}.pkl"


def profile_capture(path: str | Path, *, cache: bool = True) -> Profiled:
    """Run the pipeline with an inventory over one capture; keep what the catalogue needs
    (cached under ``$IOTWATCH_CACHE``: a local cache of our own results, never shipped)."""
    import pickle

    from ..inventory.analyser import Inventory
    from ..pipeline import run
    from ..settings import Settings

    p = Path(path)
    cfile = _cache_file(p)
    if cache and cfile.exists():
        try:
            with open(cfile, "rb") as f:
                got = pickle.load(f)  # written below by this function
            if isinstance(got, Profiled):
                return got
        except Exception:
            pass
    inv = Inventory(model=None, catalogue=None)
    pipe, _ = run([p], Settings(detect=False, identify=False), analysers=[inv])
    devices, _ = pipe.finish()
    prof = Profiled(devices, dict(inv.fp.devices), inv.traffic, inv.sequences.symbols,
                    {k: n * inv.window_s for k, n in inv.windows.items()})
    if cache:
        cfile.parent.mkdir(parents=True, exist_ok=True)
        tmp = cfile.with_suffix(f".{id(prof)}.tmp")
        with open(tmp, "wb") as f:
            pickle.dump(prof, f)
        tmp.replace(cfile)
    return prof


def sample_of(x: Labelled, prof: Profiled) -> ProductSample | None:
    from ..inventory.oui import lookup

    if x.mac not in prof.devices:
        return None
    toks = device_tokens(prof.sig.get(x.mac) or DeviceSignals(), prof.traffic.get(x.mac), lookup(x.mac).organisation)
    return ProductSample(x.product, x.device_type, x.group, str(x.path), toks, list(prof.seq.get(x.mac, [])))


def _profiles(items: Sequence[Labelled], jobs: int = 1) -> dict[Path, Profiled]:
    paths = list(dict.fromkeys(x.path for x in items))
    if jobs > 1:
        from concurrent.futures import ProcessPoolExecutor

        with ProcessPoolExecutor(jobs) as ex:
            return dict(zip(paths, ex.map(profile_capture, paths, chunksize=8), strict=True))
    return {p: profile_capture(p) for p in paths}


# --------------------------------------------------------------------------- evaluation

@dataclass(slots=True)
class FoldResult:
    sample: ProductSample
    match: Match
    device_type: str  # the coarse type decided with this match (classify.decide)
    classified_by: str


def evaluate(items: Sequence[Labelled], profiles: dict[Path, Profiled], *, type_model: Any = None) -> list[FoldResult]:
    """Leave-one-group-out: each capture set is matched against a catalogue built without it,
    and its device typed by ``classify.decide`` with that match."""
    from ..inventory.classify import decide

    pairs = [(x, s) for x in items if (s := sample_of(x, profiles[x.path])) is not None]
    out: list[FoldResult] = []
    for g in sorted({x.group for x, _ in pairs}):
        train = [s for x, s in pairs if x.group != g]
        cat = build_catalogue(train)
        for x, s in pairs:
            if x.group != g:
                continue
            prof = profiles[x.path]
            m = cat.match(s.tokens, s.seq)
            ident = decide(x.mac, prof.devices.get(x.mac), prof.sig.get(x.mac) or DeviceSignals(),
                           prof.traffic.get(x.mac), type_model, catalogue=cat, sequence=s.seq,
                           seen_s=prof.seen.get(x.mac))
            out.append(FoldResult(s, m, ident.device_type, ident.classified_by or "rules"))
    return out


def report(results: Sequence[FoldResult]) -> str:
    n = len(results)
    prod_ok = sum(r.match.product == r.sample.product for r in results)
    conf = [r for r in results if r.match.confident]
    conf_ok = sum(r.match.product == r.sample.product for r in conf)
    type_ok = sum(r.device_type == r.sample.device_type for r in results)
    false_cctv = [r for r in results if r.device_type in ("camera", "recorder")
                  and r.sample.device_type not in ("camera", "recorder")]
    lines = [f"captures: {n}, groups: {len({r.sample.group for r in results})}",
             f"product (nearest exemplar): {prod_ok}/{n} = {prod_ok / max(n, 1):.3f}",
             f"product, confident matches: {conf_ok}/{len(conf)} right; {len(conf)}/{n} confident",
             f"coarse type (decide with the match): {type_ok}/{n} = {type_ok / max(n, 1):.3f}",
             f"typed camera/recorder but not one: {len(false_cctv)}"]
    per: dict[str, list[int]] = defaultdict(lambda: [0, 0, 0])
    for r in results:
        c = per[r.sample.product]
        c[0] += 1
        c[1] += r.match.product == r.sample.product
        c[2] += r.device_type == r.sample.device_type
    lines.append(f"{'product':<20} {'n':>3} {'prod':>4} {'type':>4}  most often confused with")
    for p in sorted(per):
        c = per[p]
        wrong = Counter(str(r.match.product) for r in results if r.sample.product == p and r.match.product != p)
        lines.append(f"{p:<20} {c[0]:>3} {c[1]:>4} {c[2]:>4}  {', '.join(f'{k} {v}' for k, v in wrong.most_common(3))}")
    return "\n".join(lines)


@dataclass(slots=True)
class HostResult:
    file: str
    key: str
    unit: str
    label: str
    without: str  # type by rules + classifier (no catalogue)
    with_catalogue: str  # type with the catalogue as well (and, merged, the time seen)
    evidence: list[str]
    merged: bool = False  # one answer for the unit from all its captures


def evaluate_hosts(root: str | Path, *, n_splits: int = 5, jobs: int = 1) -> list[HostResult]:
    """Every labelled host of ``root/LABELS.tsv`` typed with and without the catalogue, 5 folds
    grouped by physical device (the type model's own folds): each fold's type model and
    catalogue are built without the fold's units (IoT Sentinel captures of a held-out unit are
    left out of the catalogue, so its product is unknown to it: only its kind can be recognised)."""
    from sklearn.model_selection import GroupKFold

    from ..inventory.classify import decide
    from . import device_type as train

    root = Path(root)
    ss, _ = train.samples([root / "LABELS.tsv"])
    items = iot_sentinel(root)
    paths = list(dict.fromkeys([*(root / s.file for s in ss), *(x.path for x in items)]))
    profiles = _profiles([Labelled(p, "", "", "", "", "") for p in paths], jobs)
    iot = [(x, ps) for x in items if (ps := sample_of(x, profiles[x.path])) is not None]
    groups = np.array([s.group for s in ss])
    out: list[HostResult] = []
    for tr, te in GroupKFold(n_splits=n_splits).split(np.zeros(len(ss)), groups=groups):
        model = train._fit([ss[i] for i in tr], jobs)
        held = {str(g) for g in groups[te]}
        cat = build_catalogue([ps for x, ps in iot if x.unit not in held])
        for i in te:
            sm = ss[i]
            prof = profiles[root / sm.file]
            seq, seen = prof.seq.get(sm.key, []), prof.seen.get(sm.key)
            a = decide(sm.key, sm.record, sm.sig, sm.traffic, model, None, seen_s=seen)
            b = decide(sm.key, sm.record, sm.sig, sm.traffic, model, None, catalogue=cat, sequence=seq, seen_s=seen)
            out.append(HostResult(sm.file, sm.key, sm.group, sm.label, a.device_type, b.device_type, b.evidence))
        # each held-out unit once from all its captures, as one run over them types it: merged
        # (train.merge_unit), first with the first-to-last span, then with the time seen and the catalogue
        held_units: dict[str, list[Any]] = defaultdict(list)
        for i in te:
            held_units[ss[i].group].append(ss[i])
        for g, gs in held_units.items():
            key, rec, fp, trf = train.merge_unit(gs)
            order = sorted(gs, key=lambda x: x.file)
            seen = sum(profiles[root / x.file].seen.get(x.key, 0.0) for x in order)
            seq = next((q for x in order if (q := profiles[root / x.file].seq.get(x.key))), [])
            a = decide(key, rec, fp.get(key), trf.get(key), model)
            b = decide(key, rec, fp.get(key), trf.get(key), model, catalogue=cat, sequence=seq, seen_s=seen)
            out.append(HostResult(f"{len(gs)} captures", key, g, gs[0].label, a.device_type, b.device_type,
                                  b.evidence, merged=True))
    return out


def host_report(all_res: Sequence[HostResult]) -> str:
    merged = [r for r in all_res if r.merged]
    res = [r for r in all_res if not r.merged]
    n = len(res)
    units: dict[str, list[HostResult]] = defaultdict(list)
    for r in res:
        units[r.unit].append(r)
    lines = [f"labelled hosts: {n} rows, {len(units)} physical devices (5 folds grouped by device)"]
    for name, attr in (("rules + classifier", "without"), ("with the catalogue", "with_catalogue")):
        ok = sum(getattr(r, attr) == r.label for r in res)
        uok = sum(all(getattr(r, attr) == r.label for r in rs) for rs in units.values())
        cctv = sum(getattr(r, attr) in ("camera", "recorder") and r.label not in ("camera", "recorder") for r in res)
        lines.append(f"{name}: rows {ok}/{n} = {ok / max(n, 1):.3f}; devices with every row right {uok}/{len(units)} "
                     f"= {uok / max(len(units), 1):.3f}; false camera/recorder rows {cctv}")
    lines.append("wrong with the catalogue (unit: rows wrong/rows, label → answers; first evidence):")
    for u, rs in sorted(units.items()):
        bad = [r for r in rs if r.with_catalogue != r.label]
        if bad:
            got = Counter(r.with_catalogue for r in bad)
            lines.append(f"  {u} {len(bad)}/{len(rs)} {rs[0].label} → {dict(got)}; {bad[0].file}: "
                         f"{' | '.join(bad[0].evidence[:4])}")
    m = len(merged)
    for name, attr in (("merged per device, first-to-last span, no catalogue", "without"),
                       ("merged per device, time seen, with the catalogue", "with_catalogue")):
        ok = sum(getattr(r, attr) == r.label for r in merged)
        lines.append(f"{name}: {ok}/{m} = {ok / max(m, 1):.3f}; false camera/recorder "
                     f"{sum(getattr(r, attr) in ('camera', 'recorder') and r.label not in ('camera', 'recorder') for r in merged)}")
    for r in merged:
        if r.with_catalogue != r.label or r.without != r.label:
            lines.append(f"  merged {r.unit} ({r.file}) {r.label}: span → {r.without}, seen+catalogue → "
                         f"{r.with_catalogue}; {' | '.join(r.evidence[:3])}")
    changed = [r for r in res if r.with_catalogue != r.without]
    lines.append(f"rows changed by the catalogue: {len(changed)} "
                 f"({sum(r.with_catalogue == r.label for r in changed)} to right, "
                 f"{sum(r.without == r.label for r in changed)} to wrong)")
    return "\n".join(lines)


def from_labels(label_files: Sequence[str | Path]) -> list[Labelled]:
    """The exemplars that label files name: every row with a ``product`` (and a type), plus IoT
    Sentinel's captures when a label file sits in the shared corpus's folder (``iot_sentinel/MODELS.tsv``
    beside it: the folder names the product). Capture set (held out together when the catalogue
    is measured): the product and the capture's folder; unit: the host."""
    from .labels import read_many

    out: list[Labelled] = []
    for lab in read_many(label_files):
        if lab.product and lab.device_type not in ("", "unknown"):
            out.append(Labelled(lab.capture, lab.product, lab.device_type, lab.host,
                                f"{lab.product}/{lab.capture.parent.name}", lab.host))
    for root in corpus_roots(label_files):
        out += iot_sentinel(root)
    return out


def corpus_roots(label_files: Sequence[str | Path]) -> list[Path]:
    """The folders of these label files that hold the shared corpus (IoT Sentinel's ``MODELS.tsv``
    and ``MANIFEST.tsv``)."""
    return [r for r in dict.fromkeys(Path(f).parent for f in label_files)
            if (r / "iot_sentinel" / "MODELS.tsv").is_file() and (r / "MANIFEST.tsv").is_file()]


def rebuild(root: str | Path, out: str | Path, *, jobs: int = 1, items: Sequence[Labelled] | None = None,
            profiles: dict[Path, Profiled] | None = None, training: dict[str, Any] | None = None) -> Catalogue:
    """Build the catalogue from the labelled captures under ``root`` (``../shared/pcaps``; or the
    given ``items``), measure it (leave one capture set out) and save it to ``out``: what
    ``make model`` and training call. Raises ``OSError``/``KeyError`` when the label files are
    missing or lack their columns."""
    items = list(items) if items is not None else iot_sentinel(root)
    profiles = profiles if profiles is not None else _profiles(items, jobs)
    samples = [s for x in items if (s := sample_of(x, profiles[x.path])) is not None]
    cat = build_catalogue(samples)
    res = evaluate(items, profiles)
    n = len(res)
    metrics = {"protocol": "leave one capture set out (product + setup letter)", "captures": n,
               "product_accuracy": round(sum(r.match.product == r.sample.product for r in res) / max(n, 1), 4),
               "type_accuracy": round(sum(r.device_type == r.sample.device_type for r in res) / max(n, 1), 4)}
    cat.save(out, training=training or {"set": "iot_sentinel", "captures": len(samples),
                                        "labels": ["MANIFEST.tsv", "LABELS.tsv", "iot_sentinel/MODELS.tsv"]},
             metrics=metrics)
    return Catalogue.load(out)


def main(argv: Sequence[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m iotwatch.inventory.products",
                                 description="Build or evaluate the product catalogue from ../shared/pcaps.")
    ap.add_argument("command", choices=("build", "evaluate", "evaluate-hosts"),
                    help="build the catalogue; evaluate it on IoT Sentinel's 27 models (leave one capture set "
                         "out); evaluate-hosts: coarse type of every labelled host, folds by physical device")
    ap.add_argument("root", type=Path, help="the shared captures folder (with MANIFEST.tsv and iot_sentinel/)")
    ap.add_argument("--out", type=Path, default=DEFAULT_PATH, help="catalogue folder to write (build)")
    ap.add_argument("--type-model", type=Path, default=None,
                    help="type bundle for devices without a confident product (evaluate; default: rules only)")
    ap.add_argument("--by", choices=("setup", "capture"), default="setup",
                    help="evaluate: hold out a capture set (product + setup letter, default) or one capture at a "
                         "time (IoT Sentinel's own protocol: other captures of the same unit and setup in training)")
    ap.add_argument("--jobs", type=int, default=1, help="processes profiling captures (first run only: cached)")
    a = ap.parse_args(argv)
    try:
        items = iot_sentinel(a.root)
    except (OSError, KeyError) as e:
        print(f"{a.root}: cannot read the labelled captures ({e})", file=sys.stderr)
        return 2
    if a.command == "evaluate-hosts":
        print(host_report(evaluate_hosts(a.root, jobs=a.jobs)))
        return 0
    profiles = _profiles(items, a.jobs)
    if a.command == "evaluate" and a.by == "capture":
        for x in items:
            x.group = str(x.path)
    if a.command == "evaluate":
        tm = None
        if a.type_model is not None:
            from ..inventory.classify import TypeModel

            tm = TypeModel.load(a.type_model)
        res = evaluate(items, profiles, type_model=tm)
        print(report(res))
        return 0
    cat = rebuild(a.root, a.out, jobs=a.jobs, items=items, profiles=profiles)
    metrics = cat.manifest["metrics"]
    print(f"wrote {a.out}: {len(cat.products)} products, {len(cat.exemplars)} exemplars; {metrics}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
