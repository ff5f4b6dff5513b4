{{/* Names, labels and shared fragments of the modelshield chart. */}}

{{- define "modelshield.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{/* The prefix of every object's name. */}}
{{- define "modelshield.fullname" -}}
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

{{- define "modelshield.webhookName" -}}
{{- printf "%s-webhook" (include "modelshield.fullname" .) | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{- define "modelshield.operatorName" -}}
{{- printf "%s-operator" (include "modelshield.fullname" .) | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{/* The Secret with the webhook's serving certificate (tls.crt, tls.key, ca.crt). */}}
{{- define "modelshield.webhookTLSSecret" -}}
{{- printf "%s-webhook-tls" (include "modelshield.fullname" .) | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{/* The name of both webhook configurations (cluster-scoped: one per release). */}}
{{- define "modelshield.webhookConfigurationName" -}}
{{- include "modelshield.fullname" . -}}
{{- end -}}

{{- define "modelshield.labels" -}}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
app.kubernetes.io/name: {{ include "modelshield.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: modelshield
{{- with .Values.commonLabels }}
{{ toYaml . }}
{{- end }}
{{- end -}}

{{/* Selector labels of one component: include with (dict "context" $ "component" "webhook"). */}}
{{- define "modelshield.selectorLabels" -}}
app.kubernetes.io/name: {{ include "modelshield.name" .context }}
app.kubernetes.io/instance: {{ .context.Release.Name }}
app.kubernetes.io/component: {{ .component }}
{{- end -}}

{{- define "modelshield.componentLabels" -}}
{{ include "modelshield.labels" .context }}
app.kubernetes.io/component: {{ .component }}
{{- end -}}

{{- define "modelshield.image" -}}
{{- if .Values.image.digest -}}
{{- printf "%s@%s" .Values.image.repository .Values.image.digest -}}
{{- else -}}
{{- printf "%s:%s" .Values.image.repository (default .Chart.AppVersion .Values.image.tag) -}}
{{- end -}}
{{- end -}}

{{- define "modelshield.podSecurityContext" -}}
{{- toYaml .Values.podSecurityContext -}}
{{- end -}}

{{- define "modelshield.containerSecurityContext" -}}
{{- toYaml .Values.containerSecurityContext -}}
{{- end -}}

{{- define "modelshield.imagePullSecrets" -}}
{{- with .Values.imagePullSecrets }}
imagePullSecrets:
{{- range . }}
  - name: {{ . }}
{{- end }}
{{- end }}
{{- end -}}

{{/* Namespaces the workload webhooks never see and the operator never governs: the
     system namespaces, the release namespace, and more (modelshield.engine.scopes;
     tests/chart compares). */}}
{{- define "modelshield.excludedNamespaces" -}}
{{- $names := concat (list "kube-node-lease" "kube-public" "kube-system" .Release.Namespace) .Values.webhook.namespaceSelector.excludeNamespaces | uniq | sortAlpha -}}
{{- toJson $names -}}
{{- end -}}

{{- define "modelshield.namespaceSelector" -}}
matchExpressions:
  - key: kubernetes.io/metadata.name
    operator: NotIn
    values: {{ include "modelshield.excludedNamespaces" . }}
  - key: modelshield.dev/ignore
    operator: NotIn
    values: ["true"]
  - key: modelshield.dev/ungoverned
    operator: NotIn
    values: ["true"]
{{- if .Values.webhook.namespaceSelector.requireOptIn }}
  - key: modelshield.dev/enforce
    operator: In
    values: ["true"]
{{- end }}
{{- end -}}

{{/* Rules of the workload webhooks: every pod-bearing kind the engine reads
     (modelshield_webhooks.configurations.WORKLOAD_RULES; tests/chart compares them). */}}
{{- define "modelshield.workloadRules" -}}
- apiGroups: [""]
  apiVersions: ["*"]
  operations: ["CREATE", "UPDATE"]
  resources: ["pods", "pods/ephemeralcontainers", "replicationcontrollers"]
  scope: Namespaced
- apiGroups: ["apps"]
  apiVersions: ["*"]
  operations: ["CREATE", "UPDATE"]
  resources: ["deployments", "statefulsets", "daemonsets", "replicasets"]
  scope: Namespaced
- apiGroups: ["batch"]
  apiVersions: ["*"]
  operations: ["CREATE", "UPDATE"]
  resources: ["jobs", "cronjobs"]
  scope: Namespaced
- apiGroups: ["serving.kserve.io"]
  apiVersions: ["*"]
  operations: ["CREATE", "UPDATE"]
  resources: ["inferenceservices", "llminferenceservices", "servingruntimes"]
  scope: Namespaced
- apiGroups: ["serving.kserve.io"]
  apiVersions: ["*"]
  operations: ["CREATE", "UPDATE"]
  resources: ["clusterservingruntimes"]
  scope: Cluster
{{- end -}}
