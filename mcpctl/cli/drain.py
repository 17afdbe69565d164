"""``mcpctl drain MODEL ID`` / ``mcpctl undrain MODEL ID`` (docs/fleet.md).

Draining sets ``draining`` in the instance's operator state
(``/mcp/operator/instances/<model>/<id>``): pickers stop sending it new
requests at once; the instance stays registered. The state has no lease, so
it survives the instance re-registering. Undrain clears it.
"""

from __future__ import annotations

import argparse
from typing import Any


def register(sub: Any, parent: argparse.ArgumentParser) -> None:
    for name, draining, what in (
        ("drain", True, "stop sending new requests to an instance"),
        ("undrain", False, "let a drained instance take requests again"),
    ):
        p = sub.add_parser(name, parents=[parent], help=what)
        p.add_argument("model", metavar="MODEL")
        p.add_argument("id", metavar="ID", help="the instance id (see mcpctl instances)")
        p.set_defaults(run=run, draining=draining)


def run(args: argparse.Namespace) -> int:
    from mcpctl.cli import connect
    from mcpctl.cli.exitcodes import Exit
    from mcpctl.cli.output import printer
    from mcpctl.fleet.operator import set_operator

    with connect.client(args) as client:
        state, revision = set_operator(client, args.model, args.id, draining=args.draining)
    printer(args.write_out).operator(args.model, args.id, state.model_dump(), revision)
    return int(Exit.OK)
