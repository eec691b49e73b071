{{- define "schema-gate.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "schema-gate.fullname" -}}
{{- if .Values.fullnameOverride }}
{{- .Values.fullnameOverride | trunc 63 | trimSuffix "-" }}
{{- else }}
{{- $name := default .Chart.Name .Values.nameOverride }}
{{- if contains $name .Release.Name }}
{{- .Release.Name | trunc 63 | trimSuffix "-" }}
{{- else }}
{{- printf "%s-%s" .Release.Name $name | trunc 63 | trimSuffix "-" }}
{{- end }}
{{- end }}
{{- end }}

{{- define "schema-gate.selectorLabels" -}}
app.kubernetes.io/name: {{ include "schema-gate.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{- define "schema-gate.labels" -}}
{{ include "schema-gate.selectorLabels" . }}
app.kubernetes.io/version: {{ .Values.image.tag | default .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "schema-gate.serviceAccountName" -}}
{{- default (include "schema-gate.fullname" .) .Values.serviceAccount.name }}
{{- end }}

{{/* The username the apiserver gives the gate's own requests; the webhooks let them through. */}}
{{- define "schema-gate.username" -}}
system:serviceaccount:{{ .Release.Namespace }}:{{ include "schema-gate.serviceAccountName" . }}
{{- end }}

{{- define "schema-gate.tlsSecretName" -}}
{{- default (printf "%s-tls" (include "schema-gate.fullname" .)) .Values.certificates.secretName }}
{{- end }}

{{- define "schema-gate.certificateName" -}}
{{- include "schema-gate.fullname" . }}
{{- end }}

{{/* DNS names of the Service, which the serving certificate must carry. */}}
{{- define "schema-gate.dnsNames" -}}
{{- $svc := include "schema-gate.fullname" . }}
{{- list $svc (printf "%s.%s" $svc .Release.Namespace) (printf "%s.%s.svc" $svc .Release.Namespace) (printf "%s.%s.svc.cluster.local" $svc .Release.Namespace) | toJson }}
{{- end }}

{{/* Namespaces no webhook is called for. */}}
{{- define "schema-gate.excludedNamespaces" -}}
{{- concat (list "kube-system" .Release.Namespace) .Values.excludeNamespaces | uniq | toJson }}
{{- end }}

{{/* What values.schema.json cannot say well. */}}
{{- define "schema-gate.validateValues" -}}
{{- if and (not .Values.serviceAccount.create) (not .Values.serviceAccount.name) }}
{{- fail "serviceAccount.name is required when serviceAccount.create is false: the webhooks must know the gate's own account" }}
{{- end }}
{{- if and .Values.networkPolicy.enabled (not .Values.networkPolicy.apiServer.cidrs) }}
{{- fail "networkPolicy.apiServer.cidrs is required with networkPolicy.enabled: the apiserver's addresses are cluster-specific; `kubectl get endpointslices -n default -l kubernetes.io/service-name=kubernetes` shows them, e.g. --set networkPolicy.apiServer.cidrs={10.0.0.10/32}" }}
{{- end }}
{{- end }}

{{/* How Prometheus checks the gate's certificate when it scrapes /metrics over HTTPS. */}}
{{- define "schema-gate.scrapeTlsConfig" -}}
{{- if .Values.metrics.tlsConfig }}
{{- toYaml .Values.metrics.tlsConfig }}
{{- else }}
ca:
  secret:
    name: {{ include "schema-gate.tlsSecretName" . }}
    key: ca.crt
serverName: {{ include "schema-gate.fullname" . }}.{{ .Release.Namespace }}.svc
{{- end }}
{{- end }}

{{/* A RoleBinding of the workloads ClusterRole in one application namespace (with "namespace"; without, for `kubectl apply -n`). */}}
{{- define "schema-gate.workloadsBinding" -}}
apiVersion: rbac.authorization.k8s.io/v1
kind: RoleBinding
metadata:
  name: {{ include "schema-gate.fullname" .root }}
  {{- with .namespace }}
  namespace: {{ . }}
  {{- end }}
  labels:
    {{- include "schema-gate.labels" .root | nindent 4 }}
roleRef:
  apiGroup: rbac.authorization.k8s.io
  kind: ClusterRole
  name: {{ include "schema-gate.fullname" .root }}-workloads
subjects:
  - kind: ServiceAccount
    name: {{ include "schema-gate.serviceAccountName" .root }}
    namespace: {{ .root.Release.Namespace }}
{{- end }}
