#!/usr/bin/env bash
# Regenerates this wrapper for the etcd server version that the k8s wrapper pins.
# etcd's server/go.mod has replace directives, so `go install ...@version` is refused;
# a separate module keeps etcd's dependency versions from moving kube-apiserver's.
set -euo pipefail
cd "$(dirname "$0")"
ETCD=${1:-$(cd ../k8s && go list -m -f '{{.Version}}' go.etcd.io/etcd/client/v3)}
rm -f go.mod go.sum
go mod init gitsail.invalid/tools/etcd >/dev/null 2>&1
go mod edit -go=1.26
go get -tool "go.etcd.io/etcd/server/v3@$ETCD"
go mod tidy
echo "wrapper pinned to etcd $ETCD"
