"""Capture files → packet batches (pcap, pcapng, gzip, folders, several files in time order)."""

from .batch import PacketBatch, linktype_name
from .source import CaptureSet, expand_paths, open_capture

__all__ = ["CaptureSet", "PacketBatch", "expand_paths", "linktype_name", "open_capture"]
