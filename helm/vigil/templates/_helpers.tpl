{{/* Names, labels and the pod pieces every workload shares. */}}

{{- define "vigil.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{- define "vigil.fullname" -}}
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

{{/* Name of one component: <fullname>-<component>, shortened to fit DNS labels. */}}
{{- define "vigil.componentName" -}}
{{- printf "%s-%s" (include "vigil.fullname" .root) .component | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{- define "vigil.labels" -}}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" }}
app.kubernetes.io/name: {{ include "vigil.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: vigil
{{- end -}}

{{- define "vigil.selectorLabels" -}}
app.kubernetes.io/name: {{ include "vigil.name" .root }}
app.kubernetes.io/instance: {{ .root.Release.Name }}
app.kubernetes.io/component: {{ .component }}
{{- end -}}

{{- define "vigil.serviceAccountName" -}}
{{- if .Values.serviceAccount.create -}}
{{- default (include "vigil.fullname" .) .Values.serviceAccount.name -}}
{{- else -}}
{{- default "default" .Values.serviceAccount.name -}}
{{- end -}}
{{- end -}}

{{- define "vigil.image" -}}
{{- if .Values.image.digest -}}
{{- printf "%s@%s" .Values.image.repository .Values.image.digest -}}
{{- else -}}
{{- printf "%s:%s" .Values.image.repository (default .Chart.AppVersion .Values.image.tag) -}}
{{- end -}}
{{- end -}}

{{/* One service's values: serviceDefaults deep-merged with services.<name>. */}}
{{- define "vigil.serviceValues" -}}
{{- $merged := mergeOverwrite (deepCopy .root.Values.serviceDefaults) (deepCopy .service) -}}
{{- toYaml $merged -}}
{{- end -}}

{{/* Full topic name as the services see it (config.kafka_topic_prefix + name). */}}
{{- define "vigil.topic" -}}
{{- printf "%s%s" (.root.Values.config.kafka_topic_prefix | default "") .name -}}
{{- end -}}

{{- define "vigil.generatedSecretName" -}}
{{- printf "%s-env" (include "vigil.fullname" .) -}}
{{- end -}}

{{/* True when the chart renders its own Secret (secretEnv values or a generated JWT key). */}}
{{- define "vigil.hasChartSecret" -}}
{{- if or .Values.secretEnv (and .Values.jwt.generate (not .Values.jwt.secretRef.name) (not .Values.jwt.privateKeyRef.name)) -}}
true
{{- end -}}
{{- end -}}

{{/* Checkov skips for every workload, each with its reason (checkov reads them from the workload's
     own metadata.annotations). */}}
{{- define "vigil.checkovSkips" -}}
checkov.io/skip1: CKV_K8S_35=Settings are VIGIL_* environment variables by contract (pydantic-settings); secret values come from secretKeyRef and never appear in the manifest.
{{- if not .Values.image.digest }}
checkov.io/skip2: CKV_K8S_43=No image.digest given; the image is pinned by its immutable release tag. Set image.digest to pin by digest.
{{- end }}
{{- end -}}

{{/* Env for every Vigil container: ConfigMap, Secrets, database URL, JWT, extras. */}}
{{- define "vigil.envFrom" -}}
- configMapRef:
    name: {{ include "vigil.fullname" . }}-config
{{- if include "vigil.hasChartSecret" . }}
- secretRef:
    name: {{ include "vigil.generatedSecretName" . }}
{{- end }}
{{- range .Values.existingSecrets }}
- secretRef:
    name: {{ . }}
{{- end }}
{{- with .Values.extraEnvFrom }}
{{ toYaml . }}
{{- end }}
{{- end -}}

{{- define "vigil.env" -}}
{{- include "vigil.envEntries" . | trim -}}
{{- end -}}

{{- define "vigil.envEntries" -}}
{{- $db := .Values.database -}}
{{- if $db.urlSecret.name }}
- name: VIGIL_DATABASE_URL
  valueFrom:
    secretKeyRef:
      name: {{ $db.urlSecret.name }}
      key: {{ $db.urlSecret.key }}
{{- else if $db.passwordSecret.name }}
# Not VIGIL_-prefixed: only used to build the URL below ($(VAR) expansion).
- name: DATABASE_PASSWORD
  valueFrom:
    secretKeyRef:
      name: {{ $db.passwordSecret.name }}
      key: {{ $db.passwordSecret.key }}
- name: VIGIL_DATABASE_URL
  value: {{ printf "postgresql+psycopg://%s:$(DATABASE_PASSWORD)@%s:%v/%s?sslmode=%s" $db.user $db.host $db.port $db.name $db.sslmode | quote }}
{{- else }}
- name: VIGIL_DATABASE_URL
  value: {{ printf "postgresql+psycopg://%s@%s:%v/%s?sslmode=%s" $db.user $db.host $db.port $db.name $db.sslmode | quote }}
{{- end }}
{{- if .Values.jwt.secretRef.name }}
- name: VIGIL_JWT_SECRET
  valueFrom:
    secretKeyRef:
      name: {{ .Values.jwt.secretRef.name }}
      key: {{ .Values.jwt.secretRef.key }}
{{- end }}
{{- if .Values.jwt.privateKeyRef.name }}
- name: VIGIL_JWT_PRIVATE_KEY_FILE
  value: /etc/vigil/jwt/{{ .Values.jwt.privateKeyRef.key }}
{{- end }}
{{- range .Values.secretRefs }}
- name: {{ printf "VIGIL_%s" (upper .setting) }}
  valueFrom:
    secretKeyRef:
      name: {{ .name }}
      key: {{ .key }}
{{- end }}
{{- with .Values.extraEnv }}
{{ toYaml . }}
{{- end }}
{{- end -}}

{{/* Volumes every Vigil pod mounts: writable /tmp, config files (not in hooks: they run before
     the files ConfigMap exists), JWT private key. Call with (dict "root" $ "files" true|false). */}}
{{- define "vigil.volumes" -}}
- name: tmp
  emptyDir:
    sizeLimit: {{ .root.Values.tmpVolumeSizeLimit }}
{{- if and .files .root.Values.configFiles }}
- name: config-files
  configMap:
    name: {{ include "vigil.fullname" .root }}-files
{{- end }}
{{- if .root.Values.jwt.privateKeyRef.name }}
- name: jwt-key
  secret:
    secretName: {{ .root.Values.jwt.privateKeyRef.name }}
    defaultMode: 0440
    items:
      - key: {{ .root.Values.jwt.privateKeyRef.key }}
        path: {{ .root.Values.jwt.privateKeyRef.key }}
{{- end }}
{{- end -}}

{{- define "vigil.volumeMounts" -}}
- name: tmp
  mountPath: /tmp
{{- if and .files .root.Values.configFiles }}
- name: config-files
  mountPath: /etc/vigil/files
  readOnly: true
{{- end }}
{{- if .root.Values.jwt.privateKeyRef.name }}
- name: jwt-key
  mountPath: /etc/vigil/jwt
  readOnly: true
{{- end }}
{{- end -}}

{{/* Pod-level fields shared by Deployments, Jobs and CronJobs. */}}
{{- define "vigil.podCommon" -}}
serviceAccountName: {{ include "vigil.serviceAccountName" . }}
automountServiceAccountToken: false
securityContext:
  {{- toYaml .Values.podSecurityContext | nindent 2 }}
{{- with .Values.imagePullSecrets }}
imagePullSecrets:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- end -}}
