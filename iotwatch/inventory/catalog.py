"""What names mean: product names, vendors and cloud domains → device type.

Three small tables of public product knowledge, used by the rules in :mod:`.classify`:

- :data:`PRODUCTS`: regexes over the names a device gives itself (DHCP host name and vendor
  class, mDNS names and TXT, SSDP SERVER and types, ONVIF scopes, vendor discovery, HTTP/RTSP
  Server, NetBIOS names, banners) → type, with a confidence and whether the match is a model
  name worth reporting.
- :data:`VENDOR_TYPES`: OUI short names of makers whose network devices are nearly all of one
  type (camera makers, router makers, computer makers).
- :data:`DOMAINS`: cloud and relay domain suffixes queried by one kind of device.
- :data:`ORG_TYPES`: full OUI registrations of makers' mobile communications divisions and of
  phone makers; :data:`DOT_RESOLVERS` (Android Private DNS) and :data:`EMBEDDED_DHCP` (BusyBox's
  DHCP client).

Every entry states a public fact about a product line; none names a capture or a unit.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from functools import lru_cache


@dataclass(frozen=True, slots=True)
class Product:
    pattern: re.Pattern[str]
    device_type: str
    confidence: float
    what: str  # shown in the evidence: "Hikvision camera model"
    model: bool = True  # the matched text names a model (reported as Identity.model... of the product)


def _p(rx: str, t: str, conf: float, what: str, model: bool = True) -> Product:
    return Product(re.compile(rx, re.I), t, conf, what, model)


PRODUCTS: tuple[Product, ...] = (
    # recorders first: NVR/DVR names also contain camera-ish words
    _p(r"\b(?:i?DS|DS)-(?:7[0-9]{3}|8[0-9]{3}|9[0-9]{3})[A-Z0-9/+-]*", "recorder", 0.95, "Hikvision recorder model"),
    _p(r"\b(?:DHI-)?(?:NVR|XVR|HCVR|DVR)[0-9][A-Z0-9/+-]*", "recorder", 0.95, "Dahua-style recorder model"),
    _p(r"network ?video ?recorder|NetworkVideoRecorder|\bNVR\b|\bDVR\b|\bXVR\b", "recorder", 0.9,
       "video recorder name", model=False),
    _p(r"^(?:NVR|DVR|XVR)[0-9A-Z_-]{0,12}$", "recorder", 0.9, "recorder host name", model=False),
    # cameras
    _p(r"\bDS-2(?:CD|DE|DF|CV|TD|DC|XM|DY|CE)[A-Z0-9/+-]*", "camera", 0.95, "Hikvision camera model"),
    _p(r"\b(?:DH-)?IPC-[A-Z0-9][A-Z0-9/+-]*", "camera", 0.95, "Dahua-style camera model"),
    _p(r"\bDCS-[0-9]{3,4}[A-Z0-9]*", "camera", 0.95, "D-Link camera model"),
    _p(r"\bIC-[0-9]{4}[A-Z0-9]*", "camera", 0.9, "Edimax camera model"),
    _p(r"\bAXIS [A-Z][0-9]{2,4}[A-Z0-9-]*", "camera", 0.95, "Axis camera model"),
    _p(r"\b(?:NC[0-9]{3}|KC[0-9]{3}|Tapo[ _]?C[0-9]{2,3})\b", "camera", 0.9, "TP-Link camera model"),
    _p(r"NetworkVideoTransmitter|video_encoder|type/Network_Video_Transmitter", "camera", 0.9,
       "ONVIF video transmitter", model=False),
    _p(r"IP ?Cam(?:era)?\b|NetworkCamera|Network Camera|IPCamDesc|\bwebcam\b|Cellvision|smartcamera",
       "camera", 0.85, "camera name", model=False),
    # printers
    _p(r"LaserJet[A-Z0-9 -]*|OfficeJet[A-Z0-9 -]*|DeskJet[A-Z0-9 -]*|PageWide[A-Z0-9 -]*|Photosmart[A-Z0-9 -]*",
       "printer", 0.95, "HP printer model"),
    _p(r"\b(?:Canon (?:MF|LBP|iR|PIXMA|MG|TS)[A-Z0-9 -]*|Brother (?:HL|MFC|DCP)-[A-Z0-9]+|EPSON [A-Z]{2}-[A-Z0-9]+)",
       "printer", 0.95, "printer model"),
    _p(r"JetDirect|\bprinter\b|PrintDeviceType|\bbizhub\b|Lexmark|Xerox|Kyocera|Ricoh", "printer", 0.85,
       "printer name", model=False),
    # routers and network gear (access points and bridges count as hubs, see LABELS)
    _p(r"\bubnt (?:UGW|USG|ER|EdgeRouter|UDM|UXG)[A-Z0-9-]*", "router", 0.95, "Ubiquiti gateway model"),
    _p(r"neufbox|livebox|freebox|FRITZ!Box|Speedport|bbox|EdgeRouter|RouterOS|MikroTik", "router", 0.9,
       "home or edge router name"),
    _p(r"Enterasys|Cisco IOS|JUNOS|Matrix N[0-9]", "router", 0.85, "router or switch banner"),
    _p(r"InternetGatewayDevice:[0-9]", "router", 0.85, "UPnP internet gateway", model=False),
    _p(r"\bubnt (?:U[0-9]|UAP|UAP-[A-Z0-9-]+|USW)[A-Z0-9-]*", "hub", 0.9, "Ubiquiti access point model"),
    # hubs and bridges
    _p(r"Philips[- ]hue|IpBridge|\bBSB00[0-9]\b", "hub", 0.95, "Philips Hue bridge"),
    _p(r"\bSmartThings\b", "hub", 0.9, "SmartThings hub"),
    _p(r"\bLightify\b", "hub", 0.9, "OSRAM Lightify gateway"),
    _p(r"\bMAX!? ?Cube\b|\bKEQ[0-9]{6,}\b|\bHmIP-(?:HAP|CCU)[A-Z0-9]*|\bCCU[23]\b", "hub", 0.9, "eQ-3 gateway"),
    _p(r"\bDCH-G0[0-9]{2}\b", "hub", 0.95, "D-Link home hub model"),
    _p(r"Belkin:device:bridge|WeMo ?Link", "hub", 0.95, "WeMo Link bridge"),
    # plugs
    _p(r"\bHS1[0-9]{2}(?:\(\w+\))?", "plug", 0.9, "TP-Link plug model"),
    _p(r"\bDSP-W[0-9]{3}\b", "plug", 0.95, "D-Link plug model"),
    _p(r"\bSP-[12][0-9]{3}W\b", "plug", 0.95, "Edimax plug model"),
    _p(r"Belkin:device:(?:controllee|insight|lightswitch|dimmer)", "plug", 0.95, "WeMo switch"),
    _p(r"smart ?plug", "plug", 0.8, "plug name", model=False),
    # sensors (scales, motion, water, thermostats)
    _p(r"\bDCH-S1[0-9]{2}\b", "sensor", 0.95, "D-Link sensor model"),
    _p(r"Withings|\bAria\b|\bWS-[0-9]{2}\b", "sensor", 0.85, "connected scale"),
    _p(r"Belkin:device:sensor|\bmotion sensor\b", "sensor", 0.9, "sensor name", model=False),
    # appliances
    _p(r"\bDCH-S2[0-9]{2}\b", "appliance", 0.95, "D-Link siren model"),
    _p(r"iKettle|SmarterCoffee|\bSMK[0-9]{2}\b|\bSMC[0-9]{2}\b", "appliance", 0.95, "Smarter appliance"),
    # speakers
    _p(r"\bSonos\b|Amazon ?Echo|\bEcho ?Dot\b|Google ?Home|\bHomePod\b|\bAlexa\b(?!-app)", "speaker", 0.85,
       "smart speaker name"),
    # phones and computers
    _p(r"\biPhone\b|\biPad\b|^android-[0-9a-f]{8,}|\bGalaxy-|Dalvik/|\bAndroid [0-9]|Mobile Safari|CFNetwork/.*iOS",
       "phone", 0.85, "phone name or user agent", model=False),
    _p(r"^MSFT [0-9]|Windows NT [0-9]|\bWin(?:dows|32|64)\b|Macintosh|\bX11; |\bUbuntu\b|\bDebian\b|\bFedora\b|"
       r"OpenSSH_[0-9.]+[ -](?:Ubuntu|Debian)|Nmap Scripting Engine|\bDESKTOP-|\bLAPTOP-",
       "computer", 0.8, "computer name or user agent", model=False),
)

#: The signal kinds whose values the product patterns read, and how each is named in evidence.
NAMING_KINDS: dict[str, str] = {
    "dhcp_hostname": "DHCP host name", "dhcp_vendor": "DHCP vendor class", "mdns_name": "mDNS name",
    "mdns_txt": "mDNS TXT", "ssdp_server": "SSDP server", "ssdp_type": "SSDP", "wsd_type": "WS-Discovery type",
    "wsd_scope": "ONVIF scope", "discovery": "discovery", "http_server": "HTTP Server", "http_realm": "HTTP realm",
    "rtsp_server": "RTSP Server", "netbios_name": "NetBIOS name", "telnet_banner": "telnet banner",
    "ssh_banner": "SSH banner", "sip_ua": "SIP agent", "http_ua": "HTTP User-Agent", "ssdp_ua": "SSDP User-Agent",
    "ssdp_location": "SSDP location",
}

#: mDNS/DNS-SD service types → type.
SERVICES: dict[str, tuple[str, float]] = {
    "_ipp._tcp": ("printer", 0.9), "_ipps._tcp": ("printer", 0.9), "_printer._tcp": ("printer", 0.9),
    "_pdl-datastream._tcp": ("printer", 0.95), "_scanner._tcp": ("printer", 0.8), "_uscan._tcp": ("printer", 0.85),
    "_hue._tcp": ("hub", 0.9), "_smartthings._tcp": ("hub", 0.85),
    "_googlecast._tcp": ("speaker", 0.6), "_spotify-connect._tcp": ("speaker", 0.6), "_sonos._tcp": ("speaker", 0.9),
    "_raop._tcp": ("speaker", 0.5), "_airplay._tcp": ("speaker", 0.4),
    "_smb._tcp": ("computer", 0.6), "_workstation._tcp": ("computer", 0.7), "_ssh._tcp": ("computer", 0.5),
    "_rfb._tcp": ("computer", 0.6), "_companion-link._tcp": ("phone", 0.4),
    "_apple-mobdev2._tcp": ("phone", 0.8), "_onvif._tcp": ("camera", 0.8), "_rtsp._tcp": ("camera", 0.6),
}

#: OUI short names (see :mod:`.oui`) → (type, confidence). Only makers whose networked products
#: are nearly all one type; generic makers (D-Link, TP-Link, Samsung) are absent on purpose.
VENDOR_TYPES: dict[str, tuple[str, float]] = {
    **dict.fromkeys(("Hikvision", "Dahua", "Axis", "Hanwha Vision", "Uniview", "Vivotek", "Mobotix", "Xiongmai",
                     "Foscam", "Amcrest", "Reolink", "Imilab (Xiaomi)", "Tiandy", "EZVIZ", "Wyze", "Arlo"),
                    ("camera", 0.8)),
    "Zowee (Yi)": ("camera", 0.6),
    **dict.fromkeys(("Cisco", "Juniper", "MikroTik", "Enterasys", "SFR", "AVM", "Sagemcom", "Zyxel", "NETGEAR"),
                    ("router", 0.5)),
    "Ubiquiti": ("router", 0.4),
    **dict.fromkeys(("Intel", "Dell", "Lenovo", "ASUS", "MSI", "Gigabyte", "Supermicro", "VMware", "VirtualBox (PCS)",
                     "Microsoft"), ("computer", 0.6)),
    **dict.fromkeys(("HP", "Canon", "Brother", "Epson", "Lexmark", "Xerox", "Kyocera", "Ricoh"), ("printer", 0.5)),
    # eQ-3's networked products are its radio gateways (CCU, MAX! Cube, HmIP access point); the
    # Philips Lighting OUI is the Hue bridge's (the lamps speak ZigBee, not IP).
    "Philips Lighting": ("hub", 0.8), "Philips": ("hub", 0.5), "eQ-3": ("hub", 0.8), "OSRAM": ("hub", 0.6), "SmartThings": ("hub", 0.7),
    "Nest": ("sensor", 0.5), "Fitbit": ("sensor", 0.6), "Withings": ("sensor", 0.6),
    "Sonos": ("speaker", 0.8), "Amazon": ("speaker", 0.4), "LG": ("phone", 0.3), "Apple": ("phone", 0.3),
}

#: OUI registrations (the full organisation name, see :mod:`.oui`) of makers' *mobile* divisions
#: and phone-only makers: the IEEE registry names the division, so an LG TV and an LG phone
#: differ here while their short name ("LG") does not. From the IEEE MA-L registry shipped by
#: netaddr (every organisation matching "Mobile Communication(s)"/"Mobile Telecommunication(s)",
#: Motorola Mobility, OnePlus, HTC, minus network-equipment makers such as Datang and sysmocom).
#: Two tiers: a block registered to a maker's *mobile communications* business (LG's Mobile
#: Communications division, OPPO/vivo/Realme's mobile telecommunications companies…) goes into
#: that business's products, handsets (phones, tablets): it decides alone. Phone makers registered
#: under the company's own name (HTC, OnePlus, Motorola Mobility) also ship other networked lines
#: (HTC's Vive headsets, OnePlus TVs, Motorola Mobility's set-top boxes before 2013): a weak hint.
ORG_TYPES: tuple[tuple[re.Pattern[str], str, float, str], ...] = (
    (re.compile(r"^(?:LG Electronics \(Mobile Communications\)|GUANGDONG OPPO MOBILE|vivo Mobile Communication|"
                r"Realme Chongqing Mobile|Lenovo Mobile Communication|(?:Qingdao )?Hisense Mobile Communication|"
                r"Wingtech Mobile Communications|Panasonic Mobile|NEC CASIO Mobile|Casio Hitachi Mobile|"
                r"Sony Mobile Communications|Sony Ericsson Mobile)", re.I),
     "phone", 0.85, "a mobile communications division's registration: handsets"),
    (re.compile(r"^(?:OnePlus|HTC Corporation|Motorola Mobility)", re.I),
     "phone", 0.6, "a phone maker's registration"),
)


def org_hint(organisation: str | None) -> tuple[str, float, str] | None:
    if not organisation:
        return None
    for rx, t, conf, what in ORG_TYPES:
        if rx.search(organisation):
            return t, conf, what
    return None


#: DNS-over-TLS resolvers (RFC 7858, TCP 853) that Android's Private DNS (on, "automatic", by
#: default since Android 9) upgrades to when the network's resolver is theirs; desktop systems
#: do not use DoT unless configured (Windows has DoH only, systemd-resolved's DoT is off).
DOT_RESOLVERS = ("dns.google", "cloudflare-dns.com", "one.one.one.one", "1dot1dot1dot1.cloudflare-dns.com",
                 "dns.quad9.net", "dns.adguard.com", "dns.adguard-dns.com")

#: DHCP vendor classes (option 60) of embedded DHCP clients: BusyBox udhcpc sends "udhcp
#: <version>" (its source, networking/udhcp); PCs send "MSFT 5.0", dhcpcd-…, or none (ISC dhclient, Apple).
EMBEDDED_DHCP = re.compile(r"^udhcp[ c]", re.I)

#: Vendors that make both cameras and recorders: a unit pulling RTSP from others is a recorder.
CCTV_VENDORS = frozenset(("Hikvision", "Dahua", "Uniview", "Hanwha Vision", "Xiongmai", "Tiandy", "EZVIZ",
                          "Amcrest", "Reolink", "Vivotek", "Axis", "Foscam", "Mobotix"))

#: DNS/SNI/HTTP-host suffixes → (type, confidence, what).
DOMAINS: tuple[tuple[str, str, float, str], ...] = (
    ("hik-connect.com", "camera", 0.6, "Hikvision cloud"), ("ezvizlife.com", "camera", 0.6, "EZVIZ cloud"),
    ("hikvision.com", "camera", 0.5, "Hikvision"), ("easy4ip.com", "camera", 0.6, "Dahua cloud"),
    ("dahuap2p.com", "camera", 0.6, "Dahua P2P"), ("imoulife.com", "camera", 0.6, "Imou cloud"),
    ("xmeye.net", "camera", 0.6, "XMEye P2P"), ("xmcsrv.net", "camera", 0.6, "XMEye cloud"),
    ("smartcamera.api.io.mi.com", "camera", 0.8, "Xiaomi camera cloud"), ("yitechnology.com", "camera", 0.6, "Yi cloud"),
    ("mydlink.com", "camera", 0.4, "mydlink cloud"), ("dropcam.com", "camera", 0.7, "Nest camera cloud"),
    ("tplinkcloud.com", "plug", 0.4, "TP-Link cloud"), ("xbcs.net", "plug", 0.4, "Belkin WeMo cloud"),
    ("myedimax.com", "plug", 0.3, "Edimax cloud"),
    ("meethue.com", "hub", 0.3, "Philips Hue"), ("philips.com", "hub", 0.3, "Philips"),
    ("smartthings.com", "hub", 0.6, "SmartThings cloud"), ("homematic.com", "hub", 0.5, "Homematic"),
    ("arrayent.com", "hub", 0.5, "Arrayent IoT cloud"), ("yunext.com", "hub", 0.4, "Yunext IoT cloud"),
    ("dch.dlink.com", "sensor", 0.2, "D-Link home cloud"),
    ("fitbit.com", "sensor", 0.5, "Fitbit"), ("withings.net", "sensor", 0.6, "Withings"),
    ("nest.com", "sensor", 0.5, "Nest"),
    ("device-metrics-us.amazon.com", "speaker", 0.6, "Amazon device metrics"),
    ("pindorama.amazon.com", "speaker", 0.6, "Amazon Echo"), ("avs-alexa", "speaker", 0.6, "Alexa voice service"),
    ("sonos.com", "speaker", 0.6, "Sonos"),
    ("connectivitycheck.android.com", "phone", 0.6, "Android connectivity check"),
    ("connectivitycheck.gstatic.com", "phone", 0.5, "Android connectivity check"),
    ("mtalk.google.com", "phone", 0.5, "Google push (Android)"), ("push.apple.com", "phone", 0.4, "Apple push"),
    ("windowsupdate.com", "computer", 0.7, "Windows Update"), ("msftncsi.com", "computer", 0.7, "Windows NCSI"),
    ("msftconnecttest.com", "computer", 0.7, "Windows NCSI"), ("_msdcs.", "computer", 0.8, "Active Directory"),
    ("ubuntu.com", "computer", 0.5, "Ubuntu"), ("debian.org", "computer", 0.5, "Debian"),
)


@lru_cache(maxsize=16384)
def domain_hint(name: str) -> tuple[str, float, str] | None:
    n = name.lower()
    for suffix, t, conf, what in DOMAINS:
        if suffix.endswith(".") and suffix in n:
            return t, conf, what
        if n == suffix or n.endswith("." + suffix) or (suffix.startswith("avs-") and suffix in n):
            return t, conf, what
    return None
