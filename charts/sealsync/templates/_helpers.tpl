{{/* Chart name, or nameOverride. */}}
{{- define "sealsync.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/*
Name of every object: fullnameOverride (by default the name kubeseal expects), else
derived from the release name.
*/}}
{{- define "sealsync.fullname" -}}
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

{{- define "sealsync.selectorLabels" -}}
app.kubernetes.io/name: {{ include "sealsync.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{- define "sealsync.labels" -}}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{ include "sealsync.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
{{- with .Values.commonLabels }}
{{ toYaml . }}
{{- end }}
{{- end }}

{{- define "sealsync.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "sealsync.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- required "serviceAccount.name is required when serviceAccount.create is false" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{- define "sealsync.leaseName" -}}
{{- default (include "sealsync.fullname" .) .Values.leaderElection.leaseName }}
{{- end }}

{{/*
Where the controller unseals when not in every namespace: its own namespace (always
watched) and additionalNamespaces, as a JSON list.
*/}}
{{- define "sealsync.watchedNamespaces" -}}
{{- prepend .Values.additionalNamespaces .Release.Namespace | uniq | toJson }}
{{- end }}

{{/*
What the controller does where it unseals, and nothing more (tests/tests/chart.rs shows
each verb needed): watch SealedSecrets, read the one it unseals and apply its status; watch
Secrets' metadata (its keys', its Secrets'), look up a Secret before making it and
server-side apply it (create and patch); publish events. It never deletes a Secret: the
garbage collector removes those of deleted SealedSecrets.
*/}}
{{- define "sealsync.unsealerRules" -}}
- apiGroups: ["bitnami.com"]
  resources: ["sealedsecrets"]
  verbs: ["get", "list", "watch"]
- apiGroups: ["bitnami.com"]
  resources: ["sealedsecrets/status"]
  verbs: ["patch"]
- apiGroups: [""]
  resources: ["secrets"]
  verbs: ["get", "list", "watch", "create", "patch"]
- apiGroups: ["events.k8s.io"]
  resources: ["events"]
  verbs: ["create"]
{{- if .Values.externalSecrets.enabled }}
{{- /* ExternalSecrets: watch them and their stores, remove ESO's finalizer from one being
  deleted (patch), write their statuses, delete a Secret whose remote secrets are gone
  (deletionPolicy Delete), read templateFrom and caProvider ConfigMaps, request tokens of
  the ServiceAccounts stores name. */}}
{{- /* Both are only watched (synced from the cache), never fetched. */}}
- apiGroups: ["external-secrets.io"]
  resources: ["externalsecrets"]
  verbs: ["list", "watch"]
- apiGroups: ["external-secrets.io"]
  resources: ["secretstores"]
  verbs: ["list", "watch"]
- apiGroups: ["external-secrets.io"]
  resources: ["externalsecrets"]
  verbs: ["patch"]
- apiGroups: ["external-secrets.io"]
  resources: ["externalsecrets/status", "secretstores/status"]
  verbs: ["patch"]
- apiGroups: [""]
  resources: ["secrets"]
  verbs: ["delete"]
- apiGroups: [""]
  resources: ["configmaps", "serviceaccounts"]
  verbs: ["get"]
- apiGroups: [""]
  resources: ["serviceaccounts/token"]
  verbs: ["create"]
{{- end }}
{{- end }}
