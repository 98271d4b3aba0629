"""Plain sentences about alerts, devices and before/after changes, in the reader's language.

Shared by the HTML report and the terminal output of ``iotwatch compare``. The sentences are
built from the alerts' evidence fields (numbers, addresses), never by translating the
detector's English signature, which the report shows as it is, as the detector's own words.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from ..compare import Comparison, DeviceChange, Inbound
from .i18n import L10n


def category(t: L10n, cat: str) -> str:
    words = {
        "scan": t._("scanning the internet for devices to infect"),
        "bruteforce": t._("trying to log in to other devices with default passwords"),
        "flood": t._("flooding a target (taking part in a DDoS attack)"),
        "exfil": t._("uploading far more than its normal"),
        "c2": t._("keeping a connection to a botnet controller"),
    }
    return words.get(cat, cat)


def category_short(t: L10n, cat: str) -> str:
    words = {"scan": t._("Scanning"), "bruteforce": t._("Login brute force"), "flood": t._("Flooding (DDoS)"),
             "exfil": t._("Upload surge"), "c2": t._("Controller connection (C2)")}
    return words.get(cat, cat)


def device_type(t: L10n, kind: str | None) -> str:
    words = {"camera": t._("camera"), "recorder": t._("video recorder"), "printer": t._("printer"),
             "computer": t._("computer"), "phone": t._("phone"), "router": t._("router"),
             "tablet": t._("tablet"), "tv": t._("TV"), "speaker": t._("speaker"), "nas": t._("storage (NAS)"),
             "switch": t._("switch"), "access_point": t._("access point"), "iot": t._("IoT device")}
    if not kind:
        return t._("unknown device")
    return words.get(kind, kind)


def who(t: L10n, dev: dict[str, Any]) -> str:
    """"the video recorder (Hikvision) at 192.168.1.63"."""
    ip = (dev.get("ips") or [None])[0] or dev.get("mac") or "?"
    kind = device_type(t, dev.get("device_type"))
    if dev.get("vendor"):
        return t._("the {kind} ({vendor}) at {ip}").format(kind=kind, vendor=dev["vendor"], ip=ip)
    return t._("the {kind} at {ip}").format(kind=kind, ip=ip)


def upper_first(text: str) -> str:
    """A sentence's first letter in capitals (no effect on Japanese)."""
    return text[:1].upper() + text[1:]


def join(t: L10n, items: list[str]) -> str:
    from babel.lists import format_list

    return format_list(items, locale=t.lang) if items else ""


def alert_summary(t: L10n, a: dict[str, Any]) -> str:
    """What the alert's evidence says, in words and numbers of the language."""
    ev = a.get("evidence") or {}
    cat = a["alert"]["category"]
    if cat == "scan" and "targets" in ev:
        ports = ", ".join(str(p) for p in ev.get("ports", []))
        return t._("{n} addresses probed on ports {ports}; {unanswered} never answered").format(
            n=t.num(int(ev["targets"])), ports=ports or "—", unanswered=t.num(int(ev.get("unanswered", 0))))
    if cat == "bruteforce" and "sessions" in ev:
        return t._("{n} login sessions against {hosts} hosts").format(
            n=t.num(int(ev["sessions"])), hosts=t.num(int(ev.get("hosts", 0))))
    if cat == "exfil" and "upload_mbps" in ev:
        parts = [t._("{rate} to {peers}").format(rate=t.mbps(float(ev["upload_mbps"]) * 1e6),
                                                   peers=", ".join(ev.get("peers", [])) or "—")]
        if "x_baseline" in ev:
            parts.append(t._("{x} its normal upload").format(x=t.times(float(ev["x_baseline"]))))
        if "uplink_share" in ev:
            parts.append(t._("{share} of the uplink").format(share=t.pct(float(ev["uplink_share"]))))
        return join(t, parts)
    if cat == "c2" and "peer" in ev:
        return t._("a connection to {peer} kept open for {d}").format(
            peer=ev["peer"], d=t.duration(float(ev.get("session_s", float(a["last_ts"]) - float(a["first_ts"])))))
    if cat == "flood":
        pkts = ev.get("packets") or ev.get("packets_out")
        if pkts:
            return t._("{n} packets in {d}").format(n=t.num(int(pkts)),
                                                    d=t.duration(float(a["last_ts"]) - float(a["first_ts"])))
    return str(a["alert"]["signature"])


def actions(t: L10n, cats: set[str], dev: dict[str, Any], peers: list[str]) -> list[str]:
    """Recommended actions for an alerted device, most urgent first."""
    out = [t._("Isolate it now: unplug its network cable or disable its switch port, and block its address "
               "at the firewall.")]
    if cats & {"scan", "bruteforce", "c2"}:
        out.append(t._("Change every password on it and on every device of the same type: default passwords are "
                       "how Mirai-like malware gets in."))
    if "bruteforce" in cats:
        out.append(t._("Check the devices it tried to log in to: one of them may have been infected too."))
    if "exfil" in cats:
        out.append(t._("Ask what it uploaded: the upload went to {peers}.").format(peers=", ".join(peers) or "—"))
    vendor = dev.get("vendor") or t._("the vendor")
    out.append(t._("Ask {vendor} or the installer for fixed firmware, and hand them this report and the evidence "
                   "pack (the packets, with their checksums).").format(vendor=vendor))
    out.append(t._("If no fixed firmware exists, replace the device."))
    out.append(t._("After the fix, capture again and run `iotwatch compare` to confirm it has gone quiet."))
    return out


# --------------------------------------------------------------------------------------------
# Before / after
# --------------------------------------------------------------------------------------------

def verdict(t: L10n, d: DeviceChange) -> str:
    if d.verdict == "still":
        cats = [category_short(t, b.category) for b in d.behaviours if not b.stopped] + \
               [category_short(t, c) for c, _ in d.new_alerts]
        return t._("Still misbehaving: {what}.").format(what=join(t, cats))
    if d.verdict == "silent":
        return t._("Silent after the fix: it sent nothing.")
    return t._("Every alerted behaviour stopped.")


def behaviour_line(t: L10n, category_: str, stopped: bool) -> str:
    if stopped:
        return t._("{what}: stopped").format(what=category_short(t, category_))
    return t._("{what}: still seen").format(what=category_short(t, category_))


def upload_line(t: L10n, d: DeviceChange) -> str:
    if d.upload_after_bps is None:
        return t._("Upload to the internet: {before} before; the device is not seen at all after.").format(
            before=t.mbps(d.upload_before_bps))
    ratio = d.upload_ratio
    if ratio is None:
        return t._("Upload to the internet: none before, {after} after.").format(after=t.mbps(d.upload_after_bps))
    return t._("Upload to the internet: {before} before, {after} after ({x} before).").format(
        before=t.mbps(d.upload_before_bps), after=t.mbps(d.upload_after_bps), x=t.times(ratio))


def inbound_line(t: L10n, i: Inbound, *, silent: bool) -> str:
    if not i.attempts:
        return t._("Nothing arrives from outside.")
    ports = ", ".join(str(p) for p, _ in i.ports[:6])
    line = t._("Still arriving from outside: {n} inbound connection attempts from {s} internet addresses "
               "(ports {ports}), between {t0} and {t1}.").format(
        n=t.num(i.attempts), s=t.num(i.sources), ports=ports, t0=t.time(i.first_ts or 0.0), t1=t.time(i.last_ts or 0.0))
    if silent and not i.answered:
        more = t._("The device answered none of them: these are attempts against it, not its own behaviour.")
    elif silent:
        more = t._("The device answered {n} of them.").format(n=t.num(i.answered))
    else:
        more = t._("These are attempts against the device, not its own behaviour; it answered {n} of them.").format(
            n=t.num(i.answered))
    return t.sentences(line, more)


def describe(c: Comparison, t: L10n) -> str:
    """The comparison as terminal text."""
    lines = [t._("Before: {before}").format(before=Path(c.before).name),
             t._("After: {after}").format(after=Path(c.after).name)]
    if not c.devices:
        lines.append(t._("No device was alerted before or after."))
    for d in c.devices:
        head = who(t, {"ips": [d.ip] if d.ip else [], "mac": d.key, "vendor": d.vendor, "device_type": d.device_type})
        lines += ["", f"{upper_first(head)} ({d.key})", "  " + verdict(t, d)]
        lines += ["  - " + behaviour_line(t, b.category, b.stopped) for b in d.behaviours]
        lines += ["  - " + t._("New after the fix: {what}").format(what=category_short(t, c_)) for c_, _ in d.new_alerts]
        lines += ["  " + upload_line(t, d), "  " + inbound_line(t, d.inbound_after, silent=d.silent)]
    return "\n".join(lines)
