#!/usr/bin/env bash
# Build the gitsail container image without a container runtime: mmdebstrap (a minimal
# Debian rootfs), pip (the wheel and its pinned dependencies), the pinned helm/kustomize/
# jsonnet builds, one layer tarred reproducibly and added by umoci to an OCI layout.
#
#   packaging/image/build.sh WHEELHOUSE OUT_DIR
#
# WHEELHOUSE holds the gitsail wheel and the wheels of its pinned dependencies (`make
# wheelhouse`). OUT_DIR/oci is the OCI layout (tag gitsail:<version>), OUT_DIR/rootfs the
# tree it was made of, OUT_DIR/digest the manifest digest. Same inputs (this commit, the
# Debian archive's package versions, the wheels, the tool builds) give the same digest:
# every time stamp is SOURCE_DATE_EPOCH (default: the commit's time), the tar is sorted,
# owners numeric, .pyc files hash-based.
set -euo pipefail

here="$(cd "$(dirname "$0")" && pwd)"
repo="$(cd "$here/../.." && pwd)"
wheelhouse="$(cd "$1" && pwd)"
out="$2"
py="${PYTHON:-$repo/.venv/bin/python}"
suite="${DEBIAN_SUITE:-bookworm}"
mirror="${DEBIAN_MIRROR:-}"
export SOURCE_DATE_EPOCH="${SOURCE_DATE_EPOCH:-$(git -C "$repo" log -1 --format=%ct)}"
export LC_ALL=C TZ=UTC
uid=65532

version="$("$py" -c 'import gitsail; print(gitsail.__version__)')"
revision="$(git -C "$repo" rev-parse HEAD)"
created="$(date -u -d "@$SOURCE_DATE_EPOCH" +%Y-%m-%dT%H:%M:%SZ)"
packages="$(grep -v '^#' "$here/packages.txt" | grep . | paste -sd, -)"

mkdir -p "$out"
out="$(cd "$out" && pwd)"
rootfs="$out/rootfs"
rm -rf "$rootfs" "$out/oci" "$out/layer.tar" "$out/digest"

step() { printf '%s %s\n' "$(date -u +%H:%M:%S)" "$*" >&2; }

step "rootfs: Debian $suite + $packages"
# essential: dpkg and the Essential:yes set, no apt; documentation and locales left out.
mmdebstrap --quiet --mode=root --variant=essential --include="$packages" \
  --dpkgopt='path-exclude=/usr/share/doc/*' --dpkgopt='path-include=/usr/share/doc/*/copyright' \
  --dpkgopt='path-exclude=/usr/share/man/*' --dpkgopt='path-exclude=/usr/share/info/*' \
  --dpkgopt='path-exclude=/usr/share/locale/*' \
  "$suite" "$rootfs" ${mirror:+"$mirror"}

step "python: gitsail and its pinned dependencies"
site="$rootfs/usr/local/lib/python3.11/dist-packages"
"$py" -m pip install --quiet --no-index --find-links "$wheelhouse" --no-compile \
  --target "$site" gitsail
rm -rf "$site/bin"  # console scripts with the build machine's interpreter in their #!
install -m 0755 "$here/gitsail-entrypoint" "$rootfs/usr/local/bin/gitsail"
# Debian's interpreter (3.11.x) must be the one the wheels were chosen for.
test -x "$rootfs/usr/bin/python3.11" || { echo "rootfs has no python3.11" >&2; exit 1; }

step "tools: helm, kustomize, jsonnet (the pinned builds)"
"$py" - "$rootfs/usr/local/bin" <<'PYEOF'
import shutil, sys
from gitsail import toolchain
for name in toolchain.RELEASE_PINS:
    source = toolchain.find_binary(name)
    shutil.copyfile(source, f"{sys.argv[1]}/{name}")
PYEOF
chmod 0755 "$rootfs/usr/local/bin/helm" "$rootfs/usr/local/bin/kustomize" \
  "$rootfs/usr/local/bin/jsonnet"

step "user $uid, clean-up, byte code, time stamps"
echo "gitsail:x:$uid:$uid:gitsail:/home/gitsail:/usr/sbin/nologin" >> "$rootfs/etc/passwd"
echo "gitsail:x:$uid:" >> "$rootfs/etc/group"
echo "gitsail:*:0:0:99999:7:::" >> "$rootfs/etc/shadow"
install -d -m 0755 -o "$uid" -g "$uid" "$rootfs/home/gitsail"
install -d -m 1777 "$rootfs/tmp"
# Device nodes come from the runtime; files that only say when or where it was built go.
find "$rootfs/dev" -mindepth 1 -delete
rm -f "$rootfs/etc/apt/apt.conf.d/00mmdebstrap"
rm -rf "$rootfs"/var/log/* "$rootfs"/var/cache/* "$rootfs"/var/lib/apt/lists/* \
  "$rootfs"/var/lib/dpkg/*-old "$rootfs"/etc/machine-id "$rootfs"/etc/hostname \
  "$rootfs"/etc/resolv.conf "$rootfs"/var/cache/ldconfig/aux-cache
: > "$rootfs/etc/machine-id"
# Byte code: hash-based (no source time stamps) and never rewritten on a read-only root.
find "$rootfs/usr" -name __pycache__ -type d -prune -exec rm -rf {} +
"$py" -m compileall -q -j 1 -s "$rootfs" -p / --invalidation-mode unchecked-hash \
  "$rootfs/usr/lib/python3.11" "$rootfs/usr/lib/python3/dist-packages" "$site" >/dev/null
find "$rootfs" -xdev -newermt "@$SOURCE_DATE_EPOCH" -exec touch -h -d "@$SOURCE_DATE_EPOCH" {} +

step "layer and image"
tar --create --file "$out/layer.tar" --directory "$rootfs" --sort=name --numeric-owner \
  --format=posix --pax-option=exthdr.name=%d/PaxHeaders/%f,delete=atime,delete=ctime \
  --mtime="@$SOURCE_DATE_EPOCH" --clamp-mtime --xattrs --one-file-system .
image="$out/oci:$version"
umoci init --layout "$out/oci"
umoci new --image "$image"
umoci raw add-layer --image "$image" --history.created "$created" \
  --history.created_by "packaging/image/build.sh ($suite)" "$out/layer.tar"
umoci config --image "$image" --created "$created" --author "gitsail" \
  --history.created "$created" --history.created_by "umoci config" \
  --config.user "$uid:$uid" --config.workingdir /home/gitsail \
  --config.env "PATH=/usr/local/bin:/usr/bin:/bin" --config.env "HOME=/home/gitsail" \
  --config.env "PYTHONDONTWRITEBYTECODE=1" --config.env "PYTHONUNBUFFERED=1" \
  --config.entrypoint /usr/local/bin/gitsail --config.cmd controller \
  --config.exposedports 8080/tcp \
  --clear=config.labels \
  --config.label "org.opencontainers.image.title=gitsail" \
  --config.label "org.opencontainers.image.description=GitOps continuous delivery for Kubernetes" \
  --config.label "org.opencontainers.image.source=https://github.com/gitsail/gitsail" \
  --config.label "org.opencontainers.image.revision=$revision" \
  --config.label "org.opencontainers.image.version=$version" \
  --config.label "org.opencontainers.image.created=$created" \
  --config.label "org.opencontainers.image.licenses=Apache-2.0" \
  --config.label "org.opencontainers.image.base.name=debian:$suite" \
  --manifest.annotation "org.opencontainers.image.revision=$revision" \
  --manifest.annotation "org.opencontainers.image.version=$version"
umoci gc --layout "$out/oci"
rm -f "$out/layer.tar"

digest="$(umoci stat --image "$out/oci:$version" --json >/dev/null && \
  "$py" -c 'import json,sys; i=json.load(open(sys.argv[1]));
print(next(m["digest"] for m in i["manifests"]
  if m.get("annotations",{}).get("org.opencontainers.image.ref.name")==sys.argv[2]))' \
  "$out/oci/index.json" "$version")"
echo "$digest" > "$out/digest"
echo "$version" > "$out/version"
size="$(du -sb "$out/oci/blobs" | cut -f1)"
step "image gitsail:$version $digest ($((size / 1024 / 1024)) MiB compressed)"
echo "gitsail:$version $digest"
