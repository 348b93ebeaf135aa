"""The benches' pure helpers: their command lines refuse a bad value in one line before any
work, ``--help`` shows what runs by default, and the parts that decide what a bench runs.

The benches are scripts that import each other by plain name from ``bench/``.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable, Iterator
from types import ModuleType

import pytest

from tests.support.bench import bench_importer


@pytest.fixture(scope="module")
def bench() -> Iterator[Callable[[str], ModuleType]]:
    """Import a bench module by its plain name, as the benches import each other."""
    with bench_importer() as importer:
        yield importer


def _parser(bench: Callable[[str], ModuleType], **types: object) -> argparse.ArgumentParser:
    options = bench("options")
    parser: argparse.ArgumentParser = options.make_parser("A bench.\n\nMore.")
    parser.prog = "x.py"
    for name, kind in types.items():
        parser.add_argument(f"--{name}", type=kind)
    return parser


def _refused(
    parser: argparse.ArgumentParser, argv: list[str], capsys: pytest.CaptureFixture[str]
) -> str:
    with pytest.raises(SystemExit) as exit_info:
        parser.parse_args(argv)
    assert exit_info.value.code == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert "Traceback" not in "\n".join(err)
    return err[-1]


@pytest.mark.parametrize(
    ("text", "expected"),
    [("0", "not '0'"), ("-5", "not '-5'"), ("abc", "not 'abc'"), ("1.5", "not '1.5'")],
)
def test_a_count_below_its_minimum_is_one_line(
    bench: Callable[[str], ModuleType], capsys: pytest.CaptureFixture[str], text: str, expected: str
) -> None:
    parser = _parser(bench, lines=bench("options").at_least(1))
    line = _refused(parser, [f"--lines={text}"], capsys)
    assert line == f"x.py: error: argument --lines: must be a whole number >= 1, {expected}"


def test_a_count_at_its_minimum_is_taken(bench: Callable[[str], ModuleType]) -> None:
    parser = _parser(bench, existing=bench("options").at_least(0))
    assert parser.parse_args(["--existing", "0"]).existing == 0


@pytest.mark.parametrize("text", [",", "", " , ", "mysql", "sqlite,mysql"])
def test_a_list_of_names_needs_one_known_name_at_least(
    bench: Callable[[str], ModuleType], capsys: pytest.CaptureFixture[str], text: str
) -> None:
    parser = _parser(bench, backends=bench("options").names_of(("sqlite", "postgres")))
    line = _refused(parser, [f"--backends={text}"], capsys)
    assert "expected a comma-separated list of sqlite, postgres" in line


def test_a_list_of_names_keeps_each_once_in_order(bench: Callable[[str], ModuleType]) -> None:
    parser = _parser(bench, backends=bench("options").names_of(("sqlite", "postgres")))
    args = parser.parse_args(["--backends", "postgres, sqlite,postgres"])
    assert args.backends == ["postgres", "sqlite"]


@pytest.mark.parametrize("text", ["x", "0", "16,0", ",", "1,,x"])
def test_a_list_of_counts_refuses_zero_and_words(
    bench: Callable[[str], ModuleType], capsys: pytest.CaptureFixture[str], text: str
) -> None:
    parser = _parser(bench, workers=bench("options").counts_of(1))
    line = _refused(parser, [f"--workers={text}"], capsys)
    assert "expected a comma-separated list of whole numbers >= 1" in line


def test_a_list_of_counts(bench: Callable[[str], ModuleType]) -> None:
    parser = _parser(bench, workers=bench("options").counts_of(1))
    assert parser.parse_args(["--workers", "1, 2,1"]).workers == [1, 2]


def test_help_shows_every_default_zero_included(bench: Callable[[str], ModuleType]) -> None:
    options = bench("options")
    parser = options.make_parser(None)
    parser.add_argument("--profile", type=options.at_least(0), default=0)
    parser.add_argument("--seed", type=int, default=2019)
    parser.add_argument("--backends", type=options.names_of(("a", "b")), default="a,b")
    parser.add_argument("--keep", action="store_true")
    text = parser.format_help()
    assert "(default: 0)" in text
    assert "(default: 2019)" in text
    assert "(default: a,b)" in text
    assert "(default: False)" not in text


def test_help_describes_a_bench_by_its_whole_first_paragraph(
    bench: Callable[[str], ModuleType],
) -> None:
    """The first line alone cut two benches' descriptions mid-sentence."""
    summary = bench("options").summary
    assert summary(bench("incident").__doc__) == (
        "Benchmark a whole incident, end to end: a BitMEX-size mass mail to the last warning "
        "accepted by a real SMTP server. Prints figures only."
    )
    assert summary(bench("email_change").__doc__).endswith(
        "while a 20,000-notice campaign is being delivered. Prints figures only."
    )


def test_the_ingest_bench_writes_the_plain_lines_file_for_its_bare_loop(
    bench: Callable[[str], ModuleType],
) -> None:
    """``--formats csv`` alone ended in ``max() arg is an empty sequence``: the bare loop,
    every ratio's reference, reads the plain-lines file, which was not written."""
    ingest = bench("ingest")
    args = argparse.Namespace(lines=200_000, format_lines=None, prefix_lines=0)
    sizes = ingest.plan_sizes(args, ["csv"], profile=False)
    assert sizes == {"csv": {200_000}, "lines": {200_000}}
    assert ingest.plan_sizes(args, ["lines", "combo"], profile=False) == {
        "lines": {200_000},
        "combo": {200_000},
    }


@pytest.mark.parametrize(
    ("notices", "after"), [(20_000, 1_000), (2_000, 1_000), (1_000, 500), (300, 100), (150, 0)]
)
def test_the_email_change_bench_waits_for_what_the_campaign_can_reach(
    bench: Callable[[str], ModuleType], notices: int, after: int
) -> None:
    """It waited for 1,000 accepted campaign messages whatever the campaign's size: with
    fewer than 1,000 notices it waited forever."""
    assert bench("email_change").campaign_started_after(notices) == after


def test_each_run_names_its_databases_after_its_process(
    bench: Callable[[str], ModuleType],
) -> None:
    """Fixed names (leakguard_bench_risk, _servers, _email_change, _enumeration) let a
    second run drop the first one's database."""
    import os

    assert bench("common").bench_database_name("risk") == f"leakguard_bench_risk_{os.getpid()}"
    for name in ("risk", "servers", "email_change", "enumeration", "deliver", "incident"):
        assert bench(name).PG_DATABASE.endswith(f"_{os.getpid()}")


@pytest.mark.parametrize("text", ["sync:x", "gthread:2xy", "granian:", "uvicorn:2"])
def test_a_server_setting_that_is_not_one_names_the_forms(
    bench: Callable[[str], ModuleType], text: str
) -> None:
    """``sync:x`` was refused as "invalid literal for int() with base 10: 'x'"."""
    with pytest.raises(ValueError, match=r"expected sync:N, gthread:WxT or granian:WxT"):
        bench("servers").parse_spec(text)
