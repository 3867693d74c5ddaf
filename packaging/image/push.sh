#!/usr/bin/env bash
# Push the image built by build.sh: packaging/image/push.sh OUT_DIR REGISTRY
# REGISTRY is host:port[/path]; loopback registries are spoken to over plain HTTP.
set -euo pipefail
out="$1"
registry="$2"
version="$(cat "$out/version" 2>/dev/null || true)"
[[ -n "$version" ]] || { echo "no image in $out; run make image" >&2; exit 1; }
tls=true
case "$registry" in
  127.0.0.1:*|localhost:*|127.0.0.1/*|localhost/*) tls=false ;;
esac
skopeo copy --quiet --dest-tls-verify="$tls" --preserve-digests \
  "oci:$out/oci:$version" "docker://$registry/gitsail:$version"
echo "pushed $registry/gitsail:$version $(cat "$out/digest")"
