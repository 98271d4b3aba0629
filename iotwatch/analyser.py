"""What the pipeline asks of an analyser: the hooks :class:`~iotwatch.pipeline.Pipeline` calls.

An analyser rides along the packet pipeline. While the input streams it is handed finished flow
records (``flows.FLOW_DTYPE``), the rare frames the side channel set aside (``sidecar.RareFrame``)
and closed device windows (``records.WINDOW_SCHEMA``); at the end of input it opens its models
(:meth:`prepare`, timed as start-up) and concludes over the device records. The detector
(``detect.Detector``: alerts) and the inventory (``inventory.Inventory``: what each device is)
implement it, for files and for a live capture alike.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Protocol, runtime_checkable

if TYPE_CHECKING:
    import numpy as np
    import pyarrow as pa

    from .addrs import LocalNets
    from .detect.alerts import Alert
    from .records import DeviceRecord
    from .sidecar import RareFrame


@runtime_checkable
class Analyser(Protocol):
    #: whether it reads rare frames (the side channel runs only when some analyser does)
    wants_rare: bool

    def bind(self, window_s: float, local_nets: LocalNets) -> None:
        """Join a run: its window and local networks (an analyser's own, different window is
        refused with :class:`~iotwatch.errors.SettingsError`, never silently kept)."""

    def on_flow_records(self, rows: np.ndarray) -> None:
        """Finished flows, as raw flow records (before they become public rows)."""

    def on_rare(self, frames: list[RareFrame]) -> None:
        """Packets worth dissecting, with their device, kind, time and place in the capture."""

    def on_windows(self, table: pa.Table) -> None:
        """Closed device windows."""

    def prepare(self) -> float:
        """Open models and registries; return the seconds it took (start-up, not work)."""

    def conclude(self, devices: dict[str, DeviceRecord], files: list[str]) -> list[Alert]:
        """Everything was seen: fill in the device records and return the alerts, if any.
        Analysers conclude in the order given to the pipeline (the inventory before the
        detector, so that verdicts see what each device is)."""
