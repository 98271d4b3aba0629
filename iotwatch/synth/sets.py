"""The fixed scenario sets `make model` trains on and `make eval` evaluates on.

    python -m iotwatch.synth.sets train DIR [SHARED_PCAPS]
    python -m iotwatch.synth.sets eval DIR [SHARED_PCAPS]

Both sets hold every scenario (the benign site by day and for a whole day idle, the hospital, scan, brute force, exfiltration,
C2, the four behaviours unlike Mirai's, and a flood with each of the seven vectors) with their own seeds: training uses seeds 1-3,
evaluation 1001-1002, so no evaluated capture was seen in training. When ../shared/pcaps is
there, behaviours are also injected into real camera captures (different captures and seeds for
each set: the Yi camera is only in evaluation; the xiaobai and D-Link cameras are in both, through
other captures of them), and into other kinds of device (a TP-Link plug and a Hue bridge for
training, a Xiaodu plug and a WeMo switch for evaluation). Captures that already exist are kept
(the same seed writes the same bytes).
"""

from __future__ import annotations

import sys
from pathlib import Path

from .labels import labels_path
from .mirai import VECTORS
from .scenario import Options, generate, inject

TRAIN_SEEDS = (1, 2, 3)
EVAL_SEEDS = (1001, 1002)
# real captures to inject into: (path under shared/pcaps, device MAC)
TRAIN_INJECT = (("nku_lifecycle/xiaobai_Y2camera_lifecycle/xiaobai_Y2camera_idle_local.pcap", "78:df:72:24:69:4d"),
                ("iot_sentinel/D-LinkCam/Setup-C-1-STA.pcap", "b0:c5:54:25:5b:0e"),
                ("iot_sentinel/TP-LinkPlugHS100/Setup-A-3-STA.pcap", "50:c7:bf:00:fc:a3"),
                ("iot_sentinel/HueBridge/Setup-A-2-STA.pcap", "00:17:88:24:76:ff"),
                )
EVAL_INJECT = (("nku_lifecycle/xiaobai_Y2camera_lifecycle/xiaobai_Y2camera_idle_remote.pcap", "78:df:72:24:69:4d"),
               ("iot_sentinel/D-LinkCam/Setup-A-1-STA.pcap", "b0:c5:54:25:5b:0e"),
               ("monitr_yi_camera/yi_camera_sample.pcap", "b0:d5:9d:b9:f0:b4"),
               ("nku_lifecycle/xiaodu_plug_lifecycle/xiaodu_plug_idle_on_remote.pcap", "f4:21:ae:9e:8f:cb"),
               ("iot_sentinel/WeMoSwitch/Setup-C-2-STA.pcap", "94:10:3e:35:01:c1"),
               )
INJECT_BEHAVIOURS = ("scan", "bruteforce", "exfil", "c2", "flood")
#: covert C2 and exfiltration (synth/covert.py) injected into other kinds of device (a third item:
#: the behaviours to inject instead of INJECT_BEHAVIOURS): a speaker, a hub and a plug for training,
#: two other hubs and the same plug's other capture for evaluation
COVERT_INJECT = ("tlsbeacon", "ratsession", "dnstunnel", "credexfil", "chunkupload")
TRAIN_INJECT += (("unsw_iot_via_networkml/Two-IOT161012-node5.pcap", "44:65:0d:56:cc:d3", COVERT_INJECT),  # type: ignore[assignment]
                 ("iot_sentinel/HueBridge/Setup-C-10-STA.pcap", "00:17:88:24:76:ff", COVERT_INJECT),
                 ("nku_lifecycle/xiaodu_plug_lifecycle/xiaodu_plug_idle_on_local.pcap", "f4:21:ae:9e:8f:cb", COVERT_INJECT))
EVAL_INJECT += (("unsw_iot_via_networkml/Two-IOT161012-node2.pcap", "d0:52:a8:00:67:5e", COVERT_INJECT),  # type: ignore[assignment]
                ("iot_sentinel/WeMoLink/Setup-A-9-STA.pcap", "94:10:3e:cd:37:65", COVERT_INJECT),
                ("nku_lifecycle/xiaodu_plug_lifecycle/xiaodu_plug_idle_on_remote.pcap", "f4:21:ae:9e:8f:cb", COVERT_INJECT))
#: the behaviours unlike Mirai's (synth/evasive.py) and how long their captures run: a dead
#: controller called once a minute needs minutes of attempts before it shows
EVASIVE_DURATIONS = {"slowscan": 240.0, "udpscan": 240.0, "deadc2": 600.0, "icmptunnel": 240.0,
                     "sweep": 240.0,
                     "portscan": 240.0,
                     "nmapudp": 240.0,
                     "netscan": 240.0,
                     "sshbrute": 240.0,
                     "ftpbrute": 240.0,
                     "icmpflood": 180.0,
                     "flagflood": 180.0,
                     "slowhttp": 240.0,
                     "dnstorture": 180.0,
                     }
EVASIVE_DURATIONS.update({"reportc2": 480.0, "localc2": 540.0})  # held_heartbeat needs 8 beats, program_callback 6 call-backs
EVASIVE_DURATIONS.update({"tlsbeacon": 240.0, "postbeacon": 480.0, "ratsession": 240.0, "dnstunnel": 240.0, "dnsexfil": 240.0, "credexfil": 240.0, "chunkupload": 240.0, "slowexfil": 720.0})  # synth/covert.py
#: a day of the idle site per seed: the normal traffic false alarms are counted over (device-days)
NIGHT_S = 86_400.0
#: a modest uplink keeps the surge captures small (the rules work on ratios, not on 10 Mbit/s)
UPLINK_MBPS = 4.0


def families(pcap: Path) -> tuple[str, ...]:
    """The source families of a capture this module wrote, for leave-one-source-out evaluation
    (:mod:`iotwatch.learn.loso`): the scenario that generated it (a flood by its vector: each vector
    is its own generator), then, for an injection, the shared set of the real capture it went
    into (held out with that set). ``()`` for a name this module does not write."""
    name = pcap.name.removesuffix(".pcap")
    if name.startswith("inject-"):
        for rel, *_ in (*TRAIN_INJECT, *EVAL_INJECT):
            stem = Path(rel).stem
            if name.startswith(f"inject-{stem}-"):
                beh, seed = name[len(f"inject-{stem}-"):].rsplit("-", 1)
                if beh == "flood" and seed.isdigit():  # the vector build() gave it
                    beh = f"flood-{VECTORS[int(seed) % len(VECTORS)]}"
                return (beh, rel.split("/")[0])
        return ()
    parts = name.rsplit("-", 1)
    if len(parts) != 2 or not parts[1].isdigit():
        return ()
    head = parts[0]
    if head.startswith("flood-"):
        return (head,)
    return (head,) if head in ("site", "night", "hospital", "scan", "bruteforce", "exfil", "c2", *EVASIVE_DURATIONS) else ()


def cases(which: str) -> list[Options]:
    seeds = TRAIN_SEEDS if which == "train" else EVAL_SEEDS
    out: list[Options] = []
    for seed in seeds:
        out.append(Options("site", seed=seed, duration=300, uplink_mbps=UPLINK_MBPS))
        out.append(Options("night", seed=seed, duration=NIGHT_S, uplink_mbps=UPLINK_MBPS))
        out.append(Options("hospital", seed=seed, duration=420, uplink_mbps=UPLINK_MBPS))
        for sc in ("scan", "bruteforce", "exfil", "c2"):
            out.append(Options(sc, seed=seed, duration=240, uplink_mbps=UPLINK_MBPS))
        for sc, dur in EVASIVE_DURATIONS.items():
            out.append(Options(sc, seed=seed, duration=dur, uplink_mbps=UPLINK_MBPS))
        for k, v in enumerate(VECTORS):
            out.append(Options("flood", seed=seed * 10 + k, duration=180, vector=v, uplink_mbps=UPLINK_MBPS))
    return out


def build(which: str, out_dir: Path, shared: Path | None) -> list[Path]:
    """Write the set's captures and labels into ``out_dir``; return the label files."""
    if which not in ("train", "eval"):
        raise ValueError("the set is 'train' or 'eval'")
    out_dir.mkdir(parents=True, exist_ok=True)
    written: list[Path] = []
    for o in cases(which):
        pcap = out_dir / f"{o.scenario}{'-' + o.vector if o.scenario == 'flood' else ''}-{o.seed}.pcap"
        if not pcap.exists() or not labels_path(pcap).exists():
            generate(o, pcap)
        written.append(labels_path(pcap))
    if shared is not None and shared.is_dir():
        base = 100 if which == "train" else 2000
        for k, (rel, mac, *which_behaviours) in enumerate(TRAIN_INJECT if which == "train" else EVAL_INJECT):
            real = shared / rel
            if not real.exists():
                continue
            for j, beh in enumerate(which_behaviours[0] if which_behaviours else INJECT_BEHAVIOURS):
                seed = base + 10 * k + j
                o = Options(beh, seed=seed, duration=90, uplink_mbps=UPLINK_MBPS, vector=VECTORS[seed % len(VECTORS)])
                pcap = out_dir / f"inject-{real.stem}-{beh}-{seed}.pcap"
                if not pcap.exists() or not labels_path(pcap).exists():
                    inject(o, real, mac, pcap)
                written.append(labels_path(pcap))
    return written


def main(argv: list[str]) -> int:
    if len(argv) < 2:
        sys.stderr.write("usage: python -m iotwatch.synth.sets train|eval DIR [SHARED_PCAPS]\n")
        return 2
    shared = Path(argv[2]) if len(argv) > 2 else None
    for p in build(argv[0], Path(argv[1]), shared):
        print(p)
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
