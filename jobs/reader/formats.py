"""What each leak format holds: one record generator per format, and the checks that tell
the formats apart.

Every generator here takes the decoded text as batches of physical lines (line ends already
removed, each line capped) and yields ``RecordBatch``es (or, for the formats read record by
record, ``LeakRecord``s that ``batch_records`` groups); none of them opens a file. Opening,
containers, encodings and the public interface are in ``jobs.reader.stream``. Nothing here
canonicalizes an address: a record carries the text as found.

The hot formats (lines, combo, jsonl, csv) build a batch's lists with whole-batch string
operations, one regular expression over the batch's joined text and comprehensions: at tens
of millions of lines, one Python object or helper call per line is a measurable share of
the run. Only the lines the whole-batch pass cannot settle go through the per-line rules.
"""

from __future__ import annotations

import binascii
import codecs
import csv
import email.message
import inspect
import io
import json
import re
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, replace
from email.utils import getaddresses
from functools import partial
from itertools import chain, islice, repeat
from typing import Any, Final, cast

import ijson

from jobs.reader.csv_records import CsvShape, cut_records
from jobs.reader.encoding import FALLBACK_HANDLER
from service.addresses.canonical import decode_encoded_words

Batches = Iterable[list[str]]

ADDRESS: Final = "address"
CREDENTIAL: Final = "credential"

CSV_DELIMITERS: Final = (",", ";", "\t", "|")
SNIFF_ROWS: Final = 50
# How far below the first line a header may stand: exports put a title, a date, a filter
# description or blank lines above it.
HEADER_WITHIN_ROWS: Final = 20
# Excel's first-line "sep=;" names the delimiter of the rest of the file (an Excel
# convention, not RFC 4180, which knows no such line); Excel writes it for ';' locales.
_SEP_LINE: Final = re.compile(r"\ufeff?sep=([^\r\n\"])[ \t]*", re.IGNORECASE)
COMBO_SEPARATORS: Final = (":", ";", "|")
# Recipient fields only: From, Sender, Reply-To and Return-Path name the leaker, not the
# people whose addresses leaked.
RECIPIENT_FIELDS: Final = frozenset({"to", "cc", "bcc", "resent-to", "resent-cc", "resent-bcc"})
EML_KEY_FIELDS: Final = frozenset({"to", "cc", "from", "subject", "received", "message-id", "date"})
# A 30,000-recipient To: is about 1.5 MB. Past HEADER_FLUSH_CHARS a field is parsed in pieces
# at folds after a comma (outside quotes); past MAX_HEADER_CHARS without such a fold, further
# continuation lines are dropped, so one endless header cannot grow memory.
HEADER_FLUSH_CHARS = 256 * 1024
MAX_HEADER_CHARS = 1024 * 1024

_CAMEL_BREAK: Final = re.compile(r"(?<=[a-z0-9])(?=[A-Z])")
_WORD_BREAK: Final = re.compile(r"[\W_]+")
# Plural names ("emails": ["a@x.org", "b@y.org"]) hold a list of addresses, or several in one
# string: each is a record of its own (``split_mailboxes``).
_EMAIL_WORDS: Final = frozenset(
    {"email", "mail", "emailaddress", "mailaddress", "emailadresse", "emails", "mails"}
)
_ADDRESS_WORDS: Final = frozenset({"address", "addr", "adresse", "adress", "addresses"})
_PASSWORD_WORDS: Final = frozenset({"password", "pass", "passwd", "pwd", "passwort", "pw"})
_EXACT_EMAIL_NAMES: Final = (["email"], ["mail"], ["emailaddress"])
_ARRAY_TAILS: Final = frozenset({",", "]", "],"})
# The lines of a JSON-lines array that are only its brackets (``[`` above the first element,
# ``]`` below the last, ``[]`` for an empty one).
_ARRAY_LINES: Final = frozenset({"[", "]", "],", "[]", "[],"})
_CACHE_SIZE: Final = 4096
_json_shapes: dict[tuple[str, ...], tuple[str | None, str | None]] = {}
_key_roles: dict[str, str | None] = {}

# RFC 5322 field name (printable ASCII but ":"), with obsolete whitespace before the colon.
_FIELD: Final = re.compile(r"([!-9;-~]+)[ \t]*:")
# Possessive quantifiers and the look-behind make every run of local-part characters a
# candidate once, at its start: linear time on hostile lines (a 64 KiB run of "a.a.a...").
# An addr-spec as a combo field holds it: RFC 5322 dot-atom local part (RFC 6531 lets it be
# Unicode), a domain of at least two labels. Only to tell fields apart; service.addresses
# judges the address itself.
_FIELD_ADDRESS: Final = re.compile(r"[\w!#$%&'*+/=?^`{|}~.-]+@[\w-]+(?:\.[\w-]+)+")
# A stealer log line opens with the URL the credentials were typed into: scheme://, the
# authority up to its port or path (so its user-info, "https://user@host/", with it), an
# optional port, then a path up to the next field separator (RFC 3986 section 3).
_URL_PREFIX: Final = re.compile(r"[A-Za-z][A-Za-z0-9+.-]*://[^/?#:;|\s]*(?::\d+)?(?:[/?#][^:;|]*)?")
# A line of a combo list written with a comma: an address alone, a comma, and a password
# (which may hold more commas) without an '@', else it is a second address.
_COMMA_COMBO: Final = re.compile(rf"[ \t]*{_FIELD_ADDRESS.pattern}[ \t]*,[^@]*")
_TEXT_ADDRESS: Final = re.compile(r"(?<![\w.+'-])[\w.+'-]++@[^\W_][\w-]*+(?:\.[^\W_][\w-]*+)++")

_parse_addresses: Callable[[list[str]], list[tuple[str, str]]]
if "strict" in inspect.signature(getaddresses).parameters:
    # Strict mode (CPython's gh-102988 fix) answers [("", "")] for the whole field when it
    # miscounts, and a quoted comma in one display name is enough: thousands of addresses lost.
    _parse_addresses = partial(getaddresses, strict=False)
else:  # pragma: no cover - depends on the CPython patch level
    _parse_addresses = getaddresses


@dataclass(frozen=True, slots=True)
class LeakRecord:
    """One address occurrence in a leak file.

    ``line`` is the 1-based physical line in the decompressed, decoded text; ``candidate`` is
    the address text as found, not canonicalized, or None when the line holds nothing usable;
    ``password`` comes from a combo, a CSV password column or a JSON password key.
    """

    line: int
    candidate: str | None
    password: str | None = None


class LinePiece(str):
    """A piece of a physical line over the line cap (``stream.MAX_LINE_BYTES``), after its
    first piece: free text and mail read it as that line going on, not as the next line."""

    __slots__ = ()


# A line over the cap in a line format (lines, combo, CSV, JSON lines): no such line is a
# record of those formats, and holding it whole would let one line take any memory. Every
# line format reads this (a NUL: no "@", no quote, no JSON) as one invalid record.
LONG_LINE: Final = "\0"
# Records a batch of a format read record by record (eml, text, json) holds at most.
RECORDS_PER_BATCH: Final = 4096


@dataclass(frozen=True, slots=True)
class RecordBatch:
    """Consecutive records of a leak file as parallel lists, with no object per record.

    Record i is ``LeakRecord(lines[i], candidates[i], passwords[i])``: ``lines`` is a
    ``range`` when the records stand on consecutive lines; ``passwords`` is None when the
    format has none. Never empty.
    """

    lines: Sequence[int]
    candidates: list[str | None]
    passwords: list[str | None] | None = None

    def __len__(self) -> int:
        return len(self.candidates)

    def sliced(self, start: int, stop: int) -> RecordBatch:
        """Return records ``start`` to ``stop`` (exclusive) as a batch of their own."""
        passwords = self.passwords
        return RecordBatch(
            self.lines[start:stop],
            self.candidates[start:stop],
            None if passwords is None else passwords[start:stop],
        )

    def records(self) -> Iterator[LeakRecord]:
        """Yield the batch's records one by one."""
        passwords: Iterable[str | None] = self.passwords or repeat(None)
        return map(LeakRecord, self.lines, self.candidates, passwords)


def batch_records(records: Iterable[LeakRecord]) -> Iterator[RecordBatch]:
    """Group the records of a format read record by record into batches."""
    iterator = iter(records)
    while group := list(islice(iterator, RECORDS_PER_BATCH)):
        passwords = [record.password for record in group]
        yield RecordBatch(
            [record.line for record in group],
            [record.candidate for record in group],
            passwords if any(passwords) else None,
        )


@dataclass(frozen=True, slots=True)
class CsvLayout:
    """Where a CSV keeps its addresses: delimiter, columns, and how many physical lines come
    before the first row of data (a ``sep=`` line, titles, blank lines, the header).

    ``data_offset`` is the byte offset of the line after them from the start of the text
    (after a BOM), for byte ranges of a plain UTF-8 file; ``stream`` fills it in.
    """

    delimiter: str
    email_column: int
    password_column: int | None
    skip_lines: int
    data_offset: int = 0
    # The columns of a row (the header's, else the sample's usual width): a quoted field
    # spans lines only into a row of this width (``csv_records``); 0 accepts any.
    columns: int = 0
    # The other columns that hold addresses (``email,secondary_email``, ``to,cc,bcc``, a
    # headerless ``1,a@x.org,b@y.org``), in order: each of their mailboxes is a record too,
    # without the row's password (it is the account's of ``email_column``).
    more_columns: tuple[int, ...] = ()


def name_words(name: str) -> list[str]:
    """Split a column or key name into lowercase words, joining "e" + "mail" into "email"."""
    words: list[str] = []
    for word in _WORD_BREAK.split(_CAMEL_BREAK.sub(" ", name).lower()):
        if word in ("mail", "mails") and words and words[-1] == "e":
            words[-1] = "e" + word
        elif word:
            words.append(word)
    if len(words) > 1 and words[-1] in _ADDRESS_WORDS:
        words.pop()
    return words


def name_role(name: str) -> str | None:
    """Say whether a column or key name names the address (ADDRESS), the password, or neither.

    The last word decides, after dropping a trailing "address": email or mail name the
    address (email, E-Mail, Email Address, emailAddress, user_email, Login Email,
    E-Mail-Adresse); password, pass, passwd, pwd name the password. So hotmail,
    email_verified and password_hash name neither.
    """
    words = name_words(name)
    if not words:
        return None
    if words[-1] in _EMAIL_WORDS:
        return ADDRESS
    if words[-1] in _PASSWORD_WORDS:
        return CREDENTIAL
    return None


# --- detection -----------------------------------------------------------------------------


def looks_like_eml(lines: list[str]) -> bool:
    """Say whether ``lines`` open an mbox or an RFC 5322 message."""
    if lines and lines[0].startswith("From "):
        return True
    names: set[str] = set()
    for text in lines:
        if not text:
            break
        if text[0] in " \t":
            if not names:
                return False
            continue
        match = _FIELD.match(text)
        # An '@' is legal in a field name but never seen in one; in "x@y.org:pw" it is the
        # combo list that happens to follow a "Subject:" line.
        if match is None or "@" in match.group(1):
            return False
        names.add(match.group(1).lower())
    return not names.isdisjoint(EML_KEY_FIELDS)


def json_layout(lines: list[str], *, partial: str = "") -> str | None:
    """Say how a sample holds JSON: "jsonl" (one object per line, also inside an array
    written one element per line), "json" (any other layout: an array on one line or
    pretty-printed, concatenated pretty-printed objects, one big object), or None.

    ``partial`` is the start of a first line too long to be complete in the sample.
    """
    opening = [text.strip() for text in lines if text.strip()][:2]
    if not opening:
        return "json" if partial.lstrip().startswith(("[", "{")) else None
    first = opening[0]
    if first == "[":
        if len(opening) < 2:
            return None
        first = opening[1]
    elif first.startswith("["):
        first = first[1:].lstrip()
        if first.startswith(('"', "[", "]")):
            return "json"  # an array of strings (addresses) or of arrays on one line
    if not first.startswith("{"):
        return "json" if opening[0] == "[" and first.startswith(('"', "[")) else None
    try:
        _, end = json.JSONDecoder().raw_decode(first)
    except (ValueError, RecursionError):
        return "json"  # an object that goes on over the next lines
    return "jsonl" if first[end:].strip() in ("", *_ARRAY_TAILS) else "json"


def looks_like_combo(lines: list[str]) -> bool:
    """Say whether most non-blank lines have a combo separator after their '@', or are an
    address, a comma and a field without one (``alice@example.org,hunter2``); a line whose
    rest after the separator is more mailboxes (``mailbox_list``) names no password."""
    total = combos = 0
    for text in lines:
        if not text.strip():
            continue
        total += 1
        at = text.find("@")
        if at < 0:
            continue
        cut = min((i for sep in COMBO_SEPARATORS if (i := text.find(sep, at)) >= 0), default=-1)
        # A line that goes on with more mailboxes (``a@x.org;b@y.org``) names recipients:
        # no password follows its address.
        if (cut >= 0 and mailbox_list(text[cut + 1 :]) is None) or (
            cut < 0 and _COMMA_COMBO.fullmatch(text) is not None
        ):
            combos += 1
    return total > 0 and 2 * combos > total


def sniff_csv(lines: list[str], *, auto: bool) -> CsvLayout | None:
    """Find the delimiter, the address column and the first data line of a CSV sample.

    A first line ``sep=X`` (Excel) fixes the delimiter and is skipped. A header row with a
    cell naming an address (``name_role``) wins, in the first HEADER_WITHIN_ROWS rows:
    lines above it (titles, dates, blank lines) are skipped; below the first row it must
    hold no '@' and be followed by rows that mostly hold an '@' in that column. Among
    several, the widest header wins, then the highest, then the delimiter order. Without
    one, the first column
    whose values mostly contain '@' is used, if the rows have a consistent number of cells;
    rows before the first of that width are skipped, and so is that row if its cell has no
    '@' (an unnamed header). With ``auto`` the header needs two cells, and a headerless
    two-column file split by ';' or '|' with the addresses first is left to the combo
    reader (its second column is a password the CSV reader could not name).
    """
    min_columns = 2 if auto else 1
    delimiters: tuple[str, ...] = CSV_DELIMITERS
    first_line = 0
    if lines and (sep := _SEP_LINE.fullmatch(lines[0])) is not None:
        delimiters, first_line = (sep.group(1),), 1
    samples = [(delimiter, _sample_rows(lines, delimiter, first_line)) for delimiter in delimiters]
    samples = [(d, rows) for d, rows in samples if rows]
    named: list[tuple[int, int, int, str, int, int]] = []
    for order, (delimiter, rows) in enumerate(samples):
        for index, (row, end_line) in enumerate(rows[:HEADER_WITHIN_ROWS]):
            if len(row) < min_columns:
                continue
            column = _named_column(row, ADDRESS)
            if column is not None and (
                index == 0
                or (
                    not any("@" in cell for cell in row)
                    and _holds_addresses(rows[index + 1 :], column)
                )
            ):
                named.append((len(row), -index, -order, delimiter, column, end_line))
    if named:
        _, index, _, delimiter, column, end_line = max(named)
        rows = dict(samples)[delimiter]
        header = rows[-index][0]
        password_column = _named_column(header, CREDENTIAL)
        return CsvLayout(
            delimiter,
            column,
            password_column,
            end_line,
            columns=len(header),
            more_columns=_more_address_columns(
                header, [row for row, _ in rows[-index + 1 :]], (column, password_column)
            ),
        )
    best: tuple[int, int, str, int, list[tuple[list[str], int]]] | None = None
    for order, (delimiter, rows) in enumerate(samples):
        widths = [len(row) for row, _ in rows]
        width = max(set(widths), key=widths.count)
        if width < min_columns or 10 * widths.count(width) < 9 * len(rows):
            continue
        column = _address_column([row for row, _ in rows], width)
        if column is not None and (best is None or (width, -order) > best[:2]):
            best = (width, -order, delimiter, column, rows)
    if best is None:
        return None
    width, _, delimiter, column, rows = best
    start = next(i for i, (row, _) in enumerate(rows) if len(row) == width)
    first_row = rows[start][0]
    is_header = _unnamed_header(first_row[column])
    if auto and not first_line and not is_header:
        lists = [row for row, _ in rows[start:] if sum(bool(cell.strip()) for cell in row) > 1]
        if 2 * sum(_only_addresses(row) for row in lists) > len(lists):
            # Mailboxes and nothing else, several a line (``a@x.org;b@y.org;``, as Outlook
            # copies recipients): a list of addresses, not columns; one address per line
            # reads every one of them.
            return None
    if auto and width == 2 and column == 0 and not first_line and not is_header:
        if delimiter in COMBO_SEPARATORS:
            return None  # the combo reader's: its second column is a password
        data = [row for row, _ in rows[start:] if len(row) == 2 and row[1].strip()]
        if delimiter == "," and data:
            # A combo list written with commas: a real CSV has a header naming its columns.
            # The combo reader keeps a password's commas (the rest of the line is one).
            return None
    if is_header:
        # A header naming no address column ("id,login,contact"), or whose address cell is
        # an example ("Email (name@example.com)"): skipped, a password column taken by name.
        password_column = _named_column(first_row, CREDENTIAL)
        return CsvLayout(
            delimiter,
            column,
            password_column,
            rows[start][1],
            columns=width,
            more_columns=_more_address_columns(
                first_row, [row for row, _ in rows[start + 1 :]], (column, password_column)
            ),
        )
    skip_lines = rows[start - 1][1] if start else first_line
    return CsvLayout(
        delimiter,
        column,
        None,
        skip_lines,
        columns=width,
        more_columns=_more_address_columns(None, [row for row, _ in rows[start:]], (column,)),
    )


def _only_addresses(row: list[str]) -> bool:
    """Say whether every non-blank cell of ``row`` holds an '@'."""
    return all("@" in cell for cell in row if cell.strip())


# Columns of a CSV of mails that name the sender, not the recipients whose addresses leaked
# (as ``RECIPIENT_FIELDS`` leaves them out of a mail's header).
_SENDER_WORDS: Final = frozenset({"from", "sender", "reply", "return"})


def _names_sender(cell: str) -> bool:
    """Say whether a header cell names a mail's sender (``from``, ``Reply-To``)."""
    return "@" not in cell and any(word in _SENDER_WORDS for word in name_words(cell))


def _more_address_columns(
    header: list[str] | None, rows: list[list[str]], taken: tuple[int | None, ...]
) -> tuple[int, ...]:
    """Return the columns but ``taken`` that hold addresses: named as an address column
    (``secondary_email``), or whose values in ``rows`` mostly hold an '@' (``cc``, an
    unnamed column); never one whose header names a sender (``from``, ``reply_to``)."""
    width = max((len(row) for row in rows), default=0)
    if header is not None:
        width = max(width, len(header))
    found: list[int] = []
    for column in range(width):
        if column in taken:
            continue
        name = header[column] if header is not None and column < len(header) else ""
        if _names_sender(name):
            continue
        values = [row[column] for row in rows if len(row) > column and row[column].strip()]
        # A value over several lines is a stray quote's swallowed rows, not an address.
        with_at = sum("@" in value and "\n" not in value for value in values)
        if 2 * with_at > len(values) or (header is not None and name_role(name) == ADDRESS):
            found.append(column)
    return tuple(found)


def _unnamed_header(cell: str) -> bool:
    """Say whether the address column's first cell is a header's, not an address: it holds
    no '@', or it is no bare address and names one ("E-Mail (name@example.com)")."""
    if "@" not in cell:
        return True
    if _FIELD_ADDRESS.fullmatch(cell.strip()) is not None:
        return False
    return any(word in _EMAIL_WORDS for word in name_words(cell))


def _sample_rows(lines: list[str], delimiter: str, first: int) -> list[tuple[list[str], int]]:
    """Parse the non-blank rows of ``lines[first:]``, each with the number of the physical
    line it ends on (counted from the start of ``lines``)."""
    rows: list[tuple[list[str], int]] = []
    reader = csv.reader(lines[first:], delimiter=delimiter)
    try:
        for row in reader:
            if any(cell.strip() for cell in row):
                rows.append((row, first + reader.line_num))
                if len(rows) >= SNIFF_ROWS:
                    break
    except csv.Error:
        pass  # a broken row ends the sample; the rows before it still count
    return rows


def _holds_addresses(rows: list[tuple[list[str], int]], column: int) -> bool:
    """Say whether the rows below a header candidate hold mostly addresses in ``column``."""
    values = [row[column] for row, _ in rows if len(row) > column and row[column].strip()]
    # No rows below: a header with no data yet (or not in the sample) is still a header.
    return 2 * sum("@" in value for value in values) >= len(values)


def _named_column(header: list[str], role: str) -> int | None:
    found = [i for i, cell in enumerate(header) if name_role(cell) == role]
    if role == ADDRESS:
        # "email" beats "recovery_email" wherever it stands; otherwise the leftmost wins.
        exact = [i for i in found if name_words(header[i]) in _EXACT_EMAIL_NAMES]
        found = exact or found
    return found[0] if found else None


def _address_column(rows: list[list[str]], width: int) -> int | None:
    """Return the first column whose values mostly hold an '@', but one whose first cell
    names a sender (``from``: a header the leaker's address stands under), or None."""
    for column in range(width):
        if rows and len(rows[0]) > column and _names_sender(rows[0][column]):
            continue
        values = [row[column] for row in rows if len(row) > column and row[column].strip()]
        with_at = sum("@" in value for value in values)
        if with_at and 2 * with_at >= len(values):
            return column
    return None


# --- several mailboxes in one value --------------------------------------------------------

# A line, cell or string with a second "@": it may name several mailboxes.
_SEVERAL_AT: Final = re.compile(r"^[^\n@]*@[^\n@]*@", re.MULTILINE)
# The same test for a whole batch of lines at once, without their starts (about 4x faster).
_SEVERAL_IN_A_LINE: Final = re.compile(r"@[^\n@]*@")


def split_mailboxes(text: str) -> list[str]:
    """Return the mailboxes a value names, each as found, or ``[text]`` for one or none.

    A recipients column, a ``to`` key or a pasted list names several: ``a@x.org, b@y.org``,
    ``Ann <a@x.org>; "Lee, Bob" <b@y.org>`` (an RFC 5322 address list, or ``;`` as Outlook
    writes it), ``a@x.org|b@y.org``, ``a@x.org:b@y.org`` (the other combo separators), or
    ``a@x.org b@y.org``. The value is cut at ``,`` ``;`` ``|`` and ``:`` outside quotes,
    comments and angle or square brackets; a piece without an "@" belongs to the next
    (``Smith, Bob <b@y.org>``: a display name's unquoted comma; ``mailto:``, a group's
    ``Team:``), or is dropped at the end. A piece of bare addresses separated by white space
    is cut there. One mailbox with a second "@" (``"a@x.org" <a@x.org>``,
    ``mailto:a@x.org?cc=b@y.org``) stays whole. Linear time.
    """
    if text.count("@") < 2:
        return [text]
    found = _mailbox_pieces(text)
    return found if len(found) > 1 else [text]


def _mailbox_pieces(text: str) -> list[str]:
    """Cut ``text`` into the pieces ``split_mailboxes`` describes, stripped, each holding an
    "@" (none for a text without one)."""
    cuts: list[int] = []
    depth = 0
    quoted = angle = escaped = False
    for index, char in enumerate(text):
        if escaped:
            escaped = False
        elif char == "\\" and (quoted or depth):
            escaped = True
        elif quoted:
            quoted = char != '"'
        elif char == '"':
            quoted = True
        elif char == "(":
            depth += 1
        elif depth:
            depth -= char == ")"
        elif char in "<[":
            # An angle address, or a domain literal ("a@[IPv6:::1]"): its ':' cut nothing.
            angle = True
        elif char in ">]":
            angle = False
        elif char in _MAILBOX_CUTS and not angle:
            cuts.append(index)
    pieces: list[str] = []
    start = 0
    for cut in [*cuts, len(text)]:
        piece = text[start:cut]
        if "@" in piece:
            pieces.append(piece)
            start = cut + 1
    found: list[str] = []
    for piece in pieces:
        words = piece.split()
        if (
            len(words) > 1
            and all("@" in word for word in words)
            and not any(char in piece for char in '"<>()')
        ):
            found += words
        else:
            found.append(piece.strip())
    return found


# Where a list of mailboxes is cut: RFC 5322's ',', Outlook's ';', and the other separators
# of a combo line (':' and '|'), between which a pasted list of recipients also appears.
_MAILBOX_CUTS: Final = ",;|:"
# One mailbox as a field of a line: a bare address, or a display name (plain or quoted) and
# an angle address (``"Ann" <a@x.org>``, ``Ann Lee <a@x.org>``).
_DISPLAY_NAME: Final = r'(?:"(?:[^"\\]|\\.)*"|[^"<>@,;:|]*)'
_MAILBOX: Final = re.compile(
    rf"(?:{_FIELD_ADDRESS.pattern}|{_DISPLAY_NAME}[ \t]*<{_FIELD_ADDRESS.pattern}>)"
)


def mailbox_list(text: str) -> list[str] | None:
    """Return the mailboxes of ``text`` if it is nothing but one or more mailboxes (separated
    by ``,`` ``;`` ``|`` ``:`` or white space, a separator at either end allowed), else None.

    What follows an address on a line (``a@x.org;b@y.org``, ``"Ann" <a@x.org>; "Bob"
    <b@y.org>``) is then no password but more recipients: Outlook copies a To: line so.
    """
    if "@" not in text:
        return None
    pieces = _mailbox_pieces(text)
    if not pieces or any(_MAILBOX.fullmatch(piece) is None for piece in pieces):
        return None
    # Nothing but separators and white space may stand between the mailboxes.
    rest = text
    for piece in pieces:
        rest = rest.replace(piece, "", 1)
    return pieces if rest.strip(_MAILBOX_CUTS + " \t") == "" else None


def _split_records(
    lines: Sequence[int], candidates: list[str | None], passwords: list[str | None] | None
) -> tuple[Sequence[int], list[str | None], list[str | None] | None]:
    """Give each mailbox of a candidate naming several a record of its own, at its line and
    with its password (``split_mailboxes``); the lists as they are if none does."""
    several = [
        index
        for index, candidate in enumerate(candidates)
        if candidate is not None and candidate.count("@") > 1
    ]
    if not several:
        return lines, candidates, passwords
    new_lines: list[int] = []
    new_candidates: list[str | None] = []
    new_passwords: list[str | None] = []
    last = 0
    for index in several:
        new_lines += lines[last:index]
        new_candidates += candidates[last:index]
        if passwords is not None:
            new_passwords += passwords[last:index]
        parts = split_mailboxes(cast("str", candidates[index]))
        new_lines += [lines[index]] * len(parts)
        new_candidates += parts
        if passwords is not None:
            new_passwords += [passwords[index]] * len(parts)
        last = index + 1
    new_lines += lines[last:]
    new_candidates += candidates[last:]
    if passwords is not None:
        new_passwords += passwords[last:]
    return new_lines, new_candidates, new_passwords if passwords is not None else None


# --- record generators ---------------------------------------------------------------------

# A line without an "@"; a plain list's line is then no candidate, unless it holds "%40".
_NO_AT_LINE: Final = re.compile(r"^[^@\n]*$", re.MULTILINE)
# A combo line in its common shape: an address alone in the first field (nothing around it),
# then the first separator after its "@" and the password, or the line's end. Every other
# line (group 3) is left to ``_combo_line``.
_COMBO_ROW: Final = re.compile(
    rf"^({_FIELD_ADDRESS.pattern})(?:[:;|,]([^\n]*))?$|^([^\n]*)$", re.MULTILINE
)
# The separators a combo line's fields are cut at: ':' ';' '|', and ',' of the combo lists
# written as two-column CSV without a header (``alice@example.org,hunter2``).
_COMBO_CUT: Final = re.compile(r"[:;|,]")
_FIELD_SEPARATORS: Final = (*COMBO_SEPARATORS, ",")


def _stripped_lines(batch: list[str], first: int) -> tuple[list[str], Sequence[int]]:
    """Return the non-blank lines of ``batch`` stripped, and their line numbers."""
    texts = list(map(str.strip, batch))
    lines: Sequence[int] = range(first, first + len(batch))
    if "" in texts:
        lines = [number for number, text in zip(lines, texts, strict=True) if text]
        texts = [text for text in texts if text]
    return texts, lines


def lines_batches(batches: Batches, *, skip: int) -> Iterator[RecordBatch]:
    """Yield one record per non-blank line: the stripped line, or None without an '@'.

    A line naming several mailboxes gives one record each (``split_mailboxes``).
    """
    line = 0
    for batch in batches:
        texts, lines = _stripped_lines(batch, line + 1)
        line += len(batch)
        if not texts:
            continue
        joined = "\n".join(texts)
        if skip >= len(texts) and _SEVERAL_IN_A_LINE.search(joined) is None:
            skip -= len(texts)  # one record a line, none of them read
            continue
        candidates = cast("list[str | None]", texts)
        index = start = bare = 0
        for match in _NO_AT_LINE.finditer(joined):
            index += joined.count("\n", start, match.start())
            start = match.start()
            bare += 1
            # "%40": an "@" percent-encoded in a mailto: URI (RFC 6068), still an address.
            if "%40" not in match.group():
                candidates[index] = None
        if joined.count("@") > len(texts) - bare:  # a line holds a second "@"
            lines, candidates, _ = _split_records(lines, candidates, None)
        if skip:
            passed = min(skip, len(candidates))
            skip -= passed
            lines, candidates = lines[passed:], candidates[passed:]
        if candidates:
            yield RecordBatch(lines, candidates)


def combo_batches(batches: Batches, *, skip: int) -> Iterator[RecordBatch]:
    """Yield one record per non-blank ``email:password`` line (also ';', '|' and ','), or a
    line of more fields: ``URL:login:password`` (stealer logs), ``login:email:password``.

    First the split at the first separator after the first '@' (a domain cannot hold one, a
    password can): if what comes before parses as an address, that is the record. Else the
    address is the first field that parses as one, after a leading URL (never its user-info
    part), and the password is the rest of the line after it. The password is kept
    verbatim, spaces included; empty means None.
    """
    line = 0
    for batch in batches:
        first = line + 1
        line += len(batch)
        joined = "\n".join(batch)
        heads, found, texts = zip(*_COMBO_ROW.findall(joined), strict=True)
        candidates: list[str | None] = list(heads)
        passwords: list[str | None] = [password or None for password in found]
        lines: Sequence[int] = range(first, line + 1)
        # One "@" a line unless a line holds a second (``_split_mailbox_lines``): a common
        # line holds its address's, another line at least one if any; counted in C.
        ats = joined.count("@") - len(heads)
        if "" in heads:  # lines not in the common shape, blank lines among them
            blank: list[int] = []
            index = -1
            while (index := _find_next(heads, index + 1)) >= 0:
                ats += "@" not in texts[index]
                record = _combo_line(texts[index])
                if record is None:
                    blank.append(index)
                else:
                    candidates[index], passwords[index] = record
            if blank:
                gone = set(blank)
                kept = [i for i in range(len(batch)) if i not in gone]
                lines = [first + i for i in kept]
                candidates = [candidates[i] for i in kept]
                passwords = [passwords[i] for i in kept]
        if ats > 0:  # a line holds a second "@"
            lines, candidates, passwords = _split_mailbox_lines(lines, candidates, passwords)
        if skip:
            passed = min(skip, len(candidates))
            skip -= passed
            lines, candidates, passwords = lines[passed:], candidates[passed:], passwords[passed:]
        if candidates:
            yield RecordBatch(lines, candidates, passwords)


def _split_mailbox_lines(
    lines: Sequence[int], candidates: list[str | None], passwords: list[str | None]
) -> tuple[Sequence[int], list[str | None], list[str | None]]:
    """Give each mailbox of a combo line that names several a record of its own, with no
    password: ``a@x.org;b@y.org`` (any combo separator, or white space) is two recipients,
    not an address and its password. A password that holds an "@" but is no list of
    mailboxes (``p@ss``, ``hunter2 b@y.org``) stays the password.

    Only the records holding a second "@" are looked at, and the batch is rebuilt only if
    one of them splits: in a real combo list a few passwords in a hundred hold an "@"
    (``p@ssw0rd``), and a Python step for every record of every such batch had made the
    reading half as slow again.
    """
    suspects = {i for i, password in enumerate(passwords) if password and "@" in password}
    suspects.update(
        i for i, candidate in enumerate(candidates) if candidate and candidate.count("@") > 1
    )
    new_lines: list[int] = []
    new_candidates: list[str | None] = []
    new_passwords: list[str | None] = []
    start = 0
    for i in sorted(suspects):
        candidate, password = candidates[i], passwords[i]
        more = mailbox_list(password) if password is not None and "@" in password else None
        found: list[str | None]
        if more is not None and candidate is not None:
            found = [*split_mailboxes(candidate), *more]
            password = None
        elif candidate is not None and candidate.count("@") > 1:
            found = list(split_mailboxes(candidate))
        else:
            continue  # the record stands as read
        new_lines += lines[start:i]
        new_candidates += candidates[start:i]
        new_passwords += passwords[start:i]
        new_lines += [lines[i]] * len(found)
        new_candidates += found
        new_passwords += [password] * len(found)
        start = i + 1
    if not start:
        return lines, candidates, passwords
    new_lines += lines[start:]
    new_candidates += candidates[start:]
    new_passwords += passwords[start:]
    return new_lines, new_candidates, new_passwords


def _find_next(items: tuple[str, ...], start: int) -> int:
    """Return the index of the next empty string in ``items`` from ``start``, or -1."""
    try:
        return items.index("", start)
    except ValueError:
        return -1


def _combo_line(text: str) -> tuple[str | None, str | None] | None:
    """Return (candidate, password) of a combo line the common shape does not cover, or
    None for a blank line (no record)."""
    at = text.find("@")
    if at < 0:
        return (None, None) if text.strip() else None
    found = _COMBO_CUT.search(text, at)
    cut = found.start() if found is not None else -1
    head = text[:cut].strip() if cut >= 0 else text.strip()
    password = text[cut + 1 :] or None if cut >= 0 else None
    if _FIELD_ADDRESS.fullmatch(head) is not None:
        return head, password
    return _field_record(text) or (head, password)


def _field_record(text: str) -> tuple[str | None, str | None] | None:
    """Return (candidate, password) of a line of more than two fields; None if no field is an
    address ((None, None) if the line opens with a URL).

    Tried with ':' first, the separator of stealer logs, then ';', '|' and ','.
    """
    url = _URL_PREFIX.match(text)
    rest = text[url.end() :] if url is not None else text
    for separator in _FIELD_SEPARATORS:
        if separator not in rest:
            continue
        fields = rest.split(separator)
        if url is not None:
            if fields[0].strip():
                continue  # the URL runs on past this separator: not the field layout
            fields = fields[1:]
        for index, value in enumerate(fields):
            if "@" in value and _FIELD_ADDRESS.fullmatch(value.strip()) is not None:
                password = separator.join(fields[index + 1 :])
                return value.strip(), password or None
    # A URL line without an address field: its user-info is no candidate.
    return (None, None) if url is not None else None


def jsonl_batches(batches: Batches, *, skip: int) -> Iterator[RecordBatch]:
    """Yield one record per non-blank line holding a JSON object with an address key.

    A line that is only an array's bracket (``[``, ``]``) is no record, like a blank one.
    Keys are matched by ``name_role`` at the top level, else one object level down; a line
    that is not an object, or has no such string, gives candidate None. A value naming
    several mailboxes gives one record each (``split_mailboxes``), and so does a list under
    an address key, of strings or of objects with an address key (``_listed_addresses``),
    each with the line's password wherever its key stands.
    """
    # raw_decode skips json.loads's two whitespace regex passes (a third of its cost on
    # short objects); the line is stripped already, and trailing text is checked below.
    decode = json.JSONDecoder().raw_decode
    line = 0
    for batch in batches:
        texts, lines = _stripped_lines(batch, line + 1)
        line += len(batch)
        if _ARRAY_LINES.intersection(texts):
            # The brackets of an array written one element per line hold no record: counted,
            # they made a file of valid objects report its first and last lines invalid.
            kept = [index for index, text in enumerate(texts) if text not in _ARRAY_LINES]
            texts, lines = [texts[index] for index in kept], [lines[index] for index in kept]
        if skip:
            # Lines up to the first with a second "@" are one record each; one that names
            # several mailboxes is read, and its records passed over below.
            several = _SEVERAL_AT.search(joined := "\n".join(texts))
            ones = len(texts) if several is None else joined.count("\n", 0, several.start())
            passed = min(skip, ones)
            skip -= passed
            texts, lines = texts[passed:], lines[passed:]
        if not texts:
            continue
        candidates: list[str | None] = []
        passwords: list[str | None] = []
        add_candidate, add_password = candidates.append, passwords.append
        for text in texts:
            if text[0] != "{":
                if text[0] != "[":
                    add_candidate(None)
                    add_password(None)
                    continue
                text = text[1:].lstrip()  # the first object of a one-object-per-line array
            try:
                document, end = decode(text)
            except (ValueError, RecursionError):
                # JSONDecodeError is a ValueError, and so is an over-long integer literal;
                # deep nesting is a RecursionError.
                add_candidate(None)
                add_password(None)
                continue
            # The "," (or "]") after an array element is the only trailing text allowed.
            if type(document) is dict and (end == len(text) or text[end:].strip() in _ARRAY_TAILS):
                candidate, password = _json_fields(document)
                add_candidate(candidate)
                add_password(password)
            else:
                add_candidate(None)
                add_password(None)
        split_lines, split_candidates, split_passwords = _split_records(
            lines, candidates, passwords
        )
        if skip:
            passed = min(skip, len(split_candidates))
            skip -= passed
            split_lines, split_candidates = split_lines[passed:], split_candidates[passed:]
            split_passwords = split_passwords[passed:] if split_passwords is not None else None
        if split_candidates:
            yield RecordBatch(split_lines, split_candidates, split_passwords)


def _json_fields(document: dict[str, Any]) -> tuple[str | None, str | None]:
    """Return (candidate, password) of one JSON object."""
    shape = tuple(document)
    keys = _json_shapes.get(shape)
    if keys is None:
        keys = _named_keys(document)
        # A dump repeats one shape millions of times; a hostile file invents new ones, so
        # the cache stops growing rather than evicting.
        if len(_json_shapes) < _CACHE_SIZE:
            _json_shapes[shape] = keys
    address_key, password_key = keys
    address = document.get(address_key) if address_key is not None else None
    password = document.get(password_key) if password_key is not None else None
    if address_key is None:
        for value in document.values():
            if type(value) is dict:
                nested_address, nested_password = _named_keys(value)
                if nested_address is not None:
                    address = value[nested_address]
                    if password_key is None and nested_password is not None:
                        password = value[nested_password]
                    break
    if type(password) is int:
        password = str(password)  # dumps store numeric passwords as numbers
    if type(address) is list:  # "emails": [...]: one string, cut again by _split_records
        address, listed_password = _listed_addresses(address)
        if password is None:
            password = listed_password
    return (
        address.strip() if isinstance(address, str) and "@" in address else None,
        password if isinstance(password, str) and password else None,
    )


def _listed_addresses(items: list[Any]) -> tuple[str, str | None]:
    """Return the addresses of an address key's list as one string (``a@x.org, b@y.org``),
    and the password its objects agree on, if any.

    An item is an address string, or an object with an address key (``"emails":
    [{"email": "a@x.org", "verified": true}]``), as the JSON reader takes them. The list's
    records share one password: the enclosing object's, else one its objects all give.
    """
    addresses: list[str] = []
    passwords: set[str] = set()
    for item in items:
        if isinstance(item, str):
            if "@" in item:
                addresses.append(item)
            continue
        if type(item) is not dict:
            continue
        address_key, password_key = _named_keys(item)
        value = item.get(address_key) if address_key is not None else None
        if isinstance(value, str) and "@" in value:
            addresses.append(value)
            secret = item.get(password_key) if password_key is not None else None
            if type(secret) is int:
                secret = str(secret)
            if isinstance(secret, str) and secret:
                passwords.add(secret)
    return ", ".join(addresses), (passwords.pop() if len(passwords) == 1 else None)


def _named_keys(document: dict[str, Any]) -> tuple[str | None, str | None]:
    """Return the first keys naming the address and the password, by ``name_role``."""
    address = password = None
    for key in document:
        role = _key_roles.get(key, "")
        if role == "":
            role = name_role(key)
            if len(_key_roles) < _CACHE_SIZE:
                _key_roles[key] = role
        if role == ADDRESS and address is None:
            address = key
        elif role == CREDENTIAL and password is None:
            password = key
    return address, password


# A JSON token (a string, a number) longer than this is not a leak's: past it the reader
# stops rather than let the parser's buffer grow with the file.
MAX_JSON_TOKEN_BYTES = 8 * 1024 * 1024
# Records of arrays of addresses held until their object ends (its password key may come
# after the array): memory stays flat whatever an array's length.
MAX_HELD_RECORDS: Final = 4096


@dataclass(slots=True)
class _JsonFrame:
    """An open object or array while streaming a JSON text."""

    is_map: bool
    line: int
    unit: bool  # a top-level value or an element of a top-level array: one entry
    key: str | None = None
    has_address_key: bool = False
    address: str | None = None
    password: str | None = None
    # A nested object's records (one, or those of its array of addresses), waiting for this
    # object's password.
    nested: list[LeakRecord] | None = None
    nested_count: int = 0
    addresses: bool = False  # an array under an address key ("emails": [...])
    listed: int = -1  # records given by such an array of this object (-1: it has none)
    # Those records, held until the object ends: its password key may come after the array.
    held: list[LeakRecord] | None = None
    streamed: bool = False  # too many held: its records go out as they are read


def _with_password(record: LeakRecord, password: str | None) -> LeakRecord:
    """``record``, given ``password`` if it has none of its own."""
    if password is None or record.password is not None:
        return record
    return replace(record, password=password)


def json_records(blocks: Iterable[bytes], *, skip: int) -> Iterator[LeakRecord]:
    """Yield the records of a JSON text of any layout (RFC 8259), streamed by ijson.

    Entries are the top-level values (concatenated objects, as ``jq`` prints them) or the
    elements of a top-level array. Any object that holds a key naming an address
    (``name_role``, the first such key, as in JSON lines) is a record, at any depth, with
    its own password key or, if it has none, that of the object it is nested in (``{"user":
    {"email": ...}, "password": ...}``). An object that names an address itself takes
    precedence over the objects nested in it; an object holding many address objects
    (``{"1": {"email": ...}, "2": ...}``) passes each on at once, so memory stays flat. A
    string element of a top-level array is an address candidate. An entry without any
    address is one record with candidate None, at the line where it starts. A syntax error
    ends the reading with one such record.

    Bytes that are not UTF-8 are read as Windows-1252 per byte run, not per line: a JSON
    text may be one line of gigabytes.
    """
    decoder = codecs.getincrementaldecoder("utf-8")(FALLBACK_HANDLER)
    events: list[tuple[str, Any]] = ijson.sendable_list()
    parser = ijson.basic_parse_coro(events, multiple_values=True, use_float=True)
    stack: list[_JsonFrame] = []
    found = False  # the current entry gave a record
    held = 0  # records held in open objects, waiting for a password key after them
    line = 1
    pending = 0  # bytes sent since the parser last produced an event
    out: list[LeakRecord] = []

    def emit(record: LeakRecord) -> None:
        nonlocal found
        found = True
        out.append(record)

    def release(records: list[LeakRecord], password: str | None) -> list[LeakRecord]:
        """Take held records out of the count, each given ``password`` if it has none."""
        nonlocal held
        held -= len(records)
        if password is None:
            return records
        return [_with_password(record, password) for record in records]

    def hold(owner: _JsonFrame, record: LeakRecord) -> None:
        """Keep a record of ``owner``'s array of addresses until ``owner`` ends, so that its
        password key counts wherever it stands; past MAX_HELD_RECORDS held in all, the
        owner's records go out at once with the password read so far (an object with
        thousands of addresses is a list, not one person's account)."""
        nonlocal held
        owner.listed += 1
        if held >= MAX_HELD_RECORDS or owner.streamed:
            owner.streamed = True  # the rest of its array goes out as read, in file order
            if owner.held:
                for early in release(owner.held, owner.password):
                    emit(early)
                owner.held = None
            emit(_with_password(record, owner.password))
            return
        if owner.held is None:
            owner.held = []
        owner.held.append(record)
        held += 1

    def close_map(frame: _JsonFrame) -> None:
        nonlocal held
        records: list[LeakRecord]
        if frame.listed > 0:
            # Its array of addresses gave its records, held for its password until now.
            if not frame.held:
                return
            records = release(frame.held, frame.password)
            frame.held = None
        elif frame.has_address_key:
            records = [LeakRecord(frame.line, frame.address, frame.password)]
        elif frame.nested is not None:
            records = release(frame.nested, frame.password)
            frame.nested = None
        else:
            return
        parent = stack[-1] if stack else None
        if parent is None or not parent.is_map or frame.unit:
            if parent is not None and parent.addresses:
                # "emails": [{"email": ...}, ...]: the owner's password may come later.
                for record in records:
                    hold(stack[-2], record)
                return
            for record in records:
                emit(record)
        elif parent.nested_count == 0:
            parent.nested, parent.nested_count = records, 1
            held += len(records)
        else:
            if parent.nested is not None:  # many address objects: a container, not a user
                for record in release(parent.nested, None):
                    emit(record)
                parent.nested = None
            parent.nested_count += 1
            for record in records:
                emit(record)

    def scalar(event: str, value: Any) -> None:
        top = stack[-1] if stack else None
        if top is None or (not top.is_map and top.unit is False and len(stack) == 1):
            # A top-level scalar, or an element of the top-level array: an entry of its own.
            text = value.strip() if event == "string" and "@" in value else None
            emit(LeakRecord(line, text))
            return
        if top.addresses:
            # Each string of an array of addresses is a record of its object, with the
            # object's password wherever its key stands (``hold``).
            if event == "string" and "@" in value:
                hold(stack[-2], LeakRecord(line, value.strip()))
            return
        if not top.is_map or top.key is None:
            return
        role = key_role(top.key)
        if role == ADDRESS and not top.has_address_key:
            top.has_address_key = True
            if event == "string" and "@" in value:
                top.address = value.strip()
        elif role == CREDENTIAL and top.password is None:
            if event == "string" and value:
                top.password = value
            elif event == "number" and type(value) is int:
                top.password = str(value)  # dumps store numeric passwords as numbers

    def key_role(key: str) -> str | None:
        role = _key_roles.get(key, "")
        if role == "":
            role = name_role(key)
            if len(_key_roles) < _CACHE_SIZE:
                _key_roles[key] = role
        return role

    def handle(event: str, value: Any) -> None:
        nonlocal found
        if event == "map_key":
            stack[-1].key = value
        elif event in ("start_map", "start_array"):
            # A container in the top-level array, or a top-level object: one entry.
            unit = not stack or (len(stack) == 1 and not stack[0].is_map and not stack[0].unit)
            if event == "start_array" and not stack:
                unit = False  # the top-level array holds the entries
            if unit:
                found = False
            frame = _JsonFrame(event == "start_map", line, unit)
            owner = stack[-1] if stack else None
            if (
                event == "start_array"
                and owner is not None
                and owner.is_map
                and owner.key is not None
                and not owner.has_address_key
                and key_role(owner.key) == ADDRESS
            ):
                owner.has_address_key, owner.listed, frame.addresses = True, 0, True
            stack.append(frame)
        elif event in ("end_map", "end_array"):
            frame = stack.pop()
            if frame.is_map:
                close_map(frame)
            if frame.unit and not found:
                out.append(LeakRecord(frame.line, None))
            if stack and stack[-1].is_map:
                stack[-1].key = None
        else:
            scalar(event, value)
            if stack and stack[-1].is_map:
                stack[-1].key = None

    def feed(data: bytes) -> bool:
        """Send ``data`` to the parser and handle its events; False ends the reading."""
        nonlocal pending
        try:
            parser.send(data)
        except (ijson.JSONError, ValueError, RecursionError, OverflowError):
            for event, value in events:
                handle(event, value)
            out.append(LeakRecord(line, None))
            return False
        if events:
            pending = 0
            for event, value in events:
                handle(event, value)
            del events[:]
        else:
            pending += len(data)
            if pending > MAX_JSON_TOKEN_BYTES:
                out.append(LeakRecord(line, None))
                return False
        return True

    reading = True
    for block in chain(blocks, [b""]):
        text = decoder.decode(block, final=not block).encode("utf-8", "surrogatepass")
        pieces = text.split(b"\n")
        last = len(pieces) - 1
        for index, piece in enumerate(pieces):
            # Line by line, so that each event comes out while its line is the current one.
            data = piece + b"\n" if index < last else piece
            if data and not feed(data):
                reading = False
                break
            if index < last:
                line += 1
        if reading and not block:
            try:
                parser.close()
            except (ijson.JSONError, ValueError, RecursionError, OverflowError):
                out.append(LeakRecord(line, None))
            for event, value in events:
                handle(event, value)
        for record in out:
            candidate = record.candidate
            if candidate is not None and candidate.count("@") > 1:
                mailboxes = split_mailboxes(candidate)
            else:
                mailboxes = None
            if mailboxes is None or len(mailboxes) == 1:
                if skip:
                    skip -= 1
                else:
                    yield record
                continue
            for mailbox in mailboxes:  # a value naming several mailboxes: one record each
                if skip:
                    skip -= 1
                else:
                    yield replace(record, candidate=mailbox)
        out.clear()
        if not reading:
            return


def csv_batches(batches: Batches, *, layout: CsvLayout, skip: int) -> Iterator[RecordBatch]:
    """Yield one record per non-blank CSV row, at the line the row starts on (one per mailbox
    of an address cell naming several, ``split_mailboxes``, and one per mailbox of the
    layout's ``more_columns``; a row with no address in any of them is one invalid record).

    The layout's ``skip_lines`` (header and what stands above it) are passed over, and
    lines are still counted from the start of the text. Rows are cut by
    ``csv_records.cut_records``: a quoted field spans lines only when it closes soon and
    the row keeps the layout's columns, so a stray quote costs its own line, never the
    lines after it. A row that cannot be parsed (an over-long field) is a record with
    candidate None; a newline inside a quoted field stays in the value.
    """
    shape = CsvShape.of("excel", delimiter=layout.delimiter)
    column, password_column = layout.email_column, layout.password_column
    more_columns = layout.more_columns
    lines: list[int] = []
    candidates: list[str | None] = []
    passwords: list[str | None] = []
    for texts, starts in cut_records(
        _drop_lines(batches, layout.skip_lines),
        shape,
        columns=layout.columns,
        first_line=layout.skip_lines + 1,
    ):
        reader = csv.reader(texts, shape.dialect)
        # Each text is one row: a csv.Error ends the for loop but not the reader, which goes
        # on at the next text.
        while True:
            try:
                for row in reader:
                    cell = row[column].strip() if len(row) > column else ""
                    if not more_columns:
                        # One address column (most files): the row's cell, as read before.
                        if "@" not in cell:
                            if not any(value.strip() for value in row):
                                continue
                            cell = ""
                        for mailbox in split_mailboxes(cell) if cell.count("@") > 1 else (cell,):
                            if skip:
                                skip -= 1
                                continue
                            lines.append(starts[reader.line_num - 1])
                            candidates.append(mailbox or None)
                            if password_column is not None:
                                passwords.append(
                                    (row[password_column] or None)
                                    if len(row) > password_column
                                    else None
                                )
                        continue
                    password = (
                        (row[password_column] or None)
                        if password_column is not None and len(row) > password_column
                        else None
                    )
                    cells = [(cell, password)]
                    for other in more_columns:
                        value = row[other].strip() if len(row) > other else ""
                        if "@" in value:
                            cells.append((value, None))
                    if "@" not in cell:
                        if len(cells) > 1:
                            del cells[0]  # the row's addresses stand in its other columns
                        elif not any(value.strip() for value in row):
                            continue
                        else:
                            cells[0] = ("", None)
                    for value, value_password in cells:
                        for mailbox in split_mailboxes(value) if value.count("@") > 1 else (value,):
                            if skip:
                                skip -= 1
                                continue
                            lines.append(starts[reader.line_num - 1])
                            candidates.append(mailbox or None)
                            if password_column is not None:
                                passwords.append(value_password)
                break
            except csv.Error:
                if skip:
                    skip -= 1
                else:
                    lines.append(starts[reader.line_num - 1])
                    candidates.append(None)
                    if password_column is not None:
                        passwords.append(None)
        if len(lines) >= RECORDS_PER_BATCH:
            yield RecordBatch(lines, candidates, passwords or None)
            lines, candidates, passwords = [], [], []
    if lines:
        yield RecordBatch(lines, candidates, passwords or None)


def _drop_lines(batches: Batches, count: int) -> Iterator[list[str]]:
    """Yield the batches without their first ``count`` lines (those above a CSV's data)."""
    for batch in batches:
        if count >= len(batch):
            count -= len(batch)
            continue
        yield batch[count:] if count else batch
        count = 0


def eml_records(batches: Batches, *, skip: int) -> Iterator[LeakRecord]:
    """Yield a record per address in the To/Cc/Bcc (and Resent-) fields of each message.

    One message, or an mbox of many ("From " lines start them; bodies are skipped line by
    line and never kept). ``line`` is the line where the field starts. Only addresses with
    an '@' count: group names and display-name debris are not records.

    A message inside a message counts as one: a mass mail forwarded as an attachment
    (``message/rfc822`` or ``message/global``, at any depth of ``multipart`` parts, also
    sent base64 or quoted-printable: decoded line by line, each record at the line of the
    encoded text it came from), the parts of a ``multipart/digest``, the original header a
    bounce carries (``text/rfc822-headers``). Their header sections are read like the outer
    one; the header of a MIME part itself (Content-Type and the like) holds no recipients.
    So does a mail forwarded inline: in a text/plain body (decoded if need be), the To: and
    Cc: lines of the header block below a forward marker (``_FORWARD_MARKER``); never its
    From, Reply-To or Sender, and no To: line of a body without a marker.
    """
    feed = _MailLines(batches)
    mbox = False
    in_headers = True
    seen_field = False
    section = _Section(recipients=True, top=True)
    # The open multipart bodies, innermost last: (boundary, whether a digest).
    boundaries: list[tuple[str, bool]] = []
    # StringIO, not a list of lines: 100,000 short continuation lines as separate str objects
    # would cost six times their text.
    value: io.StringIO | None = None
    start = size = quotes = 0
    mime: list[str] | None = None  # a Content-Type or Content-Transfer-Encoding being read
    mime_name = ""
    mime_size = 0
    scan: _ForwardScan | None = None  # a text body, read for mails forwarded inline
    for text, line in feed:
        if text is _PART_END:
            # The enclosing multipart's boundary ends a decoded part wherever it stood.
            if value is not None:
                records, skip = _field_records(value, start, skip)
                yield from records
                value = None
            if scan is not None:
                for found, at in scan.close():
                    records, skip = _field_records(found, at, skip)
                    yield from records
                scan = None
            mime, in_headers = None, False
            continue
        # A piece of a long line goes on with that line: a continuation of its field.
        piece = type(text) is LinePiece
        if not in_headers:
            ends_part = False
            if piece:
                pass
            elif mbox and text.startswith("From "):
                in_headers, seen_field, ends_part = True, False, True
                section = _Section(recipients=True, top=True)
                boundaries.clear()
            elif boundaries and text.startswith("--"):
                found_boundary = _boundary_line(text, boundaries)
                if found_boundary is not None:
                    ends_part = True
                    index, closing = found_boundary
                    digest = boundaries[index][1]
                    # A boundary closes every part opened inside its own (RFC 2046 5.1.2).
                    del boundaries[index if closing else index + 1 :]
                    if not closing:
                        in_headers, seen_field = True, False
                        section = _Section(recipients=False, digest=digest)
                    elif not boundaries and not mbox and not feed.decoding:
                        if scan is not None:
                            for found, at in scan.close():
                                records, skip = _field_records(found, at, skip)
                                yield from records
                        return  # the message's last part ended: the rest is epilogue
            if scan is not None:
                fields = scan.close() if ends_part else scan.line(text, line, piece=piece)
                for found, at in fields:
                    records, skip = _field_records(found, at, skip)
                    yield from records
                if ends_part:
                    scan = None
            continue
        if piece or text[:1] in (" ", "\t"):
            if mime is not None:
                if mime_size < _MAX_MIME_FIELD_CHARS:
                    mime.append(text)
                    mime_size += len(text)
                continue
            if value is None or size > MAX_HEADER_CHARS:
                continue
            value.write(text)
            size += len(text)
            quotes += text.count('"')
            if size > HEADER_FLUSH_CHARS and quotes % 2 == 0 and text.rstrip().endswith(","):
                records, skip = _field_records(value, start, skip)
                yield from records
                value, size = io.StringIO(), 0
            continue
        if value is not None:
            records, skip = _field_records(value, start, skip)
            yield from records
            value = None
        if mime is not None:
            section.set_field(mime_name, "".join(mime))
            mime = None
        match = None if not text else _FIELD.match(text)
        if match is None:
            if not text and not seen_field and section.recipients:
                continue  # blank lines above a message's first field
            if not seen_field and section.top and text.startswith("From "):
                mbox = True
                continue
            # A blank line ends the header section; so does, like the stdlib parser, a
            # line that is no field (and is the body's first line).
            body = section.body()
            encoded = section.encoding in _DECODED_ENCODINGS
            if encoded and body in (_EMBEDDED, _TEXT):
                if feed.decoding:
                    body = None  # an encoded part inside a decoded one: skipped as body
                else:
                    decoder = _BodyDecoder(section.encoding, section.charset())
                    feed.decode(decoder, boundaries, mbox=mbox)
            if body is _EMBEDDED:
                seen_field = False
                section = _Section(recipients=True)
                continue
            if body is _TEXT:
                scan = _ForwardScan()
            elif body is not None and len(boundaries) < MAX_MIME_DEPTH:
                boundaries.append(body)
            if not boundaries and not mbox and scan is None and not feed.decoding:
                return  # one message: its body cannot hold recipients
            in_headers = False
            if scan is not None and match is None and text:
                # The body's first line ended the header section: it is read as body too.
                for found, at in scan.line(text, line, piece=False):
                    records, skip = _field_records(found, at, skip)
                    yield from records
            continue
        seen_field = True
        name = match.group(1).lower()
        if name in RECIPIENT_FIELDS:
            if section.recipients:
                head = text[match.end() :]
                value, start, size, quotes = io.StringIO(), line, len(head), head.count('"')
                value.write(head)
        elif name in _MIME_FIELDS:
            mime_name, mime = name, [text[match.end() :]]
            mime_size = len(mime[0])
    if value is not None:
        records, skip = _field_records(value, start, skip)
        yield from records
    if scan is not None:
        for found, at in scan.close():
            records, skip = _field_records(found, at, skip)
            yield from records


# The end of a decoded part (``_MailLines``): a str no line of a file is (lines hold no NUL
# at their start and end alike), compared by identity.
_PART_END: Final = "\0part-end\0"
# Lines that open a mail forwarded inline in a text body: Gmail's "---------- Forwarded
# message ---------", Thunderbird's "-------- Forwarded Message --------", Outlook's
# "-----Original Message-----" (or the rule of underscores it writes instead), Apple Mail's
# "Begin forwarded message:"; also quoted ("> ") in a reply.
_FORWARD_MARKER: Final = re.compile(
    r"[ \t]*(?:-{2,}[ \t]*(?:forwarded message|original message)[ \t]*-{2,}"
    r"|begin forwarded message:|_{20,})[ \t]*",
    re.IGNORECASE,
)
_QUOTE_PREFIX: Final = re.compile(r"(?:>[ \t]?)+")
# The recipients of a forwarded block: never its From, Reply-To or Sender (the leaker's).
_FORWARDED_FIELDS: Final = frozenset({"to", "cc"})
# Content-Transfer-Encodings decoded to read a part (RFC 2045 6.7, 6.8).
_DECODED_ENCODINGS: Final = frozenset({"base64", "quoted-printable"})


class _ForwardScan:
    """Read a text body for mails forwarded inline: after a marker line (blank lines may
    follow it), the block of header lines up to a blank line or a line that is no field;
    its To: and Cc: values (folded lines joined) are returned as (value, line) to parse.

    Bounded like a header field: a value over HEADER_FLUSH_CHARS is handed on at a comma
    outside quotes, and nothing past MAX_HEADER_CHARS without one is kept.
    """

    __slots__ = ("_block", "_quotes", "_size", "_start", "_value")

    def __init__(self) -> None:
        self._block = 0  # 0: body text; 1: below a marker; 2: in the forwarded header block
        self._value: io.StringIO | None = None
        self._start = self._size = self._quotes = 0

    def line(self, text: str, line: int, *, piece: bool) -> list[tuple[io.StringIO, int]]:
        """Take one line of the body; return the values it completed."""
        if piece:
            return self._more(text)
        if text[:1] == ">":
            text = _QUOTE_PREFIX.sub("", text, count=1)
        if _FORWARD_MARKER.fullmatch(text) is not None:
            done = self.close()
            self._block = 1
            return done
        if not self._block:
            return []
        if not text.strip():
            if self._block == 1:
                return []  # Apple Mail: a blank line between the marker and the fields
            self._block = 0  # a blank line ends the forwarded header block
            return self.close()
        if text[:1] in (" ", "\t") and self._block == 2:
            return self._more(text)
        match = _FIELD.match(text)
        done = self.close()
        if match is None:
            self._block = 0  # the forwarded mail's body (or no block at all)
            return done
        self._block = 2
        if match.group(1).lower() in _FORWARDED_FIELDS:
            head = text[match.end() :]
            self._value = io.StringIO(head)
            self._value.seek(0, io.SEEK_END)
            self._start, self._size, self._quotes = line, len(head), head.count('"')
        return done

    def _more(self, text: str) -> list[tuple[io.StringIO, int]]:
        value = self._value
        if value is None or self._size > MAX_HEADER_CHARS:
            return []
        value.write(text)
        self._size += len(text)
        self._quotes += text.count('"')
        if (
            self._size > HEADER_FLUSH_CHARS
            and self._quotes % 2 == 0
            and text.rstrip().endswith(",")
        ):
            self._value, self._size = io.StringIO(), 0
            return [(value, self._start)]
        return []

    def close(self) -> list[tuple[io.StringIO, int]]:
        """End the field being read (the block goes on); return it, if any."""
        value, self._value = self._value, None
        return [] if value is None else [(value, self._start)]


# A decoded line longer than this goes on in pieces, as the line reader cuts a long line
# (``stream.MAX_LINE_BYTES``): a header field of thousands of recipients is then parsed in
# parts (HEADER_FLUSH_CHARS) rather than held whole.
_DECODED_PIECE_BYTES: Final = 64 * 1024


class _BodyDecoder:
    """Decode the lines of a part sent base64 or quoted-printable into its text's lines.

    Bounded: a decoded line over _DECODED_PIECE_BYTES is handed on in pieces
    (``LinePiece``), cut after a comma where there is one.
    """

    __slots__ = ("_base64", "_buffer", "_charset", "_cut", "_hard", "_pending")

    def __init__(self, encoding: str, charset: str) -> None:
        self._base64 = encoding == "base64"
        self._charset = charset
        self._pending = ""  # base64 characters short of a group of four
        self._buffer = b""  # decoded bytes after the last line end
        self._hard = False  # quoted-printable: the line before ended without "=" (a line end)
        self._cut = False  # the buffer's line was cut for its length: the rest is a piece

    def feed(self, text: str) -> list[str]:
        """Decode one line of the encoded part; return the text lines it completed."""
        if self._base64:
            chunk = self._pending + "".join(text.split())
            usable = len(chunk) - len(chunk) % 4
            self._pending = chunk[usable:]
            try:
                data = binascii.a2b_base64(chunk[:usable].encode("ascii", "ignore"))
            except binascii.Error:
                data = b""  # not base64 after all: no text of it
        else:
            raw = text.rstrip(" \t").encode("utf-8", "surrogateescape")
            soft = raw.endswith(b"=")
            data = (b"\n" if self._hard else b"") + binascii.a2b_qp(raw[:-1] if soft else raw)
            self._hard = not soft
        return self._lines(data, final=False)

    def close(self) -> list[str]:
        """Return the text lines left at the end of the part."""
        return self._lines(b"", final=True)

    def _lines(self, data: bytes, *, final: bool) -> list[str]:
        parts = (self._buffer + data).split(b"\n")
        self._buffer = b"" if final else parts.pop()
        lines = [self._text(part) for part in parts]
        while len(self._buffer) > _DECODED_PIECE_BYTES:
            cut = self._buffer.rfind(b",", 0, _DECODED_PIECE_BYTES) + 1 or _DECODED_PIECE_BYTES
            lines.append(self._text(self._buffer[:cut]))
            self._cut = True
            self._buffer = self._buffer[cut:]
        if final and lines and not lines[-1]:
            lines.pop()  # the part's last line end
        return lines

    def _text(self, data: bytes) -> str:
        try:
            text = data.decode(self._charset, "replace").rstrip("\r")
        except LookupError:
            text = data.decode("utf-8", "replace").rstrip("\r")
        if self._cut:
            self._cut = False
            return LinePiece(text)  # the rest of a line handed on before in pieces
        return text


class _MailLines:
    """The lines of a mail file, each with its number; within a part being decoded
    (``decode``), the part's decoded lines instead, each at the line of the encoded text
    that completed it, up to the next boundary of the multiparts around the part (or an
    mbox's next message), before which comes ``_PART_END``. One part at a time: a part
    encoded inside a decoded one is not decoded."""

    def __init__(self, batches: Batches) -> None:
        self._batches = batches
        self._decoder: _BodyDecoder | None = None
        self._stops: list[tuple[str, bool]] = []
        self._mbox = False

    @property
    def decoding(self) -> bool:
        return self._decoder is not None

    def decode(
        self, decoder: _BodyDecoder, boundaries: list[tuple[str, bool]], *, mbox: bool
    ) -> None:
        """Decode the lines from the next one on, up to a boundary of ``boundaries`` (or,
        in an mbox, the next message's "From " line)."""
        self._decoder, self._stops, self._mbox = decoder, list(boundaries), mbox

    def __iter__(self) -> Iterator[tuple[str, int]]:
        line = 0
        for batch in self._batches:
            for text in batch:
                piece = type(text) is LinePiece
                if not piece:
                    line += 1
                decoder = self._decoder
                if decoder is None:
                    yield text, line
                    continue
                if not piece and (
                    (
                        text.startswith("--")
                        and self._stops
                        and _boundary_line(text, self._stops) is not None
                    )
                    or (self._mbox and text.startswith("From "))
                ):
                    self._decoder = None
                    for decoded in decoder.close():
                        yield decoded, line - 1
                    yield _PART_END, line
                    yield text, line
                    continue
                for decoded in decoder.feed(text):
                    yield decoded, line
        decoder = self._decoder
        if decoder is not None:
            self._decoder = None
            for decoded in decoder.close():
                yield decoded, line


# A message inside a message (RFC 2046 5.2.1, RFC 6532 3.7) or a copy of its header (RFC 6522
# 4); each starts with a header section whose recipients leaked like the outer one's.
_EMBEDDED_TYPES: Final = frozenset({"message/rfc822", "message/global", "text/rfc822-headers"})
# The encodings whose body can be read line by line as a header section: RFC 2046 5.2.1
# allows no other for message/rfc822.
_PLAIN_ENCODINGS: Final = frozenset({"", "7bit", "8bit", "binary"})
_MIME_FIELDS: Final = frozenset({"content-type", "content-transfer-encoding"})
_MAX_MIME_FIELD_CHARS: Final = 8192
# Nested multiparts followed at most; a deeper one's parts are skipped as body (bounded work
# and memory on a hostile file; real mail nests a handful).
MAX_MIME_DEPTH: Final = 32
_EMBEDDED: Final = ("", False)
# A text/plain body: read for mails forwarded inline (``_ForwardScan``).
_TEXT: Final = ("", True)


@dataclass(slots=True)
class _Section:
    """A header section of a mail file: a message's (``recipients``) or a MIME part's."""

    recipients: bool
    top: bool = False  # the file's first message, or a message of an mbox
    digest: bool = False  # a part of multipart/digest: message/rfc822 unless it says otherwise
    content_type: str = ""
    encoding: str = ""

    def set_field(self, name: str, value: str) -> None:
        if name == "content-type":
            self.content_type = value
        else:
            self.encoding = value.strip().lower()

    def body(self) -> tuple[str, bool] | None:
        """Say what the body below holds: ``_EMBEDDED`` (a header section), a multipart's
        (boundary, whether a digest), or None (text to skip)."""
        if not self.content_type.strip():
            kind, boundary = ("message/rfc822" if self.digest else "text/plain"), None
        else:
            parsed = email.message.Message()
            parsed["Content-Type"] = self.content_type
            try:
                kind, boundary = parsed.get_content_type(), parsed.get_boundary()
            except (ValueError, LookupError):  # UnicodeError too: a value that is no type
                kind, boundary = "text/plain", None
        known = self.encoding in _PLAIN_ENCODINGS or self.encoding in _DECODED_ENCODINGS
        if kind in _EMBEDDED_TYPES:
            return _EMBEDDED if known else None
        if kind == "text/plain":
            return _TEXT if known else None
        if kind.startswith("multipart/") and boundary:
            return boundary, kind == "multipart/digest"
        return None

    def charset(self) -> str:
        """The charset of a text body (UTF-8 unless the Content-Type names another)."""
        parsed = email.message.Message()
        parsed["Content-Type"] = self.content_type or "text/plain"
        try:
            return parsed.get_content_charset() or "utf-8"
        except (ValueError, LookupError):
            return "utf-8"


def _boundary_line(text: str, boundaries: list[tuple[str, bool]]) -> tuple[int, bool] | None:
    """Return (index in ``boundaries``, whether closing) of a boundary line, or None.

    A delimiter line is "--" and the boundary, a closing one adds "--"; either may be
    followed by white space (RFC 2046 5.1.1). The innermost boundary is tried first.
    """
    text = text.rstrip(" \t")
    for index in range(len(boundaries) - 1, -1, -1):
        boundary = boundaries[index][0]
        if text[2:].startswith(boundary):
            rest = text[2 + len(boundary) :]
            if rest in ("", "--"):
                return index, rest == "--"
    return None


# An unquoted display name holding an "@" before its <address>, as Outlook and many mailing
# tools write it ("bob@x.org <bob@x.org>"): getaddresses reads the name as another
# recipient, so one person counted twice (or a stale address in the name as a recipient).
_AT_DISPLAY_NAME: Final = re.compile(r"(^|[,:;])([^,\"<>():;@\\]*@[^,\"<>():;\\]*?)(?=[ \t]*<)")


def _quoted_display_name(match: re.Match[str]) -> str:
    return f'{match.group(1)}"{match.group(2).strip()}" '


def _field_records(value: io.StringIO, line: int, skip: int) -> tuple[list[LeakRecord], int]:
    """Return the records of one unfolded field value, less ``skip``, and the skip left."""
    # Unfolding is joining: each continuation line keeps its leading whitespace (RFC 5322
    # 2.2.3). getaddresses on the raw value is ~100x faster than policy header objects.
    text = value.getvalue()
    if "<" in text:
        text = _AT_DISPLAY_NAME.sub(_quoted_display_name, text)
    pairs = _parse_addresses([text])
    addresses = [address.strip() for _, address in pairs if "@" in address or "=?" in address]
    if len(addresses) != sum("@" in address for address in addresses):
        # A mailbox its sender's software wrote as one encoded word (RFC 2047 forbids it in
        # an address, yet "=?utf-8?B?YWxp...?=" occurs): decoded, it is a recipient too.
        addresses = [
            decoded
            for address in addresses
            if "@" in (decoded := address if "@" in address else decode_encoded_words(address))
        ]
    passed = min(skip, len(addresses))
    return [LeakRecord(line, address) for address in addresses[passed:]], skip - passed


def text_records(batches: Batches, *, skip: int) -> Iterator[LeakRecord]:
    """Yield a record per address-shaped token in free text; lines without one give none."""
    finditer = _TEXT_ADDRESS.finditer
    line = 0
    for batch in batches:
        for text in batch:
            if type(text) is not LinePiece:  # a piece of a long line goes on with that line
                line += 1
            if "@" not in text:
                continue
            for match in finditer(text):
                # Quotes and dots may open a run ('jane@x.org', ...jane@x.org) but in prose
                # they are punctuation, not part of the address.
                token = match.group().lstrip(".'")
                if token[0] == "@":
                    continue
                if skip:
                    skip -= 1
                    continue
                yield LeakRecord(line, token)
