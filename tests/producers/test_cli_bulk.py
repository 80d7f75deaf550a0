"""`cancelq bulk` run as a user runs it, on a real Redis: every data line in the summary."""

from __future__ import annotations

import json
import uuid
from pathlib import Path

from tests.producers.test_cli import run


def _id() -> str:
    return str(uuid.uuid4())


def test_bulk_accounts_for_every_data_line(redis_url: str, tmp_path: Path) -> None:
    """A line of empty fields (`,,`) or an empty line is counted as blank, never dropped:
    rows = accepted + duplicates + invalid + blank, in the JSON and in the table."""
    case, event = _id(), _id()
    path = tmp_path / "gaps.csv"
    path.write_text(f"case_id,event_id\n{case},{event}\n,,\n{case},{event}\n\nnope,{_id()}\n")
    result = run("bulk", str(path), "--run-id", "gaps", "--json", env={"REDIS_URL": redis_url})
    assert result.returncode == 0, result.stderr
    data = json.loads(result.stdout)
    assert (data["rows"], data["accepted"], data["duplicates"], data["invalid"],
            data["blank"]) == (5, 1, 1, 1, 2)
    assert "line 6: case_id" in result.stderr and "line 3" not in result.stderr
    shown = run("run", "gaps", "--json", env={"REDIS_URL": redis_url})
    assert json.loads(shown.stdout)["jobs"] == 1  # one job sent, for the one accepted row

    table = run("bulk", str(path), "--dry-run", env={"REDIS_URL": redis_url})
    assert table.returncode == 0, table.stderr
    counts = {cells[0]: cells[1] for line in table.stdout.splitlines()
              if len(cells := [c.strip() for c in line.strip("│ ").split("│")]) == 2}
    assert (counts["rows read"], counts["accepted"], counts["invalid"], counts["blank"]) == (
        "5", "2", "1", "2")
