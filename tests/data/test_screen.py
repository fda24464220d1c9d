"""Screening CSV bytes: lines that are not text are taken out with their number, escaped bytes, reason."""

from __future__ import annotations

import itertools

import pyarrow as pa
import pyarrow.csv as pacsv
import pytest

from driftloop.data.screen import escape, line_numbers, screen

HEADER = b"id,value\n"


def test_plain_text_passes_unchanged() -> None:
    body = b'1,2.5\n2,"quoted, with a comma"\n3,"a ""doubled"" quote"\n4,caf\xc3\xa9\t\n\n5,x"y\n'
    screened = screen(HEADER + body)
    assert screened.refused == []
    assert (screened.header, screened.header_line) == ("id,value", 1)
    assert screened.body == body


@pytest.mark.parametrize(
    ("line", "text", "reason"),
    [
        (b"2,caf\xe9", "2,caf\\xe9", "not UTF-8: byte 0xe9 at column 6"),
        (b"2,\x00\x00\x17\xff", "2,\\x00\\x00\\x17\\xff", "not UTF-8: byte 0xff at column 6"),
        (b"2,ab\x00c", "2,ab\\x00c", "binary data: control character \\x00 at column 5"),
        (b"2,\x1b[31mred", "2,\\x1b[31mred", "binary data: control character \\x1b at column 3"),
        (b"2,a\rb", "2,a\\rb", "binary data: control character \\r at column 4"),
        (b"2,\xc3\xa9\xc2\x85", "2,\xe9\\u0085", "binary data: control character \\u0085 at column 5"),
        (b"2,a\x7f", "2,a\\x7f", "binary data: control character \\x7f at column 4"),
        (b'2,"open', '2,"open', "unbalanced quote: a quoted value runs past the end of the line"),
        (b'2,"a""', '2,"a""', "unbalanced quote"),
    ],
)
def test_a_bad_line_is_refused_with_its_number_escaped_bytes_and_reason(
    line: bytes, text: str, reason: str
) -> None:
    data = HEADER + b"1,ok\n" + line + b"\n3,ok\n"
    screened = screen(data)
    [refused] = screened.refused
    assert refused.line == 3
    assert refused.text == text
    assert refused.reason.startswith(reason)
    assert screened.body == b"1,ok\n\n3,ok\n"  # emptied, not removed: later lines keep their numbers


def test_line_numbers_count_blank_lines_and_crlf() -> None:
    data = b"\r\n\r\nid,value\r\n1,a\r\n\r\n2,b\xe9\r\n3,c\r\n4,\x00\r\n5,e"
    screened = screen(data)
    assert screened.header_line == 3
    assert [(r.line, r.text) for r in screened.refused] == [(6, "2,b\\xe9"), (8, "4,\\x00")]
    # Line k of the body is line header_line + k of the file, and pyarrow's k-th record is on the
    # k-th non-empty line of the body.
    assert [screened.header_line + n for n in line_numbers(screened.body)] == [4, 7, 9]


def test_long_files_keep_their_numbers_block_after_block() -> None:
    lines = [b"id,value"] + [b"%d,x" % n for n in range(2, 2001)]
    bad = {300: b"300,\xe9", 257: b'257,"open', 1999: b"1999,\x00"}
    for number, line in bad.items():
        lines[number - 1] = line
    screened = screen(b"\r\n".join(lines) + b"\r\n")
    assert [(r.line, r.text) for r in screened.refused] == [(n, escape(bad[n])) for n in sorted(bad)]
    # Emptied, not removed: the body has every line after the header (plus the one after the last CRLF).
    assert len(screened.body.split(b"\n")) == len(lines)
    assert [screened.header_line + n for n in line_numbers(screened.body)] == [
        n for n in range(2, 2001) if n not in bad
    ]


def test_a_header_that_is_not_text_is_escaped_not_refused() -> None:
    screened = screen(b"id,val\xe9\x00\n1,2\n")
    assert screened.refused == []
    assert screened.header == "id,val\\xe9\\x00"
    assert screened.body == b"1,2\n"


def test_empty_and_blank_files_have_no_header() -> None:
    for data in (b"", b"\n\r\n"):
        screened = screen(data)
        assert (screened.header, screened.header_line, screened.body, screened.refused) == ("", 0, b"", [])


def test_escape_is_printable_and_unambiguous() -> None:
    assert escape(b"a\\x00") == "a\\\\x00"  # a backslash followed by "x00" …
    assert escape(b"a\x00") == "a\\x00"  # … is not the NUL byte
    assert escape(b"\t\n\r\xe9\xc3\xa9\xc2\x9b") == "\\t\\n\\r\\xe9\xe9\\u009b"
    every_byte = escape(bytes(range(256)))
    assert every_byte.isprintable()
    every_byte.encode("utf-8")  # valid text, whatever the input


def _pyarrow_ends_the_record(line: str) -> bool:
    """Whether pyarrow ends the record at the end of ``line`` (True) or reads on into the next line."""
    records: list[str] = []
    names = [f"c{i}" for i in range(10)]
    pacsv.read_csv(
        pa.BufferReader((line + "\nZ\n").encode()),
        read_options=pacsv.ReadOptions(column_names=names, use_threads=False),
        parse_options=pacsv.ParseOptions(
            newlines_in_values=True, invalid_row_handler=lambda row: records.append(row.text) or "skip"
        ),
        convert_options=pacsv.ConvertOptions(column_types=dict.fromkeys(names, pa.string())),
    )
    return records[-1] == "Z" and len(records) == 2


def test_the_quote_rule_is_pyarrows() -> None:
    # Every line of up to 6 characters over {a , "}: refused exactly when pyarrow would run on.
    for n in range(1, 7):
        for chars in itertools.product('a,"', repeat=n):
            line = "".join(chars)
            refused = bool(screen(f"h\n{line}\n".encode()).refused)
            assert refused is not _pyarrow_ends_the_record(line), line
