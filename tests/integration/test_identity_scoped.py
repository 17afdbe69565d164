"""Identity-scoped behaviour on a real 3-node cluster with auth on (issue #19):
request ids belong to the identity that sent them, and the audit and refusal
log lines say truthfully who did what."""

from __future__ import annotations

import hashlib
import json
import uuid
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from mcpctl._proto.mcp.v1 import kv_pb2 as kv
from mcpctl.client import Client
from mcpctl.errors import InvalidArgument, PermissionDenied
from tests.cluster import Cluster, wait_for

pytestmark = pytest.mark.cluster

ADMIN_TOKEN = "identity-admin-token-0123456789"
OTHER_TOKEN = "identity-other-token-0123456789"


def sha(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    """Auth on: `admin` may do anything, `otherteam` may write under /other/ only."""
    auth = {
        "enabled": True,
        "roles": [{"name": "other", "permissions": [{"prefix": "/other/", "access": "write"}]}],
        "tokens": [
            {"name": "admin", "role": "admin", "sha256": sha(ADMIN_TOKEN)},
            {"name": "otherteam", "role": "other", "sha256": sha(OTHER_TOKEN)},
        ],
    }
    c = Cluster(tmp_path_factory.mktemp("identity"), extra_config={"auth": auth})
    try:
        for node in c.nodes:
            c.start(node)

        def ready() -> bool:
            with client(c, ADMIN_TOKEN) as sdk:
                sdk.get("/", prefix=True, count_only=True)
            return True

        wait_for("the cluster to serve", ready)
        yield c
    finally:
        c.close()


def client(cluster: Cluster, token: str) -> Client:
    return Client(cluster.endpoints, token=token, timeout=10.0, attempts_max=3)


def log_lines(cluster: Cluster, match: Callable[[dict[str, Any]], bool]) -> list[dict[str, Any]]:
    """Every node's JSON log lines for which ``match`` holds."""
    out = []
    for node in cluster.nodes:
        for line in node.log_text().splitlines():
            try:
                obj = json.loads(line)
            except ValueError:
                continue
            if isinstance(obj, dict) and match(obj):
                out.append(obj)
    return out


def test_one_request_id_from_two_identities_is_two_writes(cluster: Cluster) -> None:
    """With one request id, admin's put and otherteam's put and delete are all
    applied, each at its own revision: an id from one client never swallows
    another client's write, nor tells it the first write's revision."""
    rid = f"shared-{uuid.uuid4().hex[:8]}"
    with client(cluster, ADMIN_TOKEN) as admin, client(cluster, OTHER_TOKEN) as other:
        secret = admin.put("/secret/rid", "s", request_id=rid)
        theirs = other.put("/other/rid", "o", request_id=rid)
        assert theirs.revision > secret.revision
        got = admin.get("/other/rid").first
        assert got is not None and got.text == "o" and got.mod_revision == theirs.revision

        rid2 = f"shared-{uuid.uuid4().hex[:8]}"
        admin.put("/secret/gone", "x")
        first_delete = admin.delete("/secret/gone", request_id=rid2)
        assert first_delete.deleted == 1
        their_delete = other.delete("/other/rid", request_id=rid2)
        assert their_delete.deleted == 1
        assert their_delete.header.revision > first_delete.header.revision
        assert admin.get("/other/rid").count == 0


def test_a_retry_is_deduplicated_and_another_request_under_its_id_is_refused(
    cluster: Cluster,
) -> None:
    """The same identity retrying the same put gets the first revision back; reusing
    the id for another value, key or operation is INVALID_ARGUMENT and writes nothing."""
    rid = f"retry-{uuid.uuid4().hex[:8]}"
    with client(cluster, OTHER_TOKEN) as other:
        first = other.put("/other/retry", "v1", request_id=rid)
        assert other.put("/other/retry", "v1", request_id=rid).revision == first.revision
        with pytest.raises(InvalidArgument, match="already used for a different request"):
            other.put("/other/retry", "v2", request_id=rid)
        with pytest.raises(InvalidArgument, match="already used for a different request"):
            other.put("/other/elsewhere", "v1", request_id=rid)
        with pytest.raises(InvalidArgument, match="already used for a different request"):
            other.delete("/other/retry", request_id=rid)
        got = other.get("/other/", prefix=True)
        assert [(k.key, k.text, k.mod_revision) for k in got.kvs] == [
            ("/other/retry", "v1", first.revision)
        ]


def test_read_only_txn_is_audited_as_a_read_with_its_keys(cluster: Cluster) -> None:
    """A txn of compares and reads only is a `read` audit line naming its keys, not a
    `write` without keys; a txn that writes names the keys of the branch it took."""
    ro_id, rw_id = f"ro-{uuid.uuid4().hex[:8]}", f"rw-{uuid.uuid4().hex[:8]}"
    with client(cluster, ADMIN_TOKEN) as admin:
        admin.txn(
            compare=[kv.Compare(key=b"/audit/cmp", target=kv.Compare.VERSION, version=0)],
            success=[kv.RequestOp(request_range=kv.RangeRequest(key=b"/audit/read"))],
            request_id=ro_id,
        )
        written = admin.txn(
            compare=[kv.Compare(key=b"/audit/cmp", target=kv.Compare.VERSION, version=0)],
            success=[kv.RequestOp(request_put=kv.PutRequest(key=b"/audit/yes", value=b"1"))],
            failure=[kv.RequestOp(request_put=kv.PutRequest(key=b"/audit/no", value=b"1"))],
            request_id=rw_id,
        )
        assert written.succeeded

    def audit(rid: str) -> list[dict[str, Any]]:
        return log_lines(
            cluster, lambda o: o.get("logger") == "mcpctl.audit" and o.get("request_id") == rid
        )

    read_lines = wait_for("the read-only txn's audit line", lambda: audit(ro_id) or None)
    assert [(o["event"], o["op"], o["identity"], o["keys"]) for o in read_lines] == [
        ("read", "txn", "admin", ["/audit/cmp", "/audit/read"])
    ]
    write_lines = wait_for("the txn's audit line", lambda: audit(rw_id) or None)
    assert [(o["event"], o["keys"], o["compared"], o["succeeded"]) for o in write_lines] == [
        ("write", ["/audit/yes"], ["/audit/cmp"], True)
    ]
    assert write_lines[0]["revision"] == written.header.revision


def test_permission_denied_lines_name_the_identity(cluster: Cluster) -> None:
    """A refused request's log line says who was refused (and for which method)."""
    key = f"/secret/denied-{uuid.uuid4().hex[:8]}"
    with client(cluster, OTHER_TOKEN) as other, pytest.raises(PermissionDenied):
        other.put(key, "x")

    def denied() -> list[dict[str, Any]] | None:
        return (
            log_lines(
                cluster,
                lambda o: o.get("code") == "PERMISSION_DENIED" and o.get("method") == "Put",
            )
            or None
        )

    lines = wait_for("the PERMISSION_DENIED line", denied)
    assert all(o.get("identity") == "otherteam" for o in lines), lines
