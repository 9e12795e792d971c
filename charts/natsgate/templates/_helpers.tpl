{{/*
Helpers for the natsgate chart. Manifests only call them as
`{{ include "natsgate.X" . }}` (inline) or `{{- include "natsgate.X" . | nindent N }}`
(alone on a line), which is what tests/chart.rs knows how to check.
*/}}

{{/* Chart name, overridable with nameOverride. */}}
{{- define "natsgate.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{/*
Fully qualified app name (63 chars max, DNS label). A release whose name already
contains the chart name is used as is.
*/}}
{{- define "natsgate.fullname" -}}
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

{{/* chart label value: name-version. */}}
{{- define "natsgate.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{/* Labels that select the gateway's pods; never change them on upgrade. */}}
{{- define "natsgate.selectorLabels" -}}
app.kubernetes.io/name: {{ include "natsgate.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end -}}

{{/* Labels on every object of the chart. */}}
{{- define "natsgate.labels" -}}
helm.sh/chart: {{ include "natsgate.chart" . }}
{{ include "natsgate.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/component: gateway
{{- end -}}

{{/* Image reference; the tag defaults to the chart's appVersion. */}}
{{- define "natsgate.image" -}}
{{- printf "%s:%s" .Values.image.repository (default .Chart.AppVersion .Values.image.tag) -}}
{{- end -}}

{{/* Name of the ServiceAccount the pods run as. */}}
{{- define "natsgate.serviceAccountName" -}}
{{- if .Values.serviceAccount.create -}}
{{- default (include "natsgate.fullname" .) .Values.serviceAccount.name -}}
{{- else -}}
{{- default "default" .Values.serviceAccount.name -}}
{{- end -}}
{{- end -}}

{{/* Name of the Secret holding NATSGATE_TOKEN_HMAC_SECRET_KEY and NATSGATE_API_KEY. */}}
{{- define "natsgate.secretName" -}}
{{- if .Values.secrets.existingSecret -}}
{{- .Values.secrets.existingSecret -}}
{{- else -}}
{{- include "natsgate.fullname" . -}}
{{- end -}}
{{- end -}}

{{/*
NATS URL: gateway.natsUrl when set, else the bundled NATS chart's client
Service (named by nats.fullnameOverride). natsgate is useless across replicas
without NATS, so rendering fails when there is neither.
*/}}
{{- define "natsgate.natsUrl" -}}
{{- if .Values.gateway.natsUrl -}}
{{- .Values.gateway.natsUrl -}}
{{- else if .Values.nats.enabled -}}
{{- printf "nats://%s.%s.svc:%v" .Values.nats.fullnameOverride .Release.Namespace .Values.nats.config.nats.port -}}
{{- else -}}
{{- fail "natsgate: set gateway.natsUrl to your NATS server, or nats.enabled=true for the bundled one" -}}
{{- end -}}
{{- end -}}

{{/*
terminationGracePeriodSeconds: the explicit value when set, else
preStop sleep + shutdown timeout + margin, so the kubelet never SIGKILLs a
gateway that is still draining its clients. (NATSGATE_SHUTDOWN_TIMEOUT counts
from SIGTERM and includes the drain period, which must be shorter.)
*/}}
{{- define "natsgate.terminationGracePeriodSeconds" -}}
{{- if .Values.shutdown.terminationGracePeriodSeconds -}}
{{- .Values.shutdown.terminationGracePeriodSeconds -}}
{{- else -}}
{{- add .Values.shutdown.preStopSleepSeconds .Values.shutdown.timeoutSeconds .Values.shutdown.marginSeconds -}}
{{- end -}}
{{- end -}}

{{/* Prometheus label matchers that pick this release's gateway series. */}}
{{- define "natsgate.metricSelector" -}}
{{- if .Values.autoscaling.keda.prometheus.labelSelector -}}
{{- .Values.autoscaling.keda.prometheus.labelSelector -}}
{{- else -}}
{{- printf "namespace=%q,service=%q" .Release.Namespace (include "natsgate.fullname" .) -}}
{{- end -}}
{{- end -}}

{{/*
KEDA query: total client connections of this release. KEDA divides it by the
threshold (AverageValue) to get the replica count.
*/}}
{{- define "natsgate.kedaQuery" -}}
{{- printf "sum(%s{%s})" .Values.autoscaling.connections.metricName (include "natsgate.metricSelector" .) -}}
{{- end -}}
