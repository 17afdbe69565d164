"""``etcdserverpb.Cluster.MemberList``, ``Maintenance.Status``/``Alarm`` and
``Auth.Authenticate``: enough for ``etcdctl member list``, ``endpoint status``,
``endpoint health`` and ``--user``.

Member ids are etcd-style 64-bit ids derived from the cluster id and the
member's name (``convert.member_id``), the same in headers, MemberList and
Status.leader. Authenticate maps etcd's user/password onto our tokens: the
password is an mcp-config token, the user its name (or empty); the answer's
token is that same token, which etcd clients then send as ``token`` metadata.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from mcpctl._proto.etcd.etcdserverpb import rpc_pb2 as rpc
from mcpctl.errors import McpError
from mcpctl.raft.status import Role
from mcpctl.server.errors import rpc as rpc_method
from mcpctl.server.etcd.convert import header, member_id
from mcpctl.server.etcd.errors import AUTH_FAILED, AUTH_NOT_ENABLED, error, unimplemented
from mcpctl.server.etcd.kv import etcd_errors
from mcpctl.server.node import Node
from mcpctl.state import Store

if TYPE_CHECKING:
    from mcpctl.server.etcd.guard import EtcdGuard
    from mcpctl.server.etcd.metrics import EtcdMetrics

CLUSTER = rpc.DESCRIPTOR.services_by_name["Cluster"]
MAINTENANCE = rpc.DESCRIPTOR.services_by_name["Maintenance"]
AUTH = rpc.DESCRIPTOR.services_by_name["Auth"]
# The etcd API version mcp-config answers in Status.version (etcdctl prints it;
# clients use it to decide which features to use).
ETCD_API_VERSION = "3.4.0"


def _url(address: str, tls: bool) -> list[str]:
    return [f"{'https' if tls else 'http'}://{address}"] if address else []


class ClusterServicer:
    def __init__(
        self,
        node: Node,
        metrics: EtcdMetrics | None = None,
        guard: EtcdGuard | None = None,
        *,
        tls: bool = False,
    ) -> None:
        self._node = node
        self.metrics = metrics
        self.guard = guard
        self._tls = tls

    @rpc_method
    @etcd_errors
    async def MemberList(
        self, request: rpc.MemberListRequest, timeout_s: float
    ) -> rpc.MemberListResponse:
        node = self._node
        if request.linearizable:
            await node.proposer.fence(timeout_s)
        cluster_id = node.identity.cluster_id
        return rpc.MemberListResponse(
            header=header(node.header()),
            members=[
                rpc.Member(
                    ID=member_id(cluster_id, m.name),
                    name=m.name,
                    peerURLs=_url(m.raft, False),
                    clientURLs=_url(m.client, self._tls),
                )
                for m in node.member_infos()
            ],
        )


class MaintenanceServicer:
    def __init__(
        self, node: Node, metrics: EtcdMetrics | None = None, guard: EtcdGuard | None = None
    ) -> None:
        self._node = node
        self.metrics = metrics
        self.guard = guard

    @rpc_method
    @etcd_errors
    async def Status(self, request: rpc.StatusRequest, timeout_s: float) -> rpc.StatusResponse:
        node = self._node
        st = node.raft.status

        def run(store: Store) -> tuple[int, int]:
            return store.revision, store.live_bytes

        revision, size = node.read(run)
        leader = node.peers.name_of(st.leader) if st.leader else ""
        if st.role == Role.LEADER:
            leader = node.identity.member_name
        return rpc.StatusResponse(
            header=header(node.header(revision)),
            version=ETCD_API_VERSION,
            dbSize=size,
            dbSizeInUse=size,
            leader=member_id(node.identity.cluster_id, leader) if leader else 0,
            raftIndex=st.commit_index,
            raftTerm=st.term,
            raftAppliedIndex=st.applied_index,
        )

    @rpc_method
    @etcd_errors
    async def Alarm(self, request: rpc.AlarmRequest, timeout_s: float) -> rpc.AlarmResponse:
        if request.action != rpc.AlarmRequest.GET:
            raise unimplemented("alarms are not kept (no space or corruption alarms); only GET")
        return rpc.AlarmResponse()  # etcd answers a GET without a header


class AuthServicer:
    # ``rpc`` authenticates through ``guard``; Authenticate is how a client gets
    # a token, so it is not guarded (it checks the password against the tokens).
    guard = None

    def __init__(
        self, node: Node, metrics: EtcdMetrics | None = None, guard: EtcdGuard | None = None
    ) -> None:
        self._node = node
        self.metrics = metrics
        self._guard = guard

    @rpc_method
    @etcd_errors
    async def Authenticate(
        self, request: rpc.AuthenticateRequest, timeout_s: float
    ) -> rpc.AuthenticateResponse:
        if self._guard is None or not self._guard.enabled:
            raise error(AUTH_NOT_ENABLED)
        try:
            identity = self._guard.guard.authenticate(
                (("authorization", "Bearer " + request.password),)
            )
        except McpError:
            raise error(AUTH_FAILED) from None
        if request.name and request.name != identity.name:
            raise error(AUTH_FAILED)
        return rpc.AuthenticateResponse(header=header(self._node.header()), token=request.password)
