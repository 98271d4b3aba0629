"""What a run is tuned with: one dataclass the CLI options map onto and the library accepts.

This module is deliberately light (no NumPy, Arrow or numba): the CLI reads its defaults to build
``--help`` without loading the compiled kernels.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from .devices import DeviceSettings
    from .flows import FlowSettings

#: Flow table capacity (131,072 flows, 25 MB; Suricata's default memcap holds about as many). A site
#: rarely has more flows alive within the idle timeout; beyond it the least recently seen quarter
#: is evicted and counted (--max-flows raises it).
DEFAULT_MAX_FLOWS = 1 << 17


@dataclass(slots=True)
class Settings:
    """Everything a run can be tuned with (the CLI options map onto these).

    The first group tunes the packet pipeline; the second says which analysers ride along and
    with which models (read by :func:`iotwatch.pipeline.build_analysers`, the one place that
    builds them, so that the detector's window is always the pipeline's)."""

    window_s: float = 60.0
    local_nets: Sequence[str] = ()
    idle_timeout: float = 120.0
    active_timeout: float = 1800.0
    max_flows: int = DEFAULT_MAX_FLOWS
    max_devices: int = 1 << 14
    batch_size: int = 1 << 15
    close_lag_s: float = 10.0  # a window closes this long after its end (a live capture: 1 s)
    # analysers
    detect: bool = True  # the detector: rules, and the behaviour model unless no_model
    identify: bool = True  # the inventory: vendor, type and product of every device
    model: Path | None = None  # behaviour bundle (None: the shipped models/behaviour, when present)
    no_model: bool = False  # rules only
    type_model: Path | None = None  # device-type bundle (None: the shipped models/device_type)
    baseline: Path | None = None  # an earlier run's baselines.json (or its folder)
    uplink_mbps: float | None = None  # surges are also given as a share of it

    #: the largest values accepted: a week-long window or timeout, a flow table of 16 M flows
    #: (about 3 GB), a 10 Tbit/s uplink; beyond them a value is a typo, not a setting
    MAX_WINDOW_S = 7 * 86400.0
    MAX_TIMEOUT_S = 7 * 86400.0
    MAX_FLOWS = 1 << 24
    MAX_UPLINK_MBPS = 1e7

    def validate(self) -> Settings:
        """Raise :class:`~iotwatch.errors.SettingsError` (naming the field) for a value out of
        range, before any work; return self."""
        import ipaddress

        from .errors import SettingsError, check_number

        check_number("window_s", self.window_s, low=0, high=self.MAX_WINDOW_S)
        check_number("idle_timeout", self.idle_timeout, low=0, high=self.MAX_TIMEOUT_S)
        check_number("active_timeout", self.active_timeout, low=0, high=self.MAX_TIMEOUT_S)
        check_number("max_flows", self.max_flows, low=1024, high=self.MAX_FLOWS, integer=True, low_inclusive=True)
        check_number("max_devices", self.max_devices, low=1, high=1 << 24, integer=True, low_inclusive=True)
        check_number("batch_size", self.batch_size, low=1, high=1 << 24, integer=True, low_inclusive=True)
        if self.uplink_mbps is not None:
            check_number("uplink_mbps", self.uplink_mbps, low=0, high=self.MAX_UPLINK_MBPS)
        for net in self.local_nets:
            try:
                ipaddress.ip_network(net, strict=False)
            except ValueError:
                raise SettingsError("local_nets", f"{net!r} is not a network in CIDR form (like 10.20.0.0/16)") from None
        return self

    def flow_settings(self) -> FlowSettings:
        from .flows import FlowSettings

        return FlowSettings(idle_timeout=self.idle_timeout, active_timeout=self.active_timeout, max_flows=self.max_flows)

    def device_settings(self) -> DeviceSettings:
        from .devices import DeviceSettings

        return DeviceSettings(window_s=self.window_s, max_devices=self.max_devices, close_lag_s=self.close_lag_s)
