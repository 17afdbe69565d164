"""One printer per output format (STYLE 8): ``printer(fmt)`` is the class for
``-w fmt``, every ``-w`` choice has one, and a backup's facts print as they did
when snapshot.py printed them itself."""

from __future__ import annotations

import io
import json

import pytest

from mcpctl.backup import BackupInfo
from mcpctl.cli.main import build_parser
from mcpctl.cli.output import PRINTERS, JsonPrinter, Printer, SimplePrinter, TablePrinter, printer

INFO = BackupInfo(revision=42, size=1234, sha256="ab" * 32, created=0.0, keys=7)


def test_every_write_out_choice_has_a_printer() -> None:
    for fmt in ("simple", "json", "table"):
        args = build_parser("get").parse_args(["-w", fmt, "get", "/a"])
        assert type(printer(args.write_out, io.StringIO())) is PRINTERS[fmt]
    with pytest.raises(SystemExit):
        build_parser("get").parse_args(["-w", "yaml", "get", "/a"])


def test_the_printer_is_chosen_by_format() -> None:
    out = io.StringIO()
    assert isinstance(printer("simple", out), SimplePrinter)
    assert isinstance(printer("table", out), TablePrinter)
    assert isinstance(printer("json", out), JsonPrinter)
    assert printer("json", out).out is out
    with pytest.raises(KeyError):
        printer("yaml", out)


@pytest.mark.parametrize("fmt", ["simple", "table"])
def test_backup_facts_as_text(fmt: str) -> None:
    out = io.StringIO()
    printer(fmt, out).backup(INFO)
    assert out.getvalue() == f"revision 42, bytes 1234, sha256 {'ab' * 32}, keys 7\n"


def test_backup_facts_as_json() -> None:
    out = io.StringIO()
    printer("json", out).backup(INFO)
    expected = {"revision": 42, "bytes": 1234, "sha256": "ab" * 32, "keys": 7}
    assert out.getvalue() == json.dumps(expected) + "\n"


def test_every_printer_has_every_method_of_the_interface() -> None:
    """Each format implements the whole interface (the ABC also refuses to build one that
    does not)."""
    methods = [
        name
        for name, value in vars(Printer).items()
        if callable(value) and not name.startswith("_")
    ]
    assert "get" in methods and "backup" in methods
    for cls in PRINTERS.values():
        missing = [m for m in methods if getattr(cls, m) is getattr(Printer, m)]
        assert missing == [], f"{cls.__name__} lacks {missing}"
