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
# Exactly the requests slipway/kube.py and kopf's watches make (tests/e2e/test_rbac.py runs the
# operator with this identity). No `update`: every write is a PATCH (server-side apply included).
# The ModelDeployments it reconciles: kopf lists and watches them; patch consumes the action
# annotation (a JSON patch of metadata; RBAC cannot narrow it to metadata).
- apiGroups: [serving.slipway.dev]
  resources: [modeldeployments]
  verbs: [get, list, watch, patch]
- apiGroups: [serving.slipway.dev]
  resources: [modeldeployments/status]
  verbs: [patch]
# The children it owns: one Deployment per revision, the Services, the autoscaler. Server-side
# apply of an object that does not exist yet needs `create` besides `patch`.
- apiGroups: [apps]
  resources: [deployments]
  verbs: [list, watch, create, patch, delete]
- apiGroups: [""]
  resources: [services]
  verbs: [list, watch, create, patch, delete]
- apiGroups: [autoscaling]
  resources: [horizontalpodautoscalers]
  verbs: [list, watch, create, patch, delete]
# Read-only: pods to see crash loops and missing secrets, a claim to check a pvc:// model exists.
- apiGroups: [""]
  resources: [pods]
  verbs: [list, watch]
- apiGroups: [""]
  resources: [persistentvolumeclaims]
  verbs: [get]
# The weights of a user's HTTPRoute (Gateway API); Slipway never creates or deletes routes.
- apiGroups: [gateway.networking.k8s.io]
  resources: [httproutes]
  verbs: [get, patch]
# core/v1 Events about what it did (kopf's own event posting is off).
- apiGroups: [""]
  resources: [events]
  verbs: [create]
{{- if .Values.podMonitors.enabled }}
# A PodMonitor per ModelDeployment, when the cluster has prometheus-operator's CRD (watched while
# the CRD is served; Slipway's own watch stops quietly when it goes).
- apiGroups: [monitoring.coreos.com]
  resources: [podmonitors]
  verbs: [list, watch, create, patch, delete]
{{- end }}
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
