"""Screening raw CSV bytes for lines that are not text, before the CSV parser sees them.

pyarrow's CSV reader fails a whole file on one byte that is not UTF-8, and a stray quote makes it lose
its place (or swallow every line up to the next quote). Ingest promises that a bad line costs that line
only, so every line that is not plain CSV text is taken out here, with its line number, its bytes
escaped (:func:`escape`) and a reason, and the parser gets the rest. A line is refused when it

- is not UTF-8: ``not UTF-8: byte 0xe9 at column 12``;
- holds a control character other than tab (NUL, ESC, a carriage return inside the line, C1
  controls): ``binary data: control character \\x00 at column 3``;
- leaves a quoted value open at its end: ``unbalanced quote: …``. driftloop reads one record per
  line: a quoted value may hold commas and doubled quotes but not a line break (pyarrow's default
  chunking does not support them either). The test follows pyarrow's quoting rules exactly: a quote
  opens a value only at the start of a field; anywhere else it is an ordinary character.

Columns count bytes from 1. Refused lines are replaced by empty lines, which the parser skips, so every
line after them keeps its number. The header is the first non-blank line; a header that is not text is
escaped rather than refused (its names then match no configured column, which ingest reports).

The common case costs a few passes at C speed (about 6 ms for a 100k-row plant day, whose reading
takes about 20 ms): a file that decodes as UTF-8, has no control character and no quote that opens a
field is handed on unchanged. A file that does quote its values pays one regular-expression pass for
the quoting rule (about 100 ms per 100k rows). In a file with a bad line, only the blocks of 256 lines
that hold one are walked line by line in Python.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

__all__ = ["RefusedLine", "Screened", "escape", "line_numbers", "screen"]

# Deleting these from a file leaves exactly its C0 controls other than tab/LF/CR, and DEL.
_TEXT_BYTES = bytes([*range(0x20, 0x7F), *range(0x80, 0x100)]) + b"\t\n\r"
# U+0080–U+009F (C1 controls) as UTF-8; only meaningful once the bytes are known to decode.
_C1 = re.compile(rb"\xc2[\x80-\x9f]")
# On one decoded line (its CRLF carriage return removed): every control but tab.
_CONTROL = re.compile("[\x00-\x08\x0a-\x1f\x7f-\x9f]")
# One CSV field as pyarrow parses it: a quoted value (doubled quotes inside) followed by anything up
# to the next comma, or an unquoted value in which quotes are plain characters. Atomic groups keep a
# failed match linear. tests/data/test_screen.py checks it against pyarrow on every short line.
_FIELD = r'(?>"(?:[^"\n]|"")*+"[^,\n]*+|[^,"\n][^,\n]*+|)'
_CLOSED = re.compile(rf"{_FIELD}(?:,{_FIELD})*+")
# Consumes closed lines one after the other: it matches the whole file when every line is closed.
_CLOSED_LINES = re.compile(rf"(?:{_FIELD}(?:,{_FIELD})*+(?:\n|\Z))*+".encode())
_ESCAPED = re.compile("[\\\\\x00-\x1f\x7f-\x9f\udc80-\udcff]")
_NAMED = {"\\": "\\\\", "\t": "\\t", "\n": "\\n", "\r": "\\r"}
_BLOCK = 256  # lines screened together before looking at single lines


@dataclass(frozen=True, slots=True)
class RefusedLine:
    """A line taken out of a file: 1-based number, its bytes as :func:`escape` shows them, why."""

    line: int
    text: str
    reason: str


@dataclass(frozen=True, slots=True)
class Screened:
    """A file split into its header line and the body after it, bad lines emptied out of the body.

    ``header`` is text (``""`` and ``header_line == 0`` for a file with no non-blank line); line ``k``
    of ``body`` (1-based) is line ``header_line + k`` of the file.
    """

    header: str
    header_line: int
    body: bytes
    refused: list[RefusedLine]


def screen(data: bytes) -> Screened:
    """``data`` with every line that is not CSV text refused (see the module docstring)."""
    if _plain(data):
        return _split(data, [])
    lines = data.split(b"\n")
    refused: list[RefusedLine] = []
    header_seen = False
    for first in range(0, len(lines), _BLOCK):
        # Bad lines are few: a block that passes as a whole is not walked line by line.
        if header_seen and _plain(b"\n".join(lines[first : first + _BLOCK]) + b"\n"):
            continue
        for i in range(first, min(first + _BLOCK, len(lines))):
            content = lines[i].removesuffix(b"\r")
            if not content:
                continue
            problem = _problem(content)
            if not header_seen:
                header_seen = True
                if problem:  # keep the header's place; escaped names simply match no column
                    lines[i] = escape(content).encode()
            elif problem:
                refused.append(RefusedLine(line=i + 1, text=escape(content), reason=problem))
                lines[i] = b""
    return _split(b"\n".join(lines), refused)


def line_numbers(body: bytes) -> list[int]:
    """The 1-based line of ``body`` holding each record, in the order pyarrow numbers records.

    pyarrow numbers the records it parsed and skips empty lines; after :func:`screen` no record spans
    lines, so record ``r`` is the ``r``-th non-empty line.
    """
    return [i + 1 for i, line in enumerate(body.split(b"\n")) if line not in (b"", b"\r")]


def escape(raw: bytes | str) -> str:
    """``raw`` as printable UTF-8 text, unambiguously: ``\\\\`` for a backslash, ``\\t \\n \\r``,
    ``\\xNN`` for a byte that is not UTF-8 or a C0 control / DEL, ``\\uNNNN`` for a C1 control.
    Every other character, non-ASCII text included, is kept as it is."""
    text = raw.decode("utf-8", "surrogateescape") if isinstance(raw, bytes) else raw
    return _ESCAPED.sub(_escape_one, text)


def _escape_one(match: re.Match[str]) -> str:
    char = match.group()
    if char in _NAMED:
        return _NAMED[char]
    code = ord(char)
    if code >= 0xDC80:  # surrogateescape's stand-in for the undecodable byte code - 0xDC00
        return f"\\x{code - 0xDC00:02x}"
    return f"\\x{code:02x}" if code < 0x80 else f"\\u{code:04x}"


def _plain(data: bytes) -> bool:
    """True when no line of ``data`` would be refused, decided without a Python loop over lines."""
    return _text(data) and _quotes_closed(data)


def _text(data: bytes) -> bool:
    try:
        data.decode("utf-8")
    except UnicodeDecodeError:
        return False
    controls = bool(data.translate(None, _TEXT_BYTES))
    stray_cr = b"\r" in data and data.count(b"\r") != data.count(b"\r\n")  # a CR not ending a line
    return not (controls or stray_cr or (not data.isascii() and _C1.search(data)))


def _quotes_closed(data: bytes) -> bool:
    if b'"' not in data:  # one memchr: the plant's case
        return True
    if b',"' not in data and b'\n"' not in data and not data.startswith(b'"'):
        return True  # no quote opens a field (any other quote is a plain character): nothing is open
    closed = _CLOSED_LINES.match(data)
    return closed is not None and closed.end() == len(data)


def _problem(content: bytes) -> str | None:
    """Why one line (without its line ending) is refused, or None."""
    try:
        text = content.decode("utf-8")
    except UnicodeDecodeError as exc:
        return f"not UTF-8: byte 0x{content[exc.start]:02x} at column {exc.start + 1}"
    control = _CONTROL.search(text)
    if control:
        column = len(text[: control.start()].encode()) + 1
        return f"binary data: control character {escape(control.group())} at column {column}"
    if '"' in text and _CLOSED.fullmatch(text) is None:
        return "unbalanced quote: a quoted value runs past the end of the line (values may not span lines)"
    return None


def _split(data: bytes, refused: list[RefusedLine]) -> Screened:
    start = len(data) - len(data.lstrip(b"\r\n"))
    if start == len(data):
        return Screened(header="", header_line=0, body=b"", refused=refused)
    end = data.find(b"\n", start)
    end = len(data) if end < 0 else end
    header = data[start:end].removesuffix(b"\r").decode("utf-8")
    return Screened(
        header=header, header_line=data.count(b"\n", 0, start) + 1, body=data[end + 1 :], refused=refused
    )
