{{/* Labels: the ones `gitsail install` writes, then Helm's. */}}
{{- define "gitsail.labels" -}}
app.kubernetes.io/name: {{ .name }}
app.kubernetes.io/part-of: gitsail
app.kubernetes.io/instance: {{ .root.Release.Name }}
app.kubernetes.io/managed-by: {{ .root.Release.Service }}
app.kubernetes.io/version: {{ .root.Chart.AppVersion | quote }}
helm.sh/chart: {{ printf "%s-%s" .root.Chart.Name .root.Chart.Version }}
{{- end -}}

{{- define "gitsail.image" -}}
{{- if .Values.image.digest -}}
{{ .Values.image.repository }}@{{ .Values.image.digest }}
{{- else -}}
{{ .Values.image.repository }}:{{ .Values.image.tag | default .Chart.AppVersion }}
{{- end -}}
{{- end -}}

{{/* The pod shape of every gitsail component (app/install.py `_pod_spec`). */}}
{{- define "gitsail.podSecurityContext" -}}
runAsNonRoot: true
runAsUser: 65532
runAsGroup: 65532
fsGroup: 65532
seccompProfile:
  type: RuntimeDefault
{{- end -}}

{{- define "gitsail.containerSecurityContext" -}}
runAsNonRoot: true
readOnlyRootFilesystem: true
allowPrivilegeEscalation: false
capabilities:
  drop:
    - ALL
{{- end -}}

{{/* The API groups of gitsail's own kinds (app/install_rbac.py OWN_GROUPS). */}}
{{- define "gitsail.ownGroups" -}}
- argoproj.io
- source.toolkit.fluxcd.io
- kustomize.toolkit.fluxcd.io
- helm.toolkit.fluxcd.io
- notification.toolkit.fluxcd.io
- image.toolkit.fluxcd.io
- bitnami.com
- external-secrets.io
- generators.external-secrets.io
{{- end -}}

{{/* A ClusterRoleBinding of the ClusterRole `name` to the ServiceAccount `sa` of `ns`. */}}
{{- define "gitsail.clusterRoleBinding" }}
apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRoleBinding
metadata:
  name: {{ .name }}
  labels:
    {{- .labels | nindent 4 }}
roleRef:
  apiGroup: rbac.authorization.k8s.io
  kind: ClusterRole
  name: {{ .name }}
subjects:
  - kind: ServiceAccount
    name: {{ .sa }}
    namespace: {{ .ns }}
{{- end }}

{{/* A RoleBinding in `at` of the ClusterRole `role` to the ServiceAccount `sa` of `ns`. */}}
{{- define "gitsail.roleBinding" }}
apiVersion: rbac.authorization.k8s.io/v1
kind: RoleBinding
metadata:
  name: {{ .name }}
  namespace: {{ .at }}
  labels:
    {{- .labels | nindent 4 }}
roleRef:
  apiGroup: rbac.authorization.k8s.io
  kind: ClusterRole
  name: {{ .role }}
subjects:
  - kind: ServiceAccount
    name: {{ .sa }}
    namespace: {{ .ns }}
{{- end }}
