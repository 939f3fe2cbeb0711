#!/usr/bin/env bash
# End-to-end smoke test of the image and the compose deployment, on this Docker host:
#
#   deploy/smoke.sh [--rebuild] [--keep]
#
# 1. builds the image with deploy/build-image.sh unless orgplane:dev exists (--rebuild: always;
#    the build is incremental and the import is skipped when nothing changed);
# 2. starts deploy/compose.yaml as the project orgplane-smoke and waits (at most WAIT_TIMEOUT_S,
#    default 180 s) until all 12 containers are healthy;
# 3. with the host's static orgctl (target/x86_64-unknown-linux-gnu/release/orgctl), over TLS
#    (the CA from the `pki` volume) with the platform-admin token the `signing-key` service
#    printed, creates an org in each region through another region's router, reads each back
#    through a third, and checks `cluster status`: three regions, each with a leader and three
#    healthy nodes; a call without a token and a plaintext call are refused;
# 4. removes the deployment and its volumes (`down -v`), also on failure (--keep: leave it up).
#
# Uses `docker compose` (v2) when present, else `docker-compose` (v1, which lacks --wait, so
# health is polled here). Needs 127.0.0.1:50051-50053 free. Exit 0 means every check passed.
set -euo pipefail

PROJECT=orgplane-smoke
TAG="${ORGPLANE_IMAGE:-orgplane:dev}"
WAIT_TIMEOUT_S="${WAIT_TIMEOUT_S:-180}"
CALL_TIMEOUT_S=30
REBUILD=0
KEEP=0
DEPLOY_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
REPO_ROOT="$(cd "$DEPLOY_DIR/.." && pwd)"
ORGCTL="$REPO_ROOT/target/x86_64-unknown-linux-gnu/release/orgctl"
# Each region's org goes through another region's router; it is read back through a third.
declare -A ROUTER_PORT=([us]=50051 [eu]=50052 [apac]=50053)
declare -A CREATE_VIA=([us]=eu [eu]=apac [apac]=us)
declare -A READ_VIA=([us]=apac [eu]=us [apac]=eu)
# The long-running services (the one-shot pki and signing-key exit once done).
SERVICES=(us-1 us-2 us-3 eu-1 eu-2 eu-3 apac-1 apac-2 apac-3 router-us router-eu router-apac)
WORK="$(mktemp -d)"

die() {
    echo "smoke: FAILED: $*" >&2
    exit 1
}
say() { echo "smoke: $*" >&2; }

while [[ $# -gt 0 ]]; do
    case "$1" in
        --rebuild) REBUILD=1; shift ;;
        --keep) KEEP=1; shift ;;
        -h | --help) sed -n '2,18p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
        *) die "unknown argument $1 (try --help)" ;;
    esac
done

for tool in docker jq timeout; do
    command -v "$tool" >/dev/null || die "$tool is not installed"
done
if docker compose version >/dev/null 2>&1; then
    COMPOSE=(docker compose -p "$PROJECT" -f "$DEPLOY_DIR/compose.yaml")
    COMPOSE_V2=1
elif command -v docker-compose >/dev/null; then
    COMPOSE=(docker-compose -p "$PROJECT" -f "$DEPLOY_DIR/compose.yaml")
    COMPOSE_V2=0
else
    die "neither 'docker compose' nor 'docker-compose' is installed"
fi
timeout 20 docker info >/dev/null 2>&1 || die "cannot reach the Docker daemon"

# 1. The image.
started=$SECONDS
# The image and the host's orgctl come from the same build, so a missing orgctl (a fresh clone
# on a machine that already has the image) rebuilds too.
if [[ $REBUILD -eq 1 ]] || [[ ! -x "$ORGCTL" ]] || ! docker image inspect "$TAG" >/dev/null 2>&1; then
    ORGPLANE_IMAGE="$TAG" "$DEPLOY_DIR/build-image.sh" || die "the image did not build"
else
    say "using the existing image $TAG (--rebuild to rebuild it)"
fi
[[ -x "$ORGCTL" ]] || die "$ORGCTL is missing: run deploy/build-image.sh (it builds orgctl too)"
say "image ready after $((SECONDS - started))s"

for port in "${ROUTER_PORT[@]}"; do
    if (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then
        die "127.0.0.1:$port is already in use (another orgplane? 'docker ps', or stop 'orgplane dev')"
    fi
done

cleanup() {
    local status=$?
    if [[ $status -ne 0 ]]; then
        say "state at failure:"
        "${COMPOSE[@]}" ps >&2 || true
        "${COMPOSE[@]}" logs --tail=20 >&2 || true
    fi
    if [[ $KEEP -eq 1 ]]; then
        say "left running (--keep): ${COMPOSE[*]} down -v"
    else
        say "removing the deployment and its volumes"
        timeout 120 "${COMPOSE[@]}" down -v --timeout 10 >/dev/null 2>&1 || say "down -v failed: remove project $PROJECT by hand"
    fi
    rm -rf "$WORK"
    exit "$status"
}
trap cleanup EXIT

# 2. Up, and healthy.
started=$SECONDS
if [[ $COMPOSE_V2 -eq 1 ]]; then
    timeout $((WAIT_TIMEOUT_S + 30)) "${COMPOSE[@]}" up -d --wait --wait-timeout "$WAIT_TIMEOUT_S" \
        || die "the deployment did not become healthy within ${WAIT_TIMEOUT_S}s"
else
    timeout 120 "${COMPOSE[@]}" up -d || die "compose up failed"
    while :; do
        mapfile -t ids < <("${COMPOSE[@]}" ps -q "${SERVICES[@]}")
        [[ ${#ids[@]} -eq 12 ]] || die "expected 12 containers, compose started ${#ids[@]}"
        unhealthy="$(docker inspect --format '{{.Name}} {{.State.Health.Status}}' "${ids[@]}" | grep -v ' healthy$' || true)"
        [[ -z "$unhealthy" ]] && break
        if [[ $((SECONDS - started)) -ge $WAIT_TIMEOUT_S ]]; then
            die "not healthy within ${WAIT_TIMEOUT_S}s: $(echo "$unhealthy" | tr '\n' ';')"
        fi
        sleep 1
    done
fi
say "12 containers healthy after $((SECONDS - started))s"

# The CA (mutual TLS inside, TLS to the routers) and a platform-admin token, from the one-shot
# services' volume and output.
docker cp "$("${COMPOSE[@]}" ps -q pki):/var/lib/orgplane/ca.pem" "$WORK/ca.pem" >/dev/null \
    || die "cannot copy ca.pem out of the pki volume"
TOKEN="$(docker logs "$("${COMPOSE[@]}" ps -q signing-key)" 2>/dev/null | tail -n 1)"
[[ "$TOKEN" == *.*.* ]] || die "the signing-key service printed no token"

orgctl() {
    local via=$1
    shift
    timeout "$CALL_TIMEOUT_S" "$ORGCTL" --endpoint "127.0.0.1:${ROUTER_PORT[$via]}" --ca-file "$WORK/ca.pem" \
        --token "$TOKEN" --output json "$@"
}

# Refused: no token (UNAUTHENTICATED), and plaintext to a TLS router.
if out="$(timeout "$CALL_TIMEOUT_S" "$ORGCTL" --endpoint 127.0.0.1:50051 --ca-file "$WORK/ca.pem" org list --region eu 2>&1)"; then
    die "a call without a token was served: $out"
fi
[[ "$out" == *UNAUTHENTICATED* ]] || die "a call without a token failed otherwise: $out"
if out="$(timeout "$CALL_TIMEOUT_S" "$ORGCTL" --endpoint 127.0.0.1:50051 --token "$TOKEN" --timeout 5 org list --region eu 2>&1)"; then
    die "a plaintext call was served: $out"
fi
say "refused: a call without a token, and a plaintext call"

# 3. An org in each region, created through another region's router and read through a third.
for region in us eu apac; do
    name="smoke-$region-$$"
    created="$(orgctl "${CREATE_VIA[$region]}" org create --region "$region" --name "$name")" \
        || die "org create --region $region via router-${CREATE_VIA[$region]} failed"
    id="$(jq -er '.org.id' <<<"$created")" || die "org create printed no org id: $created"
    [[ "$id" == "$region-"* ]] || die "org created in $region has id $id"
    read_back="$(orgctl "${READ_VIA[$region]}" org get "$id")" \
        || die "org get $id via router-${READ_VIA[$region]} failed"
    [[ "$(jq -r '.org.name' <<<"$read_back")" == "$name" ]] || die "org get $id returned $read_back"
    say "region $region: created $id via router-${CREATE_VIA[$region]}, read back via router-${READ_VIA[$region]}"
done

status="$(orgctl us cluster status)" || die "cluster status failed"
jq -e '
    (.regions | map(.region) | sort) == ["apac", "eu", "us"]
    and all(.regions[]; .leader_id > 0 and (.nodes | length) == 3 and all(.nodes[]; .healthy))
' <<<"$status" >/dev/null || die "cluster status is not 3 regions with a leader and 3 healthy nodes each: $status"
say "cluster status: $(jq -c '[.regions[] | {region, leader_id, term}]' <<<"$status")"

# Nothing runs as root (the nodes wrote to their volumes, so the volumes are theirs).
mapfile -t ids < <("${COMPOSE[@]}" ps -q)
[[ ${#ids[@]} -eq 14 ]] || die "expected 14 containers (12 and the two one-shots), found ${#ids[@]}"
for oneshot in pki signing-key; do
    code="$(docker inspect --format '{{.State.ExitCode}}' "$("${COMPOSE[@]}" ps -q "$oneshot")")"
    [[ "$code" == 0 ]] || die "$oneshot exited with $code"
done
users="$(docker inspect --format '{{.Config.User}}' "${ids[@]}" | sort -u)"
[[ "$users" == "10001:10001" ]] || die "containers run as: $users"
say "PASSED"
