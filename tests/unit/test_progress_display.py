"""The ingest's progress on stderr: a bar with percentage and ETA on a terminal, lines off it."""

from __future__ import annotations

import io
import json

from jobs.ingest.parts import SplitProgress
from jobs.ingest.pipeline import IngestProgress
from service.cli.progress import ProgressDisplay, ProgressMode
from service.leaks.counters import Counters


class Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_on_a_terminal_a_bar_shows_percentage_and_eta_from_the_bytes_read() -> None:
    screen = Terminal()
    with ProgressDisplay(stream=screen) as display:
        display.ingest(IngestProgress(records=1000, matched=3, bytes_read=25, total_bytes=100))
        display.ingest(IngestProgress(records=2000, matched=5, bytes_read=50, total_bytes=100))
        shown = screen.getvalue()
    assert " 50%|" in shown
    assert "<" in shown.rsplit(" 50%|", 1)[1]  # tqdm's [elapsed<remaining]
    assert "records=2000" in shown
    assert "matched=5" in shown


def test_off_a_terminal_lines_say_how_far_and_how_long_and_quiet_says_nothing() -> None:
    log = io.StringIO()
    with ProgressDisplay(stream=log, every=0) as display:
        display.ingest(
            IngestProgress(records=10, matched=1, bytes_read=3 << 20, total_bytes=4 << 20)
        )
    line = log.getvalue().strip()
    assert line.startswith("ingest: 75% (3.0 MiB of 4.0 MiB), 10 records, 1 matched, 0s elapsed")
    assert line.endswith(" left")
    quiet = io.StringIO()
    with ProgressDisplay(stream=quiet, every=0, quiet=True) as display:
        display.ingest(IngestProgress(records=10, matched=1, bytes_read=1, total_bytes=2))
    assert quiet.getvalue() == ""


def test_json_lines_for_a_split_run_give_parts_done_and_totals() -> None:
    log = io.StringIO()
    with ProgressDisplay(ProgressMode.JSON, stream=log, every=0) as display:
        display.parts(SplitProgress(parts=8, complete=2, totals=Counters(lines=500, matched=4)))
    event = json.loads(log.getvalue())
    assert event["event"] == "progress"
    assert (event["parts"], event["parts_done"], event["records"], event["percent"]) == (
        8,
        2,
        500,
        25.0,
    )
