{{/* Names, labels and the few derived values every template shares. */}}

{{- define "migrate-safe.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{- define "migrate-safe.fullname" -}}
{{- if .Values.fullnameOverride -}}
{{- .Values.fullnameOverride | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- $name := default .Chart.Name .Values.nameOverride -}}
{{- if contains $name .Release.Name -}}
{{- .Release.Name | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name $name | trunc 63 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}
{{- end -}}

{{- define "migrate-safe.selectorLabels" -}}
app.kubernetes.io/name: {{ include "migrate-safe.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end -}}

{{- define "migrate-safe.labels" -}}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{ include "migrate-safe.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/component: operator
app.kubernetes.io/part-of: migrate-safe
app.kubernetes.io/managed-by: {{ .Release.Service }}
{{- end -}}

{{- define "migrate-safe.serviceAccountName" -}}
{{- if .Values.serviceAccount.create -}}
{{- default (include "migrate-safe.fullname" .) .Values.serviceAccount.name -}}
{{- else -}}
{{- default "default" .Values.serviceAccount.name -}}
{{- end -}}
{{- end -}}

{{/* repository:tag, or repository@digest when a digest is pinned. */}}
{{- define "migrate-safe.image" -}}
{{- if .Values.image.digest -}}
{{- printf "%s@%s" .Values.image.repository .Values.image.digest -}}
{{- else -}}
{{- printf "%s:%s" .Values.image.repository (default .Chart.AppVersion .Values.image.tag) -}}
{{- end -}}
{{- end -}}

{{/* The namespaces the operator watches, as a JSON list (empty: all namespaces). */}}
{{- define "migrate-safe.watchNamespaces" -}}
{{- if .Values.watchNamespaces -}}
{{- toJson .Values.watchNamespaces -}}
{{- else if eq .Values.rbac.scope "namespace" -}}
{{- toJson (list .Release.Namespace) -}}
{{- else -}}
{{- toJson (list) -}}
{{- end -}}
{{- end -}}

{{- define "migrate-safe.runbook" -}}
{{- printf "%s#%s" .root.Values.metrics.prometheusRule.runbookBaseUrl .anchor -}}
{{- end -}}

{{/* The rules the operator needs in every namespace it watches (no Secrets). */}}
{{- define "migrate-safe.rules" -}}
# DatabaseMigrations: read, and patch for kopf's annotations and finalizer; a set creates,
# updates and deletes its members'.
- apiGroups: [migrate-safe.dev]
  resources: [databasemigrations]
  verbs: [get, list, watch, patch, update{{ if .Values.fleets.enabled }}, create, delete{{ end }}]
- apiGroups: [migrate-safe.dev]
  resources: [databasemigrations/status]
  verbs: [get, patch, update]
# Jobs get an owner reference with blockOwnerDeletion, which needs this.
- apiGroups: [migrate-safe.dev]
  resources: [databasemigrations/finalizers]
  verbs: [update]
{{- if .Values.fleets.enabled }}
# DatabaseMigrationSets: read, status, and owner references (blockOwnerDeletion) on members.
- apiGroups: [migrate-safe.dev]
  resources: [databasemigrationsets]
  verbs: [get, list, watch, patch]
- apiGroups: [migrate-safe.dev]
  resources: [databasemigrationsets/status]
  verbs: [get, patch]
- apiGroups: [migrate-safe.dev]
  resources: [databasemigrationsets/finalizers]
  verbs: [update]
# Database Secrets of a set's selector: names, labels and age (never `get`: no single read).
- apiGroups: [""]
  resources: [secrets]
  verbs: [list, watch]
{{- end }}
# One Job per phase; results come from the pods' termination messages.
- apiGroups: [batch]
  resources: [jobs]
  verbs: [get, list, watch, create, delete, patch]
- apiGroups: [""]
  resources: [pods]
  verbs: [get, list, watch]
# Inline migration sources are stored as ConfigMaps that the Job pods mount.
- apiGroups: [""]
  resources: [configmaps]
  verbs: [get, list, watch, create, patch, delete]
# The backup volume is checked before a backup Job is created.
- apiGroups: [""]
  resources: [persistentvolumeclaims]
  verbs: [get]
- apiGroups: [""]
  resources: [events]
  verbs: [create, patch]
- apiGroups: [events.k8s.io]
  resources: [events]
  verbs: [create, patch]
{{- end -}}
