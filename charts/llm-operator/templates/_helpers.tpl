{{/*
Helpers for the llm-operator chart. Every helper is prefixed with the chart name so that a parent
chart using this one as a dependency cannot collide with them.
*/}}

{{/* The chart name, overridable with nameOverride. */}}
{{- define "llm-operator.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/*
The prefix of every resource name: the release name, plus the chart name unless the release name
already contains it. Kubernetes names are limited to 63 characters.
*/}}
{{- define "llm-operator.fullname" -}}
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

{{/* chart label value: name-version. */}}
{{- define "llm-operator.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* Labels that select the operator pods; never change them after a release (selectors are immutable). */}}
{{- define "llm-operator.selectorLabels" -}}
app.kubernetes.io/name: {{ include "llm-operator.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{/* Labels on every object the chart renders. */}}
{{- define "llm-operator.labels" -}}
helm.sh/chart: {{ include "llm-operator.chart" . }}
{{ include "llm-operator.selectorLabels" . }}
app.kubernetes.io/component: operator
app.kubernetes.io/part-of: llm-operator
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
{{- end }}

{{/* The ServiceAccount the operator runs as. */}}
{{- define "llm-operator.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "llm-operator.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- required "serviceAccount.name is required when serviceAccount.create is false" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{/* The operator image reference; the tag defaults to the chart's appVersion. */}}
{{- define "llm-operator.image" -}}
{{- printf "%s:%s" .Values.image.repository (default .Chart.AppVersion .Values.image.tag) }}
{{- end }}

{{/* The default runtime image handed to the operator for LLMDeployments that name none. */}}
{{- define "llm-operator.runtimeImage" -}}
{{- $img := .Values.operator.runtimeImage }}
{{- printf "%s:%s" (default "llm-operator/runtime" $img.repository) (default .Chart.AppVersion $img.tag) }}
{{- end }}

{{/* The kopf peering object's name: one of its own per release, never kopf's shared "default". */}}
{{- define "llm-operator.peeringName" -}}
{{- default (include "llm-operator.fullname" .) .Values.operator.peering.name }}
{{- end }}

{{/* True (non-empty) when the operator watches every namespace. */}}
{{- define "llm-operator.clusterwide" -}}
{{- if not .Values.operator.watchNamespaces }}true{{- end }}
{{- end }}

{{/*
RBAC rules for namespaced resources, exactly what operator/llm_operator/rbac.py lists (the unit
tests render the chart and compare every verb; docs/rbac.md says who needs each): the LLMDeployments kopf watches and patches, the children the operator applies server-side
(create + patch; the garbage collector deletes them through ownerReferences), the pods it only
watches, and the Events it posts. Rendered into the ClusterRole when the operator watches all
namespaces, into one Role per watched namespace otherwise.
*/}}
{{- define "llm-operator.namespacedRules" -}}
# The custom resource: kopf watches it and patches its annotations; the operator patches status.
- apiGroups: ["llm-operator.io"]
  resources: ["llmdeployments"]
  verbs: ["list", "watch", "patch"]
- apiGroups: ["llm-operator.io"]
  resources: ["llmdeployments/status"]
  verbs: ["patch"]
# Children carry ownerReferences with blockOwnerDeletion; the OwnerReferencesPermissionEnforcement
# admission plugin (on in some distributions) then requires update on the owner's finalizers.
- apiGroups: ["llm-operator.io"]
  resources: ["llmdeployments/finalizers"]
  verbs: ["update"]
# Children, applied server-side under one field manager (an apply that creates needs create),
# and only when the watch-backed cache (list + watch, once) shows a difference; get reads a
# name the cache does not hold first, so one this LLMDeployment does not control is left alone.
# Deployments: one per revision; delete a retired revision once drained.
- apiGroups: ["apps"]
  resources: ["deployments"]
  verbs: ["get", "list", "watch", "create", "patch", "delete"]
- apiGroups: [""]
  resources: ["services"]
  verbs: ["get", "list", "watch", "create", "patch", "delete"]
- apiGroups: [""]
  resources: ["serviceaccounts"]
  verbs: ["get", "list", "watch", "create", "patch"]
# The front door's routes (trafficRouting: FrontDoor), rewritten when the rollout moves; no
# list or watch, which would read every ConfigMap.
- apiGroups: [""]
  resources: ["configmaps"]
  verbs: ["get", "create", "patch"]
- apiGroups: ["policy"]
  resources: ["poddisruptionbudgets"]
  verbs: ["get", "list", "watch", "create", "patch"]
# Read only, from a watch: the truth about loading, readiness and crash loops lives in pod
# statuses, and a pod's change wakes its LLMDeployment at once.
- apiGroups: [""]
  resources: ["pods"]
  verbs: ["list", "watch"]
# Events on every phase transition (kopf posts core/v1 Events); Warning Events (FailedMount,
# FailedCreate) and shared claims are read to name what the cluster must fix.
- apiGroups: [""]
  resources: ["events"]
  verbs: ["create", "list"]
- apiGroups: [""]
  resources: ["persistentvolumeclaims"]
  verbs: ["get"]
{{- end }}

{{/*
kopf's peering: watch all peering objects, read and write only our own (limited by name). No
create: the chart creates the peering object (templates/peering.yaml), so the operator finds it.
*/}}
{{- define "llm-operator.peeringRules" -}}
{{- $resource := ternary "clusterkopfpeerings" "kopfpeerings" (eq .scope "cluster") }}
- apiGroups: ["kopf.dev"]
  resources: [{{ $resource | quote }}]
  verbs: ["list", "watch"]
- apiGroups: ["kopf.dev"]
  resources: [{{ $resource | quote }}]
  resourceNames: [{{ include "llm-operator.peeringName" .root | quote }}]
  verbs: ["get", "patch"]
{{- end }}

{{/*
Cluster-scoped reads kopf needs at start-up: it scans CustomResourceDefinitions to find the
resources it serves, and in namespaced mode lists namespaces to match the watched ones.
*/}}
{{- define "llm-operator.clusterReadRules" -}}
- apiGroups: ["apiextensions.k8s.io"]
  resources: ["customresourcedefinitions"]
  verbs: ["list", "watch"]
{{- if not (include "llm-operator.clusterwide" .) }}
- apiGroups: [""]
  resources: ["namespaces"]
  verbs: ["list", "watch"]
{{- end }}
{{- end }}
