#!/usr/bin/env bash
# Builds the orgplane container image with no registry and no base image: static binaries of
# `orgplane` and `orgctl` in a minimal root filesystem, given to `docker import`.
#
#   deploy/build-image.sh [--tag NAME:TAG] [--skip-build] [--force]
#
# The image holds /usr/local/bin/{orgplane,orgctl}, /etc/passwd and /etc/group with the user
# orgplane (uid/gid 10001), /etc/nsswitch.conf, /tmp, and /var/lib/orgplane (the data volume,
# owned by 10001). It runs as 10001 and has no shell: run `orgplane ...` or `orgctl ...`.
#
# Idempotent: the image is labelled with a hash of the binaries and of this script; when an
# image with that tag and hash exists, nothing is imported (--force imports anyway). Cargo
# rebuilds only what changed. Bounded: the build gets BUILD_TIMEOUT_S (default 3600) seconds,
# each docker command 300.
set -euo pipefail

TAG="${ORGPLANE_IMAGE:-orgplane:dev}"
SKIP_BUILD=0
FORCE=0
TARGET=x86_64-unknown-linux-gnu
APP_UID=10001
APP_GID=10001
BUILD_TIMEOUT_S="${BUILD_TIMEOUT_S:-3600}"
DOCKER_TIMEOUT_S=300

die() {
    echo "build-image: error: $*" >&2
    exit 1
}
say() { echo "build-image: $*" >&2; }

while [[ $# -gt 0 ]]; do
    case "$1" in
        --tag) [[ $# -ge 2 ]] || die "--tag needs a value"; TAG="$2"; shift 2 ;;
        --tag=*) TAG="${1#--tag=}"; shift ;;
        --skip-build) SKIP_BUILD=1; shift ;;
        --force) FORCE=1; shift ;;
        -h | --help) sed -n '2,15p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
        *) die "unknown argument $1 (try --help)" ;;
    esac
done

REPO_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
BIN_DIR="$REPO_ROOT/target/$TARGET/release"

for tool in docker cargo file ldd tar sha256sum timeout; do
    command -v "$tool" >/dev/null || die "$tool is not installed"
done
[[ "$(uname -m)" == x86_64 ]] || die "this script builds for $TARGET and needs an x86_64 host (found $(uname -m))"
timeout 20 docker info >/dev/null 2>&1 || die "cannot reach the Docker daemon (is it running, and may this user use it?)"

# 1. Static binaries. RUSTFLAGS with an explicit --target applies to the binaries only, not to
#    build scripts and proc macros, which stay dynamic host programs.
if [[ $SKIP_BUILD -eq 0 ]]; then
    say "building static binaries (cargo build --release --target $TARGET; up to ${BUILD_TIMEOUT_S}s)"
    started=$SECONDS
    (cd "$REPO_ROOT" && RUSTFLAGS='-C target-feature=+crt-static' timeout "$BUILD_TIMEOUT_S" \
        cargo build --release --target "$TARGET" -p orgplane -p orgctl) \
        || die "cargo build failed or took longer than ${BUILD_TIMEOUT_S}s (see above)"
    say "cargo build took $((SECONDS - started))s"
fi

for bin in orgplane orgctl; do
    path="$BIN_DIR/$bin"
    [[ -x "$path" ]] || die "$path is missing: build it, or drop --skip-build"
    # A binary that needs a dynamic loader or shared libraries cannot run in an empty rootfs.
    description="$(file -b "$path")"
    [[ "$description" == *"statically linked"* || "$description" == *"static-pie linked"* ]] \
        || die "$path is not statically linked: $description"
    if ldd "$path" 2>&1 | grep -q '=>'; then
        die "$path links shared libraries: $(ldd "$path" 2>&1 | tr '\n' ' ')"
    fi
done
VERSION="$("$BIN_DIR/orgplane" --version | awk '{print $2}')" || die "$BIN_DIR/orgplane does not run"

# 2. Up to date? The hash covers what goes into the image: the binaries and this recipe.
HASH="$(cat "$BIN_DIR/orgplane" "$BIN_DIR/orgctl" "${BASH_SOURCE[0]}" | sha256sum | cut -c1-32)"
existing="$(timeout "$DOCKER_TIMEOUT_S" docker image inspect --format '{{ index .Config.Labels "org.orgplane.build-hash" }}' "$TAG" 2>/dev/null || true)"
if [[ $FORCE -eq 0 && "$existing" == "$HASH" ]]; then
    say "$TAG is up to date (build hash $HASH)"
    exit 0
fi
old_id="$(timeout "$DOCKER_TIMEOUT_S" docker image inspect --format '{{.Id}}' "$TAG" 2>/dev/null || true)"

# 3. The root filesystem, as a tar with fixed owners, modes and times.
WORK="$(mktemp -d "${TMPDIR:-/tmp}/orgplane-image.XXXXXX")"
trap 'rm -rf "$WORK"' EXIT
ROOTFS="$WORK/rootfs"
mkdir -p "$ROOTFS/usr/local/bin" "$ROOTFS/etc" "$ROOTFS/tmp" "$ROOTFS/var/lib/orgplane"
for bin in orgplane orgctl; do
    cp "$BIN_DIR/$bin" "$ROOTFS/usr/local/bin/$bin"
    # The release profile keeps line tables for backtraces; the image does not need them (the
    # unstripped binaries stay in target/ for debugging).
    if command -v strip >/dev/null; then strip --strip-debug "$ROOTFS/usr/local/bin/$bin"; fi
    chmod 0755 "$ROOTFS/usr/local/bin/$bin"
done
cat >"$ROOTFS/etc/passwd" <<EOF
root:x:0:0:root:/root:/sbin/nologin
orgplane:x:$APP_UID:$APP_GID:orgplane:/var/lib/orgplane:/sbin/nologin
nobody:x:65534:65534:nobody:/nonexistent:/sbin/nologin
EOF
cat >"$ROOTFS/etc/group" <<EOF
root:x:0:
orgplane:x:$APP_GID:
nogroup:x:65534:
EOF
# Static glibc resolves names itself (files, then DNS); this makes the order explicit.
printf 'hosts: files dns\n' >"$ROOTFS/etc/nsswitch.conf"
chmod 0644 "$ROOTFS/etc/passwd" "$ROOTFS/etc/group" "$ROOTFS/etc/nsswitch.conf"
chmod 1777 "$ROOTFS/tmp"
chmod 0750 "$ROOTFS/var/lib/orgplane"

TAR="$WORK/rootfs.tar"
common=(--sort=name --mtime=@0 --numeric-owner --format=posix --pax-option=delete=atime --pax-option=delete=ctime)
# Everything belongs to root but the data directory, which belongs to the orgplane user (a new
# named volume copies this owner). Two passes, so this works without root.
tar -C "$ROOTFS" "${common[@]}" --owner=0 --group=0 --exclude=var/lib/orgplane -cf "$TAR" etc tmp usr var
tar -C "$ROOTFS" "${common[@]}" --owner="$APP_UID" --group="$APP_GID" -rf "$TAR" var/lib/orgplane

# 4. Import, with the image config docker import accepts as --change. No VOLUME: the router is
#    stateless and orgctl needs none, and an image VOLUME gives every container an anonymous
#    volume; nodes mount theirs explicitly (compose: a named volume; Kubernetes: a claim), and
#    a new named volume takes the owner of /var/lib/orgplane from the image. No EXPOSE either:
#    nodes and routers serve on the ports their flags name.
say "importing $TAG (orgplane $VERSION, build hash $HASH)"
timeout "$DOCKER_TIMEOUT_S" docker import \
    --change "USER $APP_UID:$APP_GID" \
    --change "WORKDIR /var/lib/orgplane" \
    --change "ENV PATH=/usr/local/bin" \
    --change 'CMD ["orgplane", "--help"]' \
    --change "LABEL org.opencontainers.image.title=orgplane org.opencontainers.image.version=$VERSION org.orgplane.build-hash=$HASH" \
    --message "orgplane $VERSION: static binaries in a minimal rootfs" \
    "$TAR" "$TAG" >/dev/null || die "docker import failed"

# 5. It runs, as the right user, and the old image (now untagged) goes.
ran="$(timeout "$DOCKER_TIMEOUT_S" docker run --rm --network none "$TAG" orgplane --version)" \
    || die "the image does not run: docker run --rm $TAG orgplane --version failed"
user="$(timeout "$DOCKER_TIMEOUT_S" docker image inspect --format '{{.Config.User}}' "$TAG")"
[[ "$user" == "$APP_UID:$APP_GID" ]] || die "the image runs as '$user', not $APP_UID:$APP_GID"
new_id="$(timeout "$DOCKER_TIMEOUT_S" docker image inspect --format '{{.Id}}' "$TAG")"
if [[ -n "$old_id" && "$old_id" != "$new_id" ]]; then
    timeout "$DOCKER_TIMEOUT_S" docker image rm "$old_id" >/dev/null 2>&1 || true
fi
size="$(timeout "$DOCKER_TIMEOUT_S" docker image inspect --format '{{.Size}}' "$TAG")"
say "built $TAG: $ran, user $user, $((size / 1024 / 1024)) MiB ($size bytes)"
