{{/* Chart name, truncated to the 63 characters a label value allows. */}}
{{- define "appscope.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{/* Resource name prefix: the release name, plus the chart name unless it contains it. */}}
{{- define "appscope.fullname" -}}
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

{{- define "appscope.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{/* Standard labels; call with (dict "ctx" $ "component" "agent"). */}}
{{- define "appscope.labels" -}}
helm.sh/chart: {{ include "appscope.chart" .ctx }}
{{ include "appscope.selectorLabels" . }}
app.kubernetes.io/version: {{ .ctx.Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .ctx.Release.Service }}
app.kubernetes.io/part-of: appscope
{{- with .ctx.Values.commonLabels }}
{{ toYaml . }}
{{- end }}
{{- end -}}

{{- define "appscope.selectorLabels" -}}
app.kubernetes.io/name: {{ include "appscope.name" .ctx }}
app.kubernetes.io/instance: {{ .ctx.Release.Name }}
{{- if .component }}
app.kubernetes.io/component: {{ .component }}
{{- end }}
{{- end -}}

{{/* The image reference: digest wins over tag; the tag defaults to appVersion. */}}
{{- define "appscope.image" -}}
{{- $img := .Values.image -}}
{{- if $img.digest -}}
{{- printf "%s@%s" $img.repository $img.digest -}}
{{- else -}}
{{- printf "%s:%s" $img.repository (default .Chart.AppVersion $img.tag) -}}
{{- end -}}
{{- end -}}

{{- define "appscope.componentName" -}}
{{- printf "%s-%s" (include "appscope.fullname" .ctx | trunc 50 | trimSuffix "-") .component -}}
{{- end -}}

{{- define "appscope.webhookSecretName" -}}
{{- default (printf "%s-webhook-tls" (include "appscope.fullname" .)) .Values.webhook.certs.secretName -}}
{{- end -}}

{{- define "appscope.webhookConfigName" -}}
{{- include "appscope.componentName" (dict "ctx" . "component" "webhook") -}}
{{- end -}}

{{- define "appscope.webhookServiceName" -}}
{{- include "appscope.componentName" (dict "ctx" . "component" "webhook") -}}
{{- end -}}

{{- define "appscope.certificateName" -}}
{{- include "appscope.componentName" (dict "ctx" . "component" "webhook") -}}
{{- end -}}

{{- define "appscope.crashClaimName" -}}
{{- default (printf "%s-crash-reports" (include "appscope.fullname" .)) .Values.crashReports.persistence.existingClaim -}}
{{- end -}}

{{- define "appscope.defaultConfigName" -}}
{{- printf "%s-default-scope-yml" (include "appscope.fullname" .) -}}
{{- end -}}

{{- define "appscope.leaseName" -}}
{{- default (printf "%s-controller" (include "appscope.fullname" .)) .Values.controller.leaderElection.leaseName -}}
{{- end -}}

{{/* Restricted-PSA container securityContext for the controller and webhook. */}}
{{- define "appscope.restrictedContainerSecurityContext" -}}
allowPrivilegeEscalation: false
readOnlyRootFilesystem: true
runAsNonRoot: true
capabilities:
  drop:
    - ALL
seccompProfile:
  type: RuntimeDefault
{{- end -}}

{{- define "appscope.restrictedPodSecurityContext" -}}
runAsNonRoot: true
runAsUser: 65532
runAsGroup: 65532
fsGroup: 65532
seccompProfile:
  type: RuntimeDefault
{{- end -}}

{{/* Whether to render matchConditions on the MutatingWebhookConfiguration. */}}
{{- define "appscope.useMatchConditions" -}}
{{- $m := .Values.webhook.matchConditions -}}
{{- if eq $m "always" -}}true
{{- else if and (eq $m "auto") (semverCompare ">=1.28.0-0" .Capabilities.KubeVersion.Version) -}}true
{{- end -}}
{{- end -}}
