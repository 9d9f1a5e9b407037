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
# operator with this identity). No `update` but the finalizers' (below): every write is a PATCH.
# The ModelDeployments it reconciles: kopf lists and watches them; patch consumes the action
# annotation (a JSON patch of metadata; RBAC cannot narrow it to metadata).
- apiGroups: [serving.slipway.dev]
  resources: [modeldeployments]
  verbs: [get, list, watch, patch]
- apiGroups: [serving.slipway.dev]
  resources: [modeldeployments/status]
  verbs: [patch]
# Children carry `blockOwnerDeletion: true` in their owner reference: clusters with the
# OwnerReferencesPermissionEnforcement admission plugin (OpenShift's default) let only those who
# may update the owner's finalizers set it. Slipway sets no finalizer.
- apiGroups: [serving.slipway.dev]
  resources: [modeldeployments/finalizers]
  verbs: [update]
# The children it owns: one Deployment per revision, the Services, the autoscaler. Server-side
# apply of an object that does not exist yet needs `create` besides `patch`; `get`: a Service or
# autoscaler named after the ModelDeployment that is not among its own is looked at before it is
# written (another owner's or a user's is never taken over).
- apiGroups: [apps]
  resources: [deployments]
  verbs: [list, watch, create, patch, delete]
- apiGroups: [""]
  resources: [services]
  verbs: [get, list, watch, create, patch, delete]
- apiGroups: [autoscaling]
  resources: [horizontalpodautoscalers]
  verbs: [get, list, watch, create, patch, delete]
# The Jobs of evaluate steps (`slipway evaluate` from the operator's image): created once each,
# never changed, deleted when stale; their pods' results are read through the pods' list below.
- apiGroups: [batch]
  resources: [jobs]
  verbs: [list, watch, create, patch, delete]
# Read-only: pods to see crash loops and missing secrets and an evaluation Job's result (its
# pod's termination message), a claim to check a pvc:// model exists.
- apiGroups: [""]
  resources: [pods]
  verbs: [list, watch]
- apiGroups: [""]
  resources: [persistentvolumeclaims]
  verbs: [get]
{{- if .Values.modelRegistry.readCredentialSecrets }}
# The credentials of a model registry (spec.model.registry.mlflow.secretName), only when enabled:
# the validating policy lets nobody name a Secret they could not read themselves.
- apiGroups: [""]
  resources: [secrets]
  verbs: [get]
{{- end }}
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
  verbs: [get, list, watch, create, patch, delete]
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

{{/* The values of serving.slipway.dev/action, as a CEL list (slipway.rollout.Action). */}}
{{- define "slipway.actions" -}}
['promote', 'promote-full', 'abort', 'retry', 'pause', 'resume']
{{- end }}

{{/*
CEL variables both governance policies read: the annotations before and after the request, who
makes it, and what it asks for. An action or an undo is "set" when the request gives its annotation
a value it did not have; the serving spec (model, runtime, resources, template: what makes a
revision) "changed" on create or when any of its parts differs.
*/}}
{{- define "slipway.governanceVariables" -}}
- name: ann
  expression: "has(object.metadata.annotations) ? object.metadata.annotations : {}"
- name: oldAnn
  expression: >-
    oldObject != null && has(oldObject.metadata.annotations) ? oldObject.metadata.annotations : {}
- name: user
  expression: request.userInfo.username
- name: manager
  expression: >-
    has(request.options) && has(request.options.fieldManager) ? request.options.fieldManager : ''
- name: action
  expression: >-
    'serving.slipway.dev/action' in variables.ann ? variables.ann['serving.slipway.dev/action'] : ''
- name: actionSet
  expression: >-
    variables.action != '' && (!('serving.slipway.dev/action' in variables.oldAnn) ||
      variables.oldAnn['serving.slipway.dev/action'] != variables.action)
- name: undoTo
  expression: >-
    'serving.slipway.dev/undo-to' in variables.ann ? variables.ann['serving.slipway.dev/undo-to'] : ''
- name: undoSet
  expression: >-
    variables.undoTo != '' && (!('serving.slipway.dev/undo-to' in variables.oldAnn) ||
      variables.oldAnn['serving.slipway.dev/undo-to'] != variables.undoTo)
- name: servingChanged
  expression: >-
    oldObject == null || object.spec.model != oldObject.spec.model ||
    ['runtime', 'resources', 'template'].exists(f,
      (f in object.spec) != (f in oldObject.spec) ||
      (f in object.spec && object.spec[f] != oldObject.spec[f]))
{{- end }}
