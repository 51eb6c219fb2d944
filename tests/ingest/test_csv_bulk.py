"""CSV read in bulk by Arrow gives the rows, line numbers and rejections of the csv module."""

from __future__ import annotations

import pytest

from panorama.ingest import readers

HEADER = b"id,name,email,amount\n"
PLAIN = b"".join(b"%d,Name %d,p%d@x.com,%d.50\n" % (i, i, i, i) for i in range(1, 60))
CASES = {
    "plain": HEADER + PLAIN,
    "no final newline": HEADER + PLAIN.rstrip(b"\n"),
    "blanks as nulls": HEADER + b"1,,  ,3\n2,Bo,b@x.com,\n",
    "bom": b"\xef\xbb\xbf" + HEADER + PLAIN,
    "quotes later": HEADER
    + PLAIN
    + b'60,"Smith, Jo",j@x.com,1\n61,"Multi\nLine",m@x.com,2\n'
    + PLAIN,
    "wrong width later": HEADER + PLAIN + b"62,too,many,fields,here\n63,few\n" + PLAIN,
    "blank line later": HEADER + PLAIN + b"\n\n" + PLAIN,
    "not utf-8 later": HEADER + PLAIN + b"64,Caf\xe9,c@x.com,1\n" + PLAIN,
    "crlf": HEADER.replace(b"\n", b"\r\n") + PLAIN.replace(b"\n", b"\r\n"),
    "quoted header": b'"id","name"\n1,a\n2,b\n',
    "spaces in header": b"id , name\n1,a\n",
    "header only": HEADER,
}


def _rows(chunks):
    rows, bad = [], []
    for chunk in chunks:
        table = chunk.table.to_pylist()
        rows += [tuple(r.items()) for r in table]
        bad += [(b.line, b.reason, b.raw) for b in chunk.bad]
    return rows, bad


@pytest.mark.parametrize("case", sorted(CASES))
@pytest.mark.parametrize("block", [64, 1 << 20])
def test_bulk_csv_reads_what_the_csv_module_reads(tmp_path, monkeypatch, case, block):
    path = tmp_path / "data.csv"
    path.write_bytes(CASES[case])
    monkeypatch.setattr(readers, "_FAST_BLOCK", block)
    bulk = _rows(readers.read_csv(path, chunk_rows=7))
    rows_only = _rows(readers._read_csv_rows(path, ",", chunk_rows=7))
    assert bulk == rows_only
    if case not in ("header only",):
        assert bulk[0] or bulk[1]


def test_bulk_csv_is_used_for_plain_files(tmp_path):
    path = tmp_path / "data.csv"
    path.write_bytes(HEADER + PLAIN)
    chunks = list(readers.read_csv(path, chunk_rows=7))
    assert len(chunks) == 1  # one Arrow block, not chunks of 7 rows from the csv module
    assert chunks[0].table.column(readers.LINE).to_pylist() == list(range(2, 61))
