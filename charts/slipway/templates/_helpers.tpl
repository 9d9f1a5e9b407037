{{/* The chart name, or nameOverride. */}}
{{- define "slipway.name" -}}
{{- .Chart.Name | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* Names of the release's objects: the release name, with the chart name unless it holds it. */}}
{{- define "slipway.fullname" -}}
{{- if contains .Chart.Name .Release.Name }}
{{- .Release.Name | trunc 63 | trimSuffix "-" }}
{{- else }}
{{- printf "%s-%s" .Release.Name .Chart.Name | trunc 63 | trimSuffix "-" }}
{{- end }}
{{- end }}

{{- define "slipway.selectorLabels" -}}
app.kubernetes.io/name: {{ include "slipway.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{- define "slipway.labels" -}}
{{ include "slipway.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/component: operator
app.kubernetes.io/part-of: slipway
app.kubernetes.io/managed-by: {{ .Release.Service }}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" }}
{{- end }}

{{- define "slipway.serviceAccountName" -}}
{{- default (include "slipway.fullname" .) .Values.serviceAccount.name }}
{{- end }}

{{/* repository:tag (tag defaults to appVersion), or repository@digest. */}}
{{- define "slipway.image" -}}
{{- if .Values.image.digest }}
{{- printf "%s@%s" .Values.image.repository .Values.image.digest }}
{{- else }}
{{- printf "%s:%s" .Values.image.repository (.Values.image.tag | default .Chart.AppVersion) }}
{{- end }}
{{- end }}

{{/* "true" when the operator watches only .Values.watchNamespaces (Roles instead of a ClusterRole). */}}
{{- define "slipway.namespaced" -}}
{{- if .Values.watchNamespaces }}true{{ end }}
{{- end }}

{{/* "true" when more than one operator pod runs: kopf peering decides which one is active. */}}
{{- define "slipway.peering" -}}
{{- if gt (int .Values.replicas) 1 }}true{{ end }}
{{- end }}

{{/*
The rules the operator needs in every namespace it serves: exact resources and verbs, no "*".
*/}}
{{- define "slipway.namespacedRules" -}}
# The ModelDeployments it reconciles; patch/update for kopf's status bookkeeping and the
# action annotations it consumes (the scale subresource is the HPA controller's, not ours).
- apiGroups: [serving.slipway.dev]
  resources: [modeldeployments]
  verbs: [get, list, watch, patch, update]
- apiGroups: [serving.slipway.dev]
  resources: [modeldeployments/status]
  verbs: [get, patch, update]
# The children it owns: one Deployment per revision, the Services, the autoscaler.
- apiGroups: [apps]
  resources: [deployments]
  verbs: [get, list, watch, create, patch, update, delete]
- apiGroups: [""]
  resources: [services]
  verbs: [get, list, watch, create, patch, update, delete]
- apiGroups: [autoscaling]
  resources: [horizontalpodautoscalers]
  verbs: [get, list, watch, create, patch, update, delete]
# Read-only: pods to see crash loops and missing secrets, claims to check a pvc:// model exists.
- apiGroups: [""]
  resources: [pods, persistentvolumeclaims]
  verbs: [get, list, watch]
# The weights of a user's HTTPRoute (Gateway API); Slipway never creates or deletes routes.
- apiGroups: [gateway.networking.k8s.io]
  resources: [httproutes]
  verbs: [get, list, watch, patch, update]
# Events about what it did (kopf posts core/v1 events).
- apiGroups: [""]
  resources: [events]
  verbs: [create, patch]
- apiGroups: [events.k8s.io]
  resources: [events]
  verbs: [create, patch]
{{- end }}

{{/* kopf peering: read the peers, patch our own heartbeat into the peering object. */}}
{{- define "slipway.peeringRule" -}}
# kopf peering: which operator pod is active (a heartbeat with a priority per pod).
- apiGroups: [kopf.dev]
  resources: [{{ . }}]
  verbs: [get, list, watch, patch]
{{- end }}

{{/* kopf discovers and watches CRDs cluster-wide in every mode (only a ClusterRole can grant it). */}}
{{- define "slipway.crdRule" -}}
# kopf discovers the ModelDeployment resource and notices CRD changes.
- apiGroups: [apiextensions.k8s.io]
  resources: [customresourcedefinitions]
  verbs: [get, list, watch]
{{- end }}
