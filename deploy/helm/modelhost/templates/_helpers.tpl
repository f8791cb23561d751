{{/* Names, labels and the pieces the Deployment and the migration Job share. */}}

{{- define "modelhost.name" -}}
{{- .Chart.Name | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "modelhost.fullname" -}}
{{- if contains .Chart.Name .Release.Name }}
{{- .Release.Name | trunc 63 | trimSuffix "-" }}
{{- else }}
{{- printf "%s-%s" .Release.Name .Chart.Name | trunc 63 | trimSuffix "-" }}
{{- end }}
{{- end }}

{{- define "modelhost.selectorLabels" -}}
app.kubernetes.io/name: {{ include "modelhost.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{/* The server's pods: the Service, the PDB and the Deployment select these (the
     migration Job's pods carry component: migration and are never selected). */}}
{{- define "modelhost.serverSelectorLabels" -}}
{{ include "modelhost.selectorLabels" . }}
app.kubernetes.io/component: server
{{- end }}

{{- define "modelhost.labels" -}}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" }}
{{ include "modelhost.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
{{- end }}

{{- define "modelhost.image" -}}
{{- printf "%s:%s" .Values.image.repository (.Values.image.tag | default .Chart.AppVersion) }}
{{- end }}

{{- define "modelhost.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- .Values.serviceAccount.name | default (include "modelhost.fullname" .) }}
{{- else }}
{{- .Values.serviceAccount.name | default "default" }}
{{- end }}
{{- end }}

{{- define "modelhost.secretName" -}}
{{- .Values.existingSecret | default (include "modelhost.fullname" .) }}
{{- end }}

{{/* The settings, from the ConfigMap and the Secret; TLS paths when the pod serves HTTPS. */}}
{{- define "modelhost.envFrom" -}}
- configMapRef:
    name: {{ include "modelhost.fullname" . }}
- secretRef:
    name: {{ include "modelhost.secretName" . }}
{{- end }}

{{- define "modelhost.checks" -}}
{{- if and (not .Values.existingSecret) (not .Values.secrets.MODELHOST_DB_URL) }}
{{- fail "set secrets.MODELHOST_DB_URL (a PostgreSQL URL shared by every replica) or existingSecret" }}
{{- end }}
{{- if and .Values.tls.enabled (not .Values.tls.secretName) }}
{{- fail "tls.enabled needs tls.secretName: a kubernetes.io/tls Secret with the certificate" }}
{{- end }}
{{- end }}
