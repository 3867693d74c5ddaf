#!/usr/bin/env bash
# Regenerates a one-tool wrapper module: tools/<dir> pins <pkg>@<version> with a `tool` line,
# so its go.sum is committed and the build never resolves versions again.
set -euo pipefail
DIR=${1:?dir} PKG=${2:?package} VER=${3:?version}
cd "$(dirname "$0")/$DIR"
rm -f go.mod go.sum
go mod init "gitsail.invalid/tools/$DIR" >/dev/null 2>&1
go mod edit -go=1.26
go get -tool "$PKG@$VER"
go mod tidy
echo "wrapper $DIR pinned to $PKG $VER"
