"""The README's example outputs come from the commands shown beside them: this test runs those
commands on a generated capture and checks every line the README shows (terminal lines as text,
event lines as prefixes of real events.jsonl lines, the DuckDB query and the pandas call)."""

from __future__ import annotations

import json
import re
import shlex
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
README = (ROOT / "README.md").read_text()


def block_after(marker: str, lang: str) -> str:
    at = README.index(marker)
    m = re.compile(rf"```{lang}\n(.*?)```", re.S).search(README, at)
    assert m is not None, marker
    return m.group(1)


def norm(text: str) -> str:
    return " ".join(text.split())


@pytest.fixture(scope="module")
def ran(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, str]:
    """The README's two commands, run as shown (in a scratch folder), and what they printed."""
    cwd = tmp_path_factory.mktemp("readme")
    commands = block_after("The last two steps of `make demo`", "sh").strip().splitlines()
    assert len(commands) == 2
    stdout = ""
    for line in commands:
        argv = shlex.split(line)
        assert argv[0] == ".venv/bin/iotwatch"
        r = subprocess.run([sys.executable, "-m", "iotwatch", *argv[1:]], cwd=cwd, capture_output=True, text=True)
        assert r.returncode == 0, r.stderr
        stdout = r.stdout
    return cwd, stdout


def test_make_demo_runs_the_commands_shown() -> None:
    make = (ROOT / "Makefile").read_text()
    for line in block_after("The last two steps of `make demo`", "sh").strip().splitlines():
        shown = line.replace(".venv/bin/", "$(BIN)/").replace(" --flow-events", "")
        assert shown in make, shown


def test_terminal_lines_shown_are_printed(ran: tuple[Path, str]) -> None:
    _, stdout = ran
    shown = block_after("print (tests/test_readme.py runs these commands", "").strip().splitlines()
    assert shown[0].startswith("4 alert(s)") and len(shown) == 5
    for line in shown:  # rich wraps long lines at the terminal's width: compare the words
        assert norm(line) in norm(stdout), line


def test_event_lines_shown_are_written(ran: tuple[Path, str]) -> None:
    cwd, _ = ran
    lines = (cwd / "out" / "demo-hospital" / "events.jsonl").read_text().splitlines()
    shown = block_after("Events in short, from the", "json").strip().splitlines()
    assert [re.match(r'\{"event_type":"(\w+)"', x).group(1) for x in shown] == ["alert", "device", "flow", "stats"]  # type: ignore[union-attr]
    for line in shown:
        prefix = line.removesuffix("…")
        assert any(x.startswith(prefix) for x in lines), prefix[:120]


def test_duckdb_query_shown_joins_alerts_to_flows(ran: tuple[Path, str]) -> None:
    duckdb = pytest.importorskip("duckdb", reason="duckdb is in the test extra (pip install -e '.[test]')")
    cwd, _ = ran
    sql = block_after("To join alerts to their flows in", "sql")
    con = duckdb.connect()
    con.execute(f"SET file_search_path = '{cwd}'")
    rows = con.sql(sql).fetchall()
    events = [json.loads(x) for x in (cwd / "out" / "demo-hospital" / "events.jsonl").read_text().splitlines()]
    want = sorted((e["alert"]["category"], fid) for e in events if e["event_type"] == "alert"
                  for fid in e["evidence"].get("flow_ids", []))
    assert sorted((r[0], r[1]) for r in rows) == want and want


def test_pandas_reads_the_flows_folder(ran: tuple[Path, str]) -> None:
    pd = pytest.importorskip("pandas", reason="pandas is in the test extra (pip install -e '.[test]')")
    cwd, _ = ran
    df = pd.read_parquet(cwd / "out" / "demo-hospital" / "flows.parquet")
    stats = json.loads((cwd / "out" / "demo-hospital" / "events.jsonl").read_text().splitlines()[-1])
    assert len(df) == stats["flows"] > 0


def test_severity_is_explained() -> None:
    assert "`[1]` is the alert's **severity**" in README
    assert "all 12 attackers" not in README
