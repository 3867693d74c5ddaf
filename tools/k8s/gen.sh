#!/usr/bin/env bash
# Regenerates this wrapper module for one Kubernetes release.
# k8s.io/kubernetes requires its staging modules at v0.0.0 and maps them to ./staging with
# replace lines that a dependant never sees; we pin each staging module to the matching
# published v0.X.Y instead. The list is read from the release's own go.mod, never typed.
set -euo pipefail
K8S=${1:?usage: gen.sh v1.X.Y}
STG=v0.${K8S#v1.}
cd "$(dirname "$0")"
rm -f go.mod go.sum
go mod init gitsail.invalid/tools/k8s >/dev/null 2>&1
go mod edit -go=1.26 -require="k8s.io/kubernetes@$K8S"
GOMOD=$(go mod download -json "k8s.io/kubernetes@$K8S" | python3 -c 'import json,sys;print(json.load(sys.stdin)["GoMod"])')
for m in $(sed -n 's#^[[:space:]]*\(k8s\.io/[a-z0-9-]*\) => \./staging/src/.*#\1#p' "$GOMOD"); do
  go mod edit -replace="$m=$m@$STG"
done
# non-staging modules k/k is sensitive to: take k/k's exact versions
for m in k8s.io/kube-openapi sigs.k8s.io/structured-merge-diff/v6 k8s.io/utils; do
  v=$(awk -v m="$m" '$1==m {print $2; exit}' "$GOMOD")
  [ -n "$v" ] && go mod edit -require="$m@$v"
done
godebug=$(sed -n 's/^godebug[[:space:]]\+\(.*\)$/\1/p' "$GOMOD" | head -1)
[ -n "$godebug" ] && go mod edit -godebug="$godebug"
go get -tool "k8s.io/kubernetes/cmd/kube-apiserver@$K8S" \
  "k8s.io/kubernetes/cmd/kube-controller-manager@$K8S" \
  "k8s.io/kubernetes/cmd/kube-scheduler@$K8S" \
  "k8s.io/kubernetes/cmd/kubectl@$K8S"
go mod tidy
echo "wrapper pinned to k8s.io/kubernetes $K8S (staging $STG)"
