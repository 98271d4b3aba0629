"""Zeek's conn.log, both ways: flows → conn.log (``connlog``: TSV or JSON lines, Zeek's field
names, types, conn_state and history), conn.log → flow records for the detector and the inventory
(``read``), and IoT-23's label columns as label files (``labels``). Details: docs/zeek.md.
"""

from .connlog import CONN_FIELDS, ZeekSink, conn_log_columns

__all__ = ["CONN_FIELDS", "ZeekSink", "conn_log_columns"]
