"""Benchmark ``canonicalize_email``; prints calls/s and µs per call, never pass/fail.

Generates 200,000 leak lines (``--lines``), deterministic for a given ``--seed``, in five
categories, and times the whole mix and each category alone:

* ``ascii``     90 %: ordinary ASCII addresses (case, ``+tags``, Gmail dots), the fast path
* ``uni-local``  3 %: a non-ASCII local part at a common ASCII domain (jürgen.neumann@web.de)
* ``idn``        1 %: an internationalized domain (user@bücher.de, Unicode or ``xn--``)
* ``junk``       1 %: not an address (ivan..schulz@x.com, a@@b.com, no "@", ...)
* ``display``    5 %: display-name and other surface forms around an ASCII address

Domains follow leaks: most lines use a few dozen big providers, the rest a long tail.

Each figure is the best of ``--repeat`` passes over the lines. A ``cold`` pass first empties
the module's caches (if it has any), so it is one ingest of a fresh leak; a ``warm`` pass
runs right after another pass over the same lines. The same lines are also timed through
``clean_address`` + ``_canonicalize_fast`` + the pre-cache slow path (full validator
calls, ``_canonicalize_validated(..., _validate)``), i.e. the old ``canonicalize_email``,
and the speed-up is printed next to it (same process, interleaved passes, so a busy machine
affects both about alike). ``slow %`` is the share of lines the
ASCII fast path hands on.

Then the ingest's two lanes on the same sets, in CPU seconds (``time.process_time``), warm:
``canonical_text`` line by line against ``canonical_texts`` over batches of ``BATCH_LINES``
(about a 64 KiB block of a leak), with the speed-up.

    .venv/bin/python bench/canonical.py [--lines 200000] [--repeat 3] [--seed 1] [--lanes-only]
"""

from __future__ import annotations

import gc
import random
import sys
import time
from collections.abc import Callable

from options import at_least, make_parser
from owned import run_bench

from service.addresses import DEFAULT_RULES, CanonicalAddress, InvalidAddress
from service.addresses import canonical as emails

Canonicalize = Callable[[str], CanonicalAddress | InvalidAddress]

FIRST = ["anna", "ben", "carla", "david", "emma", "felix", "greta", "hannah", "ivan", "julia"]
FIRST += ["karl", "lena", "max", "nina", "oskar", "paula", "quentin", "rosa", "sven", "tina"]
LAST = ["smith", "mueller", "schmidt", "schneider", "fischer", "weber", "meyer", "wagner"]
LAST += ["becker", "schulz", "hoffmann", "koch", "richter", "klein", "wolf", "neumann"]
UNI_FIRST = ["jürgen", "jörg", "sören", "björn", "zoë", "renée", "françois", "josé", "łukasz"]
UNI_FIRST += ["małgorzata", "иван", "ольга", "дмитрий", "αλέξης", "μαρία", "王伟", "李娜"]
UNI_FIRST += ["ayşe", "çağrı", "şükrü", "øystein", "åsa", "ñoño", "müller", "straßer"]  # noqa: RUF001
UNI_LAST = ["müller", "schröder", "bäcker", "größ", "kowalski", "петров", "иванова", "παππάς"]
UNI_LAST += ["yılmaz", "øvrebø", "núñez", "neumann", "weiß", "jäger", "köhler", "张"]  # noqa: RUF001
BIG = ["gmail.com", "yahoo.com", "hotmail.com", "outlook.com", "aol.com", "icloud.com"]
BIG += ["googlemail.com", "web.de", "gmx.de", "gmx.net", "t-online.de", "mail.ru", "yandex.ru"]
BIG += ["qq.com", "163.com", "orange.fr", "free.fr", "libero.it", "wp.pl", "o2.pl", "seznam.cz"]
BIG += ["btinternet.com", "comcast.net", "live.com", "msn.com", "me.com", "protonmail.com"]
IDN = ["bücher.de", "münchen.de", "köln.de", "düsseldorf.de", "zürich.ch", "straße.de"]
IDN += ["москва.рф", "пример.рф", "почта.рф", "例え.jp", "中国.cn", "ουτοπία.δπθ.gr"]
IDN += ["xn--bcher-kva.de", "xn--mnchen-3ya.de", "xn--80adxhks.xn--p1ai", "españa.es", "åre.se"]
IDN += ["bücher-shop.com", "grüne-wiese.de", "fußball.de", "łódź.pl", "ärzte.de"]
WORDS = ["alpha", "blue", "cloud", "delta", "echo", "forge", "green", "harbor", "iron", "jade"]
TLDS = ["com", "de", "net", "org", "co.uk", "fr", "it", "nl", "ru", "pl", "io", "info"]
JUNK = [
    "{f}..{l}@{d}",
    "{f}@@{d}",
    "{f}.{l}",
    ".{f}@{d}",
    "{f}.@{d}",
    "{f} {l}@{d}",
    "{f}@{d}.",
    "{f}@localhost",
    "{f}@{d}@{d}",
    "{f},{l}@{d}",
    "@{d}",
    "{f}@",
    "{f}@[127.0.0.1]",
    "{f}.{l}@invalid",
    '"{f}"@{d}',
    "{f}@-{d}",
]
WRAPPERS = [
    "{name} <{addr}>",
    '"{name}" <{addr}>',
    '"{last}, {first}" <{addr}>',
    "<{addr}>",
    "mailto:{addr}",
    "  {addr} ,",
    "=?utf-8?q?J=C3=BCrgen?= <{addr}>",
    "'{addr}'",
]


class Lines:
    """Generate one category of lines."""

    def __init__(self, rng: random.Random) -> None:
        self.rng = rng
        # A long tail of small domains, so the domain cache also sees misses.
        self.tail = [
            f"{rng.choice(WORDS)}{rng.choice(WORDS)}{rng.randrange(1000)}.{rng.choice(TLDS)}"
            for _ in range(20_000)
        ]

    def domain(self) -> str:
        rng = self.rng
        if rng.random() < 0.8:
            # Roughly Zipf: the first providers dominate.
            return BIG[min(int(rng.paretovariate(1.2)) - 1, len(BIG) - 1)]
        return rng.choice(self.tail)

    def recase(self, text: str) -> str:
        pick = self.rng.random()
        if pick < 0.75:
            return text
        if pick < 0.9:
            return text.title()
        return text.upper()

    def ascii_local(self) -> str:
        rng = self.rng
        first, last = rng.choice(FIRST), rng.choice(LAST)
        local = rng.choice([f"{first}.{last}", f"{first}{last}", f"{first[0]}{last}", first])
        if rng.random() < 0.5:
            local += str(rng.randrange(100 if rng.random() < 0.5 else 10_000))
        if rng.random() < 0.05:
            local += "+" + rng.choice(["news", "shop", "spam", "x"])
        return self.recase(local)

    def ascii(self) -> str:
        return f"{self.ascii_local()}@{self.recase(self.domain())}"

    def uni_local(self) -> str:
        rng = self.rng
        first, last = rng.choice(UNI_FIRST), rng.choice(UNI_LAST)
        local = rng.choice([f"{first}.{last}", f"{first}{last}", first, f"{first}_{last}"])
        if rng.random() < 0.4:
            local += str(rng.randrange(100))
        return f"{self.recase(local)}@{self.recase(self.domain())}"

    def idn(self) -> str:
        domain = self.rng.choice(IDN)
        local = self.ascii_local() if self.rng.random() < 0.8 else self.rng.choice(UNI_FIRST)
        return f"{local}@{self.recase(domain)}"

    def junk(self) -> str:
        rng = self.rng
        return rng.choice(JUNK).format(f=rng.choice(FIRST), l=rng.choice(LAST), d=self.domain())

    def display(self) -> str:
        rng = self.rng
        first, last = rng.choice(FIRST).title(), rng.choice(LAST).title()
        return rng.choice(WRAPPERS).format(
            name=f"{first} {last}", first=first, last=last, addr=self.ascii()
        )


CATEGORIES: dict[str, tuple[float, Callable[[Lines], str]]] = {
    "ascii": (0.90, Lines.ascii),
    "uni-local": (0.03, Lines.uni_local),
    "idn": (0.01, Lines.idn),
    "junk": (0.01, Lines.junk),
    "display": (0.05, Lines.display),
}


def generate(count: int, seed: int) -> dict[str, list[str]]:
    """Return the mix and each category alone (every category gets ``count`` lines)."""
    rng = random.Random(seed)
    lines = Lines(rng)
    names = list(CATEGORIES)
    weights = [CATEGORIES[name][0] for name in names]
    mix = [CATEGORIES[name][1](lines) for name in rng.choices(names, weights, k=count)]
    sets = {"mix": mix}
    for name, (_, make) in CATEGORIES.items():
        sets[name] = [make(lines) for _ in range(count)]
    return sets


def clear_caches() -> None:
    for name in dir(emails):
        clear = getattr(getattr(emails, name), "cache_clear", None)
        if callable(clear):
            clear()


def old_canonicalize(text: str) -> CanonicalAddress | InvalidAddress:
    """Return what ``canonicalize_email`` returned before the cached slow path."""
    if not isinstance(text, str):
        return InvalidAddress("not_a_string")
    if len(text) > emails.MAX_INPUT_CHARS:
        return InvalidAddress("too_long")
    candidate = emails.clean_address(text)
    if not candidate:
        return InvalidAddress("empty")
    if "@" not in candidate:
        return InvalidAddress("no_at_sign")
    fast = emails._canonicalize_fast(candidate, DEFAULT_RULES)
    if fast is not None:
        return fast
    return emails._canonicalize_validated(candidate, DEFAULT_RULES, emails._validate)


def one_pass(function: Canonicalize, lines: list[str]) -> float:
    gc.collect()
    start = time.perf_counter()
    for line in lines:
        function(line)
    return time.perf_counter() - start


def measure(function: Canonicalize, lines: list[str], *, warm: bool) -> float:
    """Return the seconds of one pass, cold (caches emptied first) or warm."""
    clear_caches()
    if warm:
        one_pass(function, lines)
    return one_pass(function, lines)


BATCH_LINES = 2700


def lanes_cpu(lines: list[str], repeat: int) -> tuple[float, float]:
    """Return the best CPU seconds of a warm pass of each lane: line by line, batched."""
    batches = [lines[start : start + BATCH_LINES] for start in range(0, len(lines), BATCH_LINES)]
    per_line = batched = float("inf")
    emails.canonical_texts(lines, DEFAULT_RULES)  # warm the caches
    for _ in range(repeat):
        gc.collect()
        start = time.process_time()
        for line in lines:
            emails.canonical_text(line, DEFAULT_RULES)
        per_line = min(per_line, time.process_time() - start)
        gc.collect()
        start = time.process_time()
        for batch in batches:
            emails.canonical_texts(batch, DEFAULT_RULES)
        batched = min(batched, time.process_time() - start)
    return per_line, batched


def print_lanes(sets: dict[str, list[str]], repeat: int) -> None:
    print(f"\ningest lanes, CPU µs a line, warm, batches of {BATCH_LINES:,} lines")
    print(f"{'set':10} {'per line':>9} {'batched':>9} {'speed-up':>8}")
    for set_name, lines in sets.items():
        per_line, batched = lanes_cpu(lines, repeat)
        print(
            f"{set_name:10} {1e6 * per_line / len(lines):9.2f} {1e6 * batched / len(lines):9.2f}"
            f" {per_line / batched:7.1f}x",
            flush=True,
        )


def main() -> None:
    parser = make_parser(__doc__)
    parser.add_argument("--lines", type=at_least(1), default=200_000)
    parser.add_argument("--repeat", type=at_least(1), default=3)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--lanes-only", action="store_true", help="only the ingest's lanes")
    args = parser.parse_args()

    sets = generate(args.lines, args.seed)
    if args.lanes_only:
        print_lanes(sets, args.repeat)
        return
    functions: dict[str, Canonicalize] = {"new": emails.canonicalize_email}
    functions["old"] = old_canonicalize
    print(f"{args.lines:,} lines per set, best of {args.repeat}, Python {sys.version.split()[0]}")
    header = f"{'set':10} {'slow %':>6}  {'pass':5}"
    for name in functions:
        header += f" {name + ' calls/s':>14} {name + ' µs':>8}"
    if len(functions) > 1:
        header += f" {'speed-up':>8}"
    print(header)
    for set_name, lines in sets.items():
        slow = sum(
            emails._canonicalize_fast(emails.clean_address(line), DEFAULT_RULES) is None
            for line in lines
        )
        for warm in (False, True):
            best = dict.fromkeys(functions, float("inf"))
            for _ in range(args.repeat):
                # Interleaved, so a neighbour's load hits old and new alike.
                for name, function in functions.items():
                    best[name] = min(best[name], measure(function, lines, warm=warm))
            row = f"{set_name:10} {100 * slow / len(lines):6.1f}  {'warm' if warm else 'cold':5}"
            for name in functions:
                row += f" {len(lines) / best[name]:14,.0f} {1e6 * best[name] / len(lines):8.2f}"
            if len(functions) > 1:
                row += f" {best['old'] / best['new']:7.1f}x"
            print(row, flush=True)
    print_lanes(sets, args.repeat)


if __name__ == "__main__":
    run_bench(main)
