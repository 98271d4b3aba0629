"""Learning: label files, training and evaluation of both models (iotwatch/learn), on what
``analyze`` computes."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from conftest import SHARED_PCAPS, needs_shared
from scapy.layers.dhcp import BOOTP, DHCP
from scapy.layers.inet import IP, TCP, UDP
from test_inventory import ComputerModel, client_hello, frame

import iotwatch
from iotwatch.errors import InputError
from iotwatch.inventory import DeviceTraffic, Fingerprints, TypeModel, identify, lookup
from iotwatch.inventory.classify import decide
from iotwatch.learn.labels import read_labels
from iotwatch.records import DeviceRecord
from iotwatch.sidecar import RareFrame
from iotwatch.synth import Options, generate
from iotwatch.synth.mirai import VECTORS

# the seeds of tests/test_detect.py's scenarios (not used by `make model` nor `make eval`)
SCENARIOS = {
    "scan": Options("scan", seed=502, duration=90, quiet=40),
    "exfil": Options("exfil", seed=504, duration=150, quiet=70, uplink_mbps=4),
    "flood-udp": Options("flood", seed=506, duration=45, quiet=20, vector="udp", uplink_mbps=4),
    "site": Options("site", seed=507, duration=120),
    "site-b": Options("site", seed=508, duration=120),
}
assert "udp" in VECTORS


@pytest.fixture(scope="module")
def made(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    d = tmp_path_factory.mktemp("learn")
    return {name: generate(o, d / f"{name}.pcap").pcap for name, o in SCENARIOS.items()}


def labels_of(pcap: Path) -> Path:
    return pcap.with_name(pcap.stem + ".labels.tsv")


def iotwatch_cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "iotwatch", *args], capture_output=True, text=True)


def only_our_lines(stderr: str) -> None:
    """Every line the user sees is one of ours: no raw scikit-learn/joblib warning, no traceback."""
    lines = stderr.splitlines()
    assert all(x.startswith("iotwatch: ") for x in lines), stderr
    assert "Warning" not in stderr and "sklearn" not in stderr and "Traceback" not in stderr


# --------------------------------------------------------------------------- label rows → devices

def test_a_row_names_its_device_by_mac_then_by_address() -> None:
    from iotwatch.addrs import LocalNets
    from iotwatch.learn.labels import HostLabel

    gw, cam = "00:11:22:33:44:55", "c0:56:e3:11:22:33"
    devices = {cam: DeviceRecord(mac=cam, ips=["192.168.1.64"]),
               gw: DeviceRecord(mac=gw, ips=["192.168.1.1", "40.77.167.36"]),  # a server seen behind the gateway
               "10.0.0.9": DeviceRecord(mac=None, ips=["10.0.0.9"])}  # no Ethernet

    def row(ip: str, mac: str = "", behaviour: str = "normal") -> HostLabel:
        return HostLabel(Path("c.pcap"), ip, mac, behaviour, None, None, "", Path("l.tsv"), 2)

    local = LocalNets().is_local
    assert row("192.168.1.99", cam).device_keys(devices, local) == [cam]  # the MAC decides
    assert row("192.168.1.64").device_keys(devices, local) == [cam]  # a local address: who used it
    assert row("10.0.0.9", "02:00:00:00:00:09").device_keys(devices, local) == ["10.0.0.9"]  # keyed on its address
    assert row("40.77.167.36").device_keys(devices, local) == []  # external: never the gateway
    assert row("192.168.1.200", "02:00:00:00:00:01").device_keys(devices, local) == []


# --------------------------------------------------------------------------- behaviour: commands

def test_train_and_evaluate_commands(made: dict[str, Path], tmp_path: Path) -> None:
    labs = [str(labels_of(made[n])) for n in ("scan", "site", "flood-udp", "exfil")]
    out = tmp_path / "model"
    r = iotwatch_cli("train", *labs, "--out", str(out), "-j", "2")
    assert r.returncode == 0, r.stderr
    only_our_lines(r.stderr)
    m = json.loads((out / "manifest.json").read_text())
    # one binary output per behaviour the labels show (a window may show several)
    assert m["classes"] == ["scan", "flood", "exfil"] and m["multilabel"] is True
    assert set(m["thresholds"]) == {"scan", "flood", "exfil"} and all(0.6 <= t <= 0.99 for t in m["thresholds"].values())
    assert m["training"] and all(Path(p).exists() for p in m["training"])
    assert {lf["path"] for lf in m["label_files"]} == set(labs)
    assert m["metrics"]["cross_validation"].startswith("GroupKFold")
    # each misbehaviour comes from one device: said once per class, in one line
    thin = [x for x in r.stderr.splitlines() if x.startswith("iotwatch: warning: class ")]
    assert sorted(x.split()[3] for x in thin) == ["exfil:", "flood:", "scan:"]
    assert all("of 1 device," in x for x in thin)
    r = iotwatch_cli("evaluate", "--model", str(out), *labs, "--report", str(tmp_path / "r.md"))
    assert r.returncode == 0, r.stderr
    assert "caught with the right category: **3 / 3**" in r.stdout
    assert "Confusion matrix" in r.stdout and "Time to first alert" in r.stdout
    assert (tmp_path / "r.md").read_text() == r.stdout.rstrip("\n") + "\n"


def test_bad_label_file_one_line(tmp_path: Path) -> None:
    f = tmp_path / "l.tsv"
    f.write_text("file\thost_ip\thost_mac\tbehaviour\nx.pcap\t10.0.0.1\t\tpwned\n")
    with pytest.raises(InputError, match="line 2: behaviour 'pwned'"):
        read_labels(f)
    r = iotwatch_cli("evaluate", "--no-model", str(f))
    assert r.returncode == 1 and r.stderr.count("\n") == 1 and "Traceback" not in r.stderr
    g = tmp_path / "g.tsv"
    g.write_text("a\tb\n1\t2\n")
    with pytest.raises(InputError, match="missing column"):
        read_labels(g)


def test_label_of_a_host_not_in_its_capture_is_one_warning(made: dict[str, Path], tmp_path: Path) -> None:
    """A row naming a host its capture does not have is left out with one line naming the row."""
    scan = labels_of(made["scan"])
    head, *rows = scan.read_text().splitlines()
    cols = head.split("\t")
    ghost = next(r for r in rows if r.split("\t")[cols.index("behaviour")] == "scan").split("\t")
    ghost[cols.index("host_ip")] = "192.168.77.77"
    ghost[cols.index("host_mac")] = "02:00:00:77:77:77"
    lf = tmp_path / "ghost.labels.tsv"
    lf.write_text("\n".join([head] + [str(made["scan"]) + x[x.index("\t"):] for x in [*rows, "\t".join(ghost)]]) + "\n")
    r = iotwatch_cli("evaluate", "--no-model", str(lf))
    assert r.returncode == 0, r.stderr
    assert r.stderr.splitlines() == [f"iotwatch: warning: {lf} line {len(rows) + 2}: host 02:00:00:77:77:77 is not a "
                                     f"device in scan.pcap: row left out"]
    # the ghost is no missed scanner; the hosts that are there are all scored (victims outside
    # the site say nothing)
    assert "caught with the right category: **1 / 1**" in r.stdout and "Missed" not in r.stdout
    assert f"labelled host rows: {len(rows)} " in r.stdout


def test_a_model_that_detects_nothing_is_refused_unless_forced(made: dict[str, Path], tmp_path: Path) -> None:
    site = str(labels_of(made["site"]))
    out = tmp_path / "normal-only"
    r = iotwatch_cli("train", site, "--out", str(out))
    assert r.returncode == 1 and not out.exists()
    assert r.stderr.splitlines()[-1] == (f"iotwatch: error: {site}: every labelled window is normal: such a model "
                                         "detects nothing (label misbehaving hosts, or --force to write it anyway)")
    only_our_lines(r.stderr)
    r = iotwatch_cli("train", site, "--out", str(out), "--force")
    assert r.returncode == 0, r.stderr
    only_our_lines(r.stderr)
    assert json.loads((out / "manifest.json").read_text())["classes"] == ["normal"]


def test_train_out_existing_file_fails_before_any_analysis(made: dict[str, Path], tmp_path: Path,
                                                           monkeypatch: pytest.MonkeyPatch) -> None:
    from iotwatch.learn import behaviour, device_type, observe

    def no_analysis(*_a: object, **_k: object) -> None:
        raise AssertionError("analysed before checking --out")

    monkeypatch.setattr(behaviour, "observe_labelled", no_analysis)
    monkeypatch.setattr(device_type, "observe_labelled", no_analysis)
    monkeypatch.setattr(observe, "observe_labelled", no_analysis)
    f = tmp_path / "taken"
    f.write_text("mine")
    site = labels_of(made["site"])
    with pytest.raises(InputError, match="exists and is not a folder"):
        behaviour.train([site], f)
    with pytest.raises(InputError, match="exists and is not a folder"):
        device_type.train_type_model([site], f)
    (tmp_path / "notes").mkdir()
    (tmp_path / "notes" / "a.txt").write_text("x")
    with pytest.raises(InputError, match="holds no model bundle"):
        behaviour.train([site], tmp_path / "notes")
    assert f.read_text() == "mine" and (tmp_path / "notes" / "a.txt").read_text() == "x"
    # the command: one line, exit 1, even when the labels name a capture that is missing
    missing = tmp_path / "missing.tsv"
    missing.write_text("file\thost_ip\thost_mac\tbehaviour\nnowhere.pcap\t10.0.0.1\t\tnormal\n")
    for kind in ("behaviour", "device_type"):
        r = iotwatch_cli("train", "--kind", kind, str(missing), "--out", str(f))
        assert r.returncode == 1
        assert r.stderr == f"iotwatch: error: {f}: exists and is not a folder: give a new or a bundle folder to --out\n"


# --------------------------------------------------------------------------- device type: commands

def test_type_training_warns_typos_and_thin_types_and_scores_a_given_bundle(made: dict[str, Path],
                                                                            tmp_path: Path) -> None:
    site = labels_of(made["site"])
    head, *rows = site.read_text().splitlines()
    col = head.split("\t").index("device_type")
    typo = next(i for i, r in enumerate(rows) if r.split("\t")[col] == "camera")
    cells = rows[typo].split("\t")
    cells[col] = "camrea"
    rows[typo] = "\t".join(cells)
    lf = tmp_path / "typo.labels.tsv"
    lf.write_text("\n".join([head] + [str(made["site"]) + x[x.index("\t"):] for x in rows]) + "\n")
    out = tmp_path / "types"
    r = iotwatch_cli("train", "--kind", "device_type", str(lf), str(labels_of(made["site-b"])), "--out", str(out))
    assert r.returncode == 0, r.stderr
    only_our_lines(r.stderr)
    warned = [x for x in r.stderr.splitlines() if "camrea" in x]
    assert warned == [f"iotwatch: warning: {lf} line {typo + 2}: device_type 'camrea' is not one of camera, recorder, "
                      "printer, computer, phone, hub, plug, sensor, speaker, router, appliance, unknown: row left out"]
    m = json.loads((out / "manifest.json").read_text())
    assert "camrea" not in m["classes"] and "camera" in m["classes"]
    assert m["features_from"].startswith("the pipeline's Inventory")
    assert m["training"] == sorted({str(made["site"]), str(made["site-b"])})
    # one type only: refused unless forced
    one = tmp_path / "one.labels.tsv"
    pcs = [x for x in rows if x.split("\t")[col] == "computer"]
    one.write_text("\n".join([head] + [str(made["site"]) + x[x.index("\t"):] for x in pcs]) + "\n")
    r = iotwatch_cli("train", "--kind", "device_type", str(one), "--out", str(tmp_path / "one"))
    assert r.returncode == 1 and not (tmp_path / "one").exists()
    assert r.stderr.splitlines()[-1] == (f"iotwatch: error: {one}: only the type computer is labelled: such a model "
                                         "tells nothing apart (label more types, or --force to write it anyway)")
    r = iotwatch_cli("train", "--kind", "device_type", str(one), "--out", str(tmp_path / "one"), "--force")
    assert r.returncode == 0, r.stderr
    assert json.loads((tmp_path / "one" / "manifest.json").read_text())["classes"] == ["computer"]
    # a type of one device: said in one line
    printer = next(x for x in rows if x.split("\t")[col] == "printer")
    two = tmp_path / "two.labels.tsv"
    two.write_text(one.read_text() + str(made["site"]) + printer[printer.index("\t"):] + "\n")
    r = iotwatch_cli("train", "--kind", "device_type", str(two), "--out", str(tmp_path / "two"))
    assert r.returncode == 0, r.stderr
    only_our_lines(r.stderr)
    assert [x for x in r.stderr.splitlines() if "warning" in x] == [
        "iotwatch: warning: type printer: 1 device, fewer than 2: learned from one unit, scored by no held-out device"]
    # the given bundle scores held-out labels: its name in the summary, no grouped folds
    r = iotwatch_cli("evaluate", "--kind", "device_type", "--model", str(out), str(labels_of(made["site-b"])),
                     "--report", str(tmp_path / "types.md"))
    assert r.returncode == 0, r.stderr
    assert "physical devices (model type-v1)" in r.stdout and "grouped folds" not in r.stdout
    assert (tmp_path / "types.md").read_text() == r.stdout.rstrip("\n") + "\n"
    # one device cannot be held out from itself: one line
    single = tmp_path / "single.labels.tsv"
    single.write_text(head + "\n" + str(made["site"]) + printer[printer.index("\t"):] + "\n")
    r = iotwatch_cli("evaluate", "--kind", "device_type", str(single))
    assert r.returncode == 1 and r.stderr == (f"iotwatch: error: {single}: 1 labelled device: device-grouped folds "
                                              "need at least 2 (or score a trained bundle with evaluate --model)\n")
    r = iotwatch_cli("evaluate", "--kind", "device_type", "--model", str(tmp_path / "one"), str(site))
    assert r.returncode == 1 or "(model type-v1)" in r.stdout


def test_evaluate_type_model_uses_the_given_model(made: dict[str, Path]) -> None:
    from iotwatch.learn.device_type import evaluate_type_model

    class AlwaysPlug:
        classes_ = np.array(["computer", "plug"])

        def predict_proba(self, x: np.ndarray) -> np.ndarray:
            return np.array([[0.1, 0.9]] * len(x))

    ev = evaluate_type_model([labels_of(made["site"])], model=TypeModel(AlwaysPlug(), "always-plug"))
    by_model = [u for u in ev.units if u.identity.classified_by == "always-plug"]
    assert by_model and all(u.predicted == "plug" for u in by_model)
    assert ev.scored_by == "model always-plug" and ev.n_rows == len(ev.units)
    assert ev.by_rule == len(ev.units) - len(by_model)


# --------------------------------------------------------------------------- the same objects as analyze

@needs_shared
def test_type_training_sees_what_analyze_computes() -> None:
    """The fingerprints and traffic training uses are the inventory's own: typed with the shipped
    model they give exactly the identities ``analyze`` writes on the device records (the product
    catalogue, which ``analyze`` also consults, only adds its own evidence line or decides alone)."""
    from iotwatch.inventory.analyser import default_type_model
    from iotwatch.learn.observe import observe

    model = default_type_model()
    assert model is not None
    compared = 0
    for rel in ("monitr_yi_camera/yi_camera_sample.pcap", "iot_sentinel/D-LinkCam/Setup-A-1-STA.pcap",
                "ndpi_protocols/alexa-app.pcapng"):
        obs = observe(SHARED_PCAPS / rel)
        ids = identify(obs.devices, obs.fingerprints, obs.traffic, model)
        run = iotwatch.analyze(SHARED_PCAPS / rel, detect=False).devices
        assert set(ids) == set(run) and ids
        # the observed run is analyze's run: every identity it concluded, catalogue included
        assert {k: (r.device_type, r.model, r.classified_by, r.evidence) for k, r in obs.devices.items()} == {
            k: (r.device_type, r.model, r.classified_by, r.evidence) for k, r in run.items()}
        for key, ident in ids.items():
            if run[key].classified_by not in (None, model.name):
                continue  # the catalogue decided: no type-model question
            compared += 1
            assert (ident.device_type, ident.vendor, ident.model, ident.classified_by, list(ident.evidence)) == (
                run[key].device_type, run[key].vendor, run[key].model, run[key].classified_by,
                [e for e in run[key].evidence if not e.startswith("catalogue ")]), (rel, key)
    assert compared >= 2  # most devices of these captures are named by the catalogue


def test_nothing_the_pipeline_uses_imports_learn() -> None:
    """The learning code sits above the pipeline: importing the analysis loads none of it."""
    code = ("import sys, iotwatch, iotwatch.pipeline, iotwatch.detect, iotwatch.inventory, iotwatch.inventory.analyser, "
            "iotwatch.sinks, iotwatch.bundle; print(sorted(m for m in sys.modules if m.startswith('iotwatch.learn')))")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == "[]"
    root = Path(iotwatch.__file__).parent
    imports_learn = re.compile(r"^\s*(from\s+(\.+learn|iotwatch\.learn)|import\s+iotwatch\.learn)", re.M)
    upward = [str(p.relative_to(root)) for p in root.rglob("*.py")
              if p.parts[len(root.parts)] not in ("learn", "cli", "synth") and imports_learn.search(p.read_text())]
    # IoT-23 labels and the conn.log evaluation are learning code kept beside the Zeek reader
    assert sorted(upward) == ["zeek/evaluate.py", "zeek/labels.py"]
    # synth writes label files: it takes their columns from the reader, nothing that runs the pipeline
    synth = [p for p in (root / "synth").rglob("*.py") if imports_learn.search(p.read_text())]
    assert [p.name for p in synth] == ["labels.py"]
    assert "from ..learn.labels import COLUMNS" in (root / "synth" / "labels.py").read_text()


# --------------------------------------------------------------------------- one unit, several captures

HUB = "1c:5f:2b:aa:fd:4e"  # the D-Link home hub of the IoT Sentinel captures (D-Link OUI)


def _hub_captures() -> list[tuple[RareFrame, DeviceTraffic]]:
    """Two captures of one hub: in the first it only opens TLS to its cloud (as in the
    D-LinkDoorSensor captures), in the second it asks DHCP for a lease under its model name."""
    tls = frame(IP(src="10.10.10.87", dst="52.28.1.2") / TCP(sport=40000, dport=443)
                / client_hello(b"api.dch.dlink.com"), src=HUB)
    dhcp = frame(IP(src="0.0.0.0", dst="255.255.255.255") / UDP(sport=68, dport=67) / BOOTP()
                 / DHCP(options=[("message-type", "request"), ("hostname", b"DCH-G020"), "end"]), src=HUB, kind="dhcp")
    t1, t2 = DeviceTraffic(first=100.0, last=160.0), DeviceTraffic(first=5000.0, last=5030.0)
    t1.used[(6, 443)] = 5
    t2.used[(6, 443)] = 2
    t2.used[(17, 67)] = 1
    return [(tls, t1), (dhcp, t2)]


def _unit_samples(label: str = "hub") -> list:  # type: ignore[type-arg]
    from iotwatch.inventory.classify import features, hints
    from iotwatch.learn.device_type import Sample

    out = []
    for n, (fr, t) in enumerate(_hub_captures()):
        fp = Fingerprints()
        fp.add(fr)
        rec = DeviceRecord(mac=HUB, ips=["10.10.10.87"], packets_out=10 * (n + 1), packets_in=8,
                           first_seen=t.first, last_seen=t.last)
        v = lookup(HUB)
        x = features(rec, fp.get(HUB), t, v, hints(v, fp.get(HUB), t))
        out.append(Sample(f"cap{n}.pcap", HUB, HUB, label, rec, fp.get(HUB), t, x))
    return out


def test_unit_from_two_captures_is_typed_as_one_run_types_it() -> None:
    from iotwatch.learn.device_type import merge_unit, type_unit

    model = TypeModel(ComputerModel(), "type-test")
    tls_only, named = _unit_samples()
    # each capture alone: the TLS-only one is left to the classifier (computer), the other is a hub by rule
    assert decide(HUB, tls_only.record, tls_only.sig, tls_only.traffic, model).device_type == "computer"
    assert decide(HUB, named.record, named.sig, named.traffic, model).device_type == "hub"
    # merged as one run over both captures: one collector fed every frame, traffic and totals added
    key, rec, fp, tr = merge_unit([named, tls_only])
    run_fp = Fingerprints()
    for fr, _ in _hub_captures():
        run_fp.add(fr)
    assert key == HUB and fp.get(HUB).kinds == run_fp.get(HUB).kinds
    assert tr[HUB].used[(6, 443)] == 7 and tr[HUB].first == 100.0 and tr[HUB].last == 5030.0
    assert rec is not None and rec.packets_out == 30 and (rec.first_seen, rec.last_seen) == (100.0, 5030.0)
    ident = type_unit([tls_only, named], model)
    assert ident.device_type == "hub" and ident.classified_by is None and ident.model == ident.product == "DCH-G020"
    assert ident == identify({HUB: rec}, fp, tr, model)[HUB]


def test_evaluation_scores_rows_and_whole_devices() -> None:
    """Per row the TLS-only capture of the hub is wrong; per device (its captures merged) the hub is right."""
    from iotwatch.inventory.classify import features, hints
    from iotwatch.learn.device_type import Sample, evaluate_samples

    ss = _unit_samples()
    for i in range(5):  # five printers, one capture each, typed by rule
        mac = f"00:23:7d:77:bd:{i:02x}"
        t = DeviceTraffic()
        t.served[(6, 9100)] = 2
        rec = DeviceRecord(mac=mac, ips=[f"10.0.0.{i + 10}"], first_seen=0.0, last_seen=10.0)
        v = lookup(mac)
        sg = Fingerprints().get(mac)
        ss.append(Sample(f"p{i}.pcap", mac, mac, "printer", rec, sg, t, features(rec, sg, t, v, hints(v, sg, t))))
    ev = evaluate_samples(ss, n_splits=5)
    assert ev.n_rows == 7 and ev.accuracy == pytest.approx(6 / 7)  # the TLS-only row: no hub in its training folds
    assert ev.device_accuracy == pytest.approx(5 / 6)  # "all its rows right"
    assert ev.unit_accuracy == 1.0 and len(ev.units) == 6 and ev.unit_errors == []
    hub = next(u for u in ev.units if u.group == HUB)
    assert (hub.predicted, hub.captures, hub.rows_right) == ("hub", 2, 1)
    assert hub.seen_s == 90.0 and hub.span_s == 4930.0
    assert ev.unit_labels == ["printer", "hub"] and ev.unit_confusion == [[5, 0], [0, 1]]
    assert "per device from all its captures merged 1.000 over 6 devices" in ev.summary()


@needs_shared
def test_shared_dlink_hub_typed_hub_from_its_captures_together(tmp_path: Path) -> None:
    """The D-Link hub says nothing of its type in the D-LinkDoorSensor captures (TLS to its cloud);
    typed once from all its labelled captures it is a hub (DCH-G020 in its D-LinkHomeHub captures),
    as `iotwatch analyze` over the same captures types it."""
    import csv

    import iotwatch
    from iotwatch.learn.device_type import samples, type_unit

    with open(SHARED_PCAPS / "LABELS.tsv", newline="") as f:
        rows = [r for r in csv.DictReader(f, delimiter="\t") if r["host_mac"] == HUB]
    assert {r["device_type"] for r in rows} == {"hub"}
    assert any("D-LinkDoorSensor" in r["file"] for r in rows) and any("D-LinkHomeHub" in r["file"] for r in rows)
    labels = tmp_path / "LABELS.tsv"
    with open(labels, "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=list(rows[0]), delimiter="\t")
        w.writeheader()
        for r in rows:
            w.writerow({**r, "file": str(SHARED_PCAPS / r["file"])})
    ss, excluded = samples([labels])
    assert excluded == [] and len(ss) == len(rows) and {s.key for s in ss} == {HUB}
    model = TypeModel(ComputerModel(), "type-test")  # a classifier that never saw a hub
    door = [s for s in ss if "D-LinkDoorSensor" in s.file]
    assert [decide(s.key, s.record, s.sig, s.traffic, model).device_type for s in door] == ["computer"] * len(door)
    ident = type_unit(ss, model)
    assert ident.device_type == "hub" and ident.classified_by is None and ident.model == ident.product == "DCH-G020"
    run = iotwatch.analyze([SHARED_PCAPS / r["file"] for r in rows], detect=False).devices[HUB]
    assert run.device_type == "hub" and run.model == "DCH-G020"


def test_type_training_builds_the_catalogue_the_labels_name(made: dict[str, Path], tmp_path: Path) -> None:
    """Rows with a `product` are the catalogue's exemplars: `train --kind device_type` writes it
    beside the type model (OUT/catalogue), and `--type-model OUT` matches devices against it."""
    from iotwatch.inventory.products import Catalogue
    from iotwatch.pipeline import build_analysers
    from iotwatch.settings import Settings

    files = []
    for name in ("site", "site-b"):
        head, *rows = labels_of(made[name]).read_text().splitlines()
        col = head.split("\t").index("device_type")
        out_rows = [x + "\t" + (f"Generated {x.split(chr(9))[col]}" if x.split("\t")[col] in ("camera", "recorder")
                                else "") for x in rows]
        lf = tmp_path / f"{name}.products.tsv"
        lf.write_text("\n".join([head + "\tproduct"] + [str(made[name]) + x[x.index("\t"):] for x in out_rows]) + "\n")
        files.append(lf)
    out = tmp_path / "types"
    r = iotwatch_cli("train", "--kind", "device_type", *map(str, files), "--out", str(out))
    assert r.returncode == 0, r.stderr
    only_our_lines(r.stderr)
    said = [x for x in r.stderr.splitlines() if "product catalogue written" in x]
    assert len(said) == 1 and said[0].startswith(f"iotwatch: product catalogue written to {out / 'catalogue'}: ")
    cat = Catalogue.load(out / "catalogue")
    assert set(cat.products) == {"Generated camera", "Generated recorder"}
    assert [f["path"] for f in cat.manifest["training"]["label_files"]] == list(map(str, files))
    assert {"product_accuracy", "type_accuracy", "captures"} <= set(cat.manifest["metrics"])
    # the type model's folder brings its catalogue along
    inv = build_analysers(Settings(type_model=out, detect=False))[0]
    assert inv.catalogue is not None and set(inv.catalogue.products) == set(cat.products)
    # no row names a product: said, and no catalogue
    plain = tmp_path / "plain"
    r = iotwatch_cli("train", "--kind", "device_type", str(labels_of(made["site"])), str(labels_of(made["site-b"])),
                     "--out", str(plain))
    assert r.returncode == 0, r.stderr
    assert "iotwatch: no labelled row names a product (column `product`): no catalogue written" in r.stderr
    assert not (plain / "catalogue").exists()
