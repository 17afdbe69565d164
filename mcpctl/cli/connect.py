"""The one place where CLI flags become an SDK ``Client``."""

from __future__ import annotations

import argparse
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from mcpctl.client import Client


def client(args: argparse.Namespace, *, timeout: float | None = None) -> Client:
    from mcpctl.client import Client

    return Client(
        args.endpoints,
        timeout=args.timeout if timeout is None else timeout,
        token=args.token,
        cacert=args.tls_cacert,
        cert=args.tls_cert,
        key=args.tls_key,
    )
