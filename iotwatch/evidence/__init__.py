"""The evidence pack: per alerted device, its offending packets as a pcapng, the flows involved as
CSV, and a manifest with the sha256 of every file and of the source captures (docs/evidence.md).

* :mod:`.pack` — which flows and packets an alert involves, read back from the source captures
  with the project's own compiled readers, and the pack's files;
* :mod:`.pcapng_out` — the pcapng writer (nanosecond timestamps, packet comments).
"""

from .pack import DEFAULT_CONTEXT_S, Pack, write_pack

__all__ = ["DEFAULT_CONTEXT_S", "Pack", "write_pack"]
