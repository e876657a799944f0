{{/*
Names, labels and shared pod parts of the livegate chart. Every define is namespaced `livegate.`.
*/}}

{{/* Chart name, overridable. */}}
{{- define "livegate.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* Fully qualified name prefix of every resource (63 chars, DNS-1123). */}}
{{- define "livegate.fullname" -}}
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

{{/* chart label value: name-version */}}
{{- define "livegate.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* Labels of every resource (no component: see livegate.componentLabels). */}}
{{- define "livegate.labels" -}}
helm.sh/chart: {{ include "livegate.chart" . }}
{{ include "livegate.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: livegate
{{- with .Values.commonLabels }}
{{ toYaml . }}
{{- end }}
{{- end }}

{{/* Selector labels shared by every component; never used alone in a selector (always with a component). */}}
{{- define "livegate.selectorLabels" -}}
app.kubernetes.io/name: {{ include "livegate.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{/*
Per-component variants. Call with (dict "ctx" $ "component" "front").
Components: front, worker, redis, emulator, test. Each selector carries its component, so no two overlap.
*/}}
{{- define "livegate.componentLabels" -}}
{{ include "livegate.labels" .ctx }}
app.kubernetes.io/component: {{ .component }}
{{- end }}

{{- define "livegate.componentSelectorLabels" -}}
{{ include "livegate.selectorLabels" .ctx }}
app.kubernetes.io/component: {{ .component }}
{{- end }}

{{- define "livegate.front.labels" -}}
{{ include "livegate.componentLabels" (dict "ctx" . "component" "front") }}
{{- end }}
{{- define "livegate.front.selectorLabels" -}}
{{ include "livegate.componentSelectorLabels" (dict "ctx" . "component" "front") }}
{{- end }}
{{- define "livegate.front.fullname" -}}
{{- printf "%s-front" (include "livegate.fullname" .) | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "livegate.worker.labels" -}}
{{ include "livegate.componentLabels" (dict "ctx" . "component" "worker") }}
{{- end }}
{{- define "livegate.worker.selectorLabels" -}}
{{ include "livegate.componentSelectorLabels" (dict "ctx" . "component" "worker") }}
{{- end }}
{{- define "livegate.worker.fullname" -}}
{{- printf "%s-worker" (include "livegate.fullname" .) | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "livegate.redis.labels" -}}
{{ include "livegate.componentLabels" (dict "ctx" . "component" "redis") }}
{{- end }}
{{- define "livegate.redis.selectorLabels" -}}
{{ include "livegate.componentSelectorLabels" (dict "ctx" . "component" "redis") }}
{{- end }}
{{- define "livegate.redis.fullname" -}}
{{- printf "%s-redis" (include "livegate.fullname" .) | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "livegate.emulator.labels" -}}
{{ include "livegate.componentLabels" (dict "ctx" . "component" "emulator") }}
{{- end }}
{{- define "livegate.emulator.selectorLabels" -}}
{{ include "livegate.componentSelectorLabels" (dict "ctx" . "component" "emulator") }}
{{- end }}
{{- define "livegate.emulator.fullname" -}}
{{- printf "%s-emulator" (include "livegate.fullname" .) | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* ServiceAccount name. */}}
{{- define "livegate.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "livegate.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- default "default" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{/* The livegate image reference: digest wins over tag; the tag defaults to appVersion. */}}
{{- define "livegate.image" -}}
{{- $tag := default .Chart.AppVersion .Values.image.tag }}
{{- if .Values.image.digest }}
{{- printf "%s@%s" .Values.image.repository .Values.image.digest }}
{{- else }}
{{- printf "%s:%s" .Values.image.repository $tag }}
{{- end }}
{{- end }}

{{- define "livegate.emulator.image" -}}
{{- $repo := default .Values.image.repository .Values.emulator.image.repository }}
{{- $tag := default (default .Chart.AppVersion .Values.image.tag) .Values.emulator.image.tag }}
{{- printf "%s:%s" $repo $tag }}
{{- end }}

{{/* The chart's Secret (inline values) and which keys it holds. */}}
{{- define "livegate.secretName" -}}
{{- include "livegate.fullname" . }}
{{- end }}

{{/* "true" when the workers send an API key, from the chart's Secret or an existing one. */}}
{{- define "livegate.upstream.apiKeyInChart" -}}
{{- if and (not .Values.upstream.existingSecret) (or .Values.upstream.apiKey .Values.emulator.enabled) }}true{{ end }}
{{- end }}

{{- define "livegate.redis.urlInChart" -}}
{{- if and (not .Values.redis.enabled) (not .Values.redis.external.existingSecret) .Values.redis.external.url }}true{{ end }}
{{- end }}

{{- define "livegate.credentialsInChart" -}}
{{- if and (not .Values.upstream.credentials.existingSecret) .Values.upstream.credentials.json }}true{{ end }}
{{- end }}

{{- define "livegate.callerKeysInChart" -}}
{{- if and .Values.callerKeys.enabled (not .Values.callerKeys.existingSecret) }}true{{ end }}
{{- end }}

{{- define "livegate.secretNeeded" -}}
{{- if or (include "livegate.upstream.apiKeyInChart" .) (include "livegate.redis.urlInChart" .) (include "livegate.credentialsInChart" .) (include "livegate.callerKeysInChart" .) }}true{{ end }}
{{- end }}

{{- define "livegate.credentialsEnabled" -}}
{{- if or .Values.upstream.credentials.existingSecret .Values.upstream.credentials.json }}true{{ end }}
{{- end }}

{{/* The upstream base URL (LIVEGATE_UPSTREAM_URL). */}}
{{- define "livegate.upstream.url" -}}
{{- if .Values.upstream.url }}
{{- .Values.upstream.url }}
{{- else if .Values.emulator.enabled }}
{{- printf "http://%s:%d" (include "livegate.emulator.fullname" .) (int .Values.emulator.port) }}
{{- else if eq .Values.upstream.flavour "vertex" }}
{{- printf "https://%s-aiplatform.googleapis.com" .Values.upstream.vertex.location }}
{{- else }}
{{- print "https://generativelanguage.googleapis.com" }}
{{- end }}
{{- end }}

{{/* Validates the combination of values the schema cannot express; fails the render with a clear message. */}}
{{- define "livegate.validate" -}}
{{- if and (not .Values.redis.enabled) (not .Values.redis.external.url) (not .Values.redis.external.existingSecret) }}
{{- fail "livegate: Redis is required: set redis.external.url, redis.external.existingSecret, or redis.enabled=true (bundled, for trials)" }}
{{- end }}
{{- if and .Values.redis.enabled (or .Values.redis.external.url .Values.redis.external.existingSecret) }}
{{- fail "livegate: redis.enabled (bundled) and redis.external.* are exclusive" }}
{{- end }}
{{- if and (eq .Values.upstream.flavour "vertex") (not .Values.upstream.vertex.project) }}
{{- fail "livegate: upstream.flavour=vertex needs upstream.vertex.project" }}
{{- end }}
{{- if and (eq .Values.upstream.flavour "gemini") (not .Values.emulator.enabled) (not .Values.upstream.apiKey) (not .Values.upstream.existingSecret) }}
{{- fail "livegate: upstream.flavour=gemini needs an API key: upstream.existingSecret (or upstream.apiKey), or emulator.enabled=true" }}
{{- end }}
{{- if and .Values.callerKeys.enabled (not .Values.callerKeys.existingSecret) (not .Values.callerKeys.content) }}
{{- fail "livegate: callerKeys.enabled needs callerKeys.existingSecret or callerKeys.content" }}
{{- end }}
{{- if and (has "api_key" .Values.auth.modes) (not .Values.callerKeys.enabled) }}
{{- fail "livegate: auth.modes api_key needs callerKeys.enabled" }}
{{- end }}
{{- if and (or (has "mtls" .Values.auth.modes) (has "mtls:san" .Values.auth.modes)) (not (and .Values.front.tls.existingSecret .Values.front.tls.requireClientCert)) }}
{{- fail "livegate: auth.modes mtls needs front.tls.existingSecret and front.tls.requireClientCert" }}
{{- end }}
{{- if and (has "oidc" .Values.auth.modes) (not .Values.auth.oidc.audience) }}
{{- fail "livegate: auth.modes oidc needs auth.oidc.audience" }}
{{- end }}
{{- if and .Values.front.grpcRoute.enabled (not .Values.front.grpcRoute.parentRefs) }}
{{- fail "livegate: front.grpcRoute.enabled needs front.grpcRoute.parentRefs (the Gateway to attach to)" }}
{{- end }}
{{- if and .Values.front.autoscaling.enabled (gt (int .Values.front.autoscaling.minReplicas) (int .Values.front.autoscaling.maxReplicas)) }}
{{- fail "livegate: front.autoscaling.minReplicas > maxReplicas" }}
{{- end }}
{{- if and .Values.worker.autoscaling.enabled (gt (int .Values.worker.autoscaling.minReplicas) (int .Values.worker.autoscaling.maxReplicas)) }}
{{- fail "livegate: worker.autoscaling.minReplicas > maxReplicas" }}
{{- end }}
{{- end }}

{{/* terminationGracePeriodSeconds: above each process's own bounded shutdown. */}}
{{- define "livegate.front.terminationGracePeriodSeconds" -}}
{{- add (ceil .Values.front.graceSeconds | int) .Values.front.preStopSleepSeconds .Values.front.terminationMarginSeconds }}
{{- end }}
{{- define "livegate.worker.terminationGracePeriodSeconds" -}}
{{- add (ceil .Values.worker.drainTimeoutSeconds | int) .Values.worker.preStopSleepSeconds .Values.worker.terminationMarginSeconds }}
{{- end }}
{{/* minReadySeconds of the workers: the value, or (null) the drain timeout rounded up. */}}
{{- define "livegate.worker.minReadySeconds" -}}
{{- if kindIs "invalid" .Values.worker.minReadySeconds }}
{{- ceil .Values.worker.drainTimeoutSeconds | int }}
{{- else }}
{{- .Values.worker.minReadySeconds | int }}
{{- end }}
{{- end }}

{{/* A pod's /tmp (the only writable path) and the preStop hook. */}}
{{- define "livegate.tmpVolume" -}}
- name: tmp
  emptyDir:
    sizeLimit: {{ .Values.tmpSizeLimit }}
{{- end }}

{{- define "livegate.preStop" -}}
{{- if gt (int .) 0 -}}
lifecycle:
  preStop:
    exec:
      command: ["sleep", "{{ . }}"]
{{- end }}
{{- end }}

{{/* Environment shared by front and worker: Redis, logging, metrics port. */}}
{{- define "livegate.commonEnv" -}}
- name: LIVEGATE_REDIS_URL
  {{- if .Values.redis.enabled }}
  value: {{ printf "redis://%s:%d/0" (include "livegate.redis.fullname" .) (int .Values.redis.port) | quote }}
  {{- else }}
  valueFrom:
    secretKeyRef:
      name: {{ default (include "livegate.secretName" .) .Values.redis.external.existingSecret }}
      key: {{ ternary .Values.redis.external.existingSecretKey "redis-url" (not (empty .Values.redis.external.existingSecret)) }}
  {{- end }}
- name: LIVEGATE_METRICS_LISTEN
  value: {{ printf "0.0.0.0:%d" (int .Values.metricsPort) | quote }}
- name: LIVEGATE_LOG_LEVEL
  value: {{ .Values.config.logLevel | quote }}
- name: LIVEGATE_LOG_JSON
  value: {{ .Values.config.logJson | quote }}
{{- with .Values.config.allowedModels }}
- name: LIVEGATE_ALLOWED_MODELS
  value: {{ toJson . | quote }}
{{- end }}
{{- with .Values.config.extraEnv }}
{{ toYaml . }}
{{- end }}
{{- end }}

{{/* Pod annotations: checksums (a changed Secret restarts the pods) plus extra ones. (dict "ctx" $ "extra" MAP) */}}
{{- define "livegate.podAnnotations" -}}
{{- $a := dict }}
{{- if include "livegate.secretNeeded" .ctx }}
{{- $_ := set $a "checksum/secret" (include (print .ctx.Template.BasePath "/secret.yaml") .ctx | sha256sum) }}
{{- end }}
{{- $a = merge $a (default dict .extra) }}
{{- if $a -}}
annotations:
  {{- toYaml $a | nindent 2 }}
{{- end }}
{{- end }}

{{/* A front probe: a grpc probe without a port gets the front's gRPC port; with front TLS (native gRPC probes
speak plaintext only) a grpc probe becomes an HTTP GET of `path` on the metrics port.
(dict "probe" P "port" N "tls" SECRET "path" "/readyz") */}}
{{- define "livegate.front.probe" -}}
{{- $probe := deepCopy .probe }}
{{- if and .tls (hasKey $probe "grpc") }}
{{- $_ := unset $probe "grpc" }}
{{- $_ := set $probe "httpGet" (dict "path" .path "port" "metrics") }}
{{- else if and (hasKey $probe "grpc") (not (hasKey $probe.grpc "port")) }}
{{- $_ := set $probe "grpc" (merge (dict "port" (int .port)) $probe.grpc) }}
{{- end }}
{{- toYaml $probe }}
{{- end }}

{{/* NetworkPolicy rules shared by front and worker. */}}
{{- define "livegate.networkPolicy.metricsIngress" -}}
- ports:
    - port: metrics
      protocol: TCP
  from:
    - namespaceSelector:
        {{- toYaml .Values.networkPolicy.metrics.namespaceSelector | nindent 8 }}
      {{- with .Values.networkPolicy.metrics.podSelector }}
      podSelector:
        {{- toYaml . | nindent 8 }}
      {{- end }}
{{- end }}

{{- define "livegate.networkPolicy.commonEgress" -}}
- to:
    {{- toYaml .Values.networkPolicy.dns.to | nindent 4 }}
  ports:
    - {port: 53, protocol: UDP}
    - {port: 53, protocol: TCP}
{{- if .Values.redis.enabled }}
- to:
    - podSelector:
        matchLabels:
          {{- include "livegate.redis.selectorLabels" . | nindent 10 }}
  ports:
    - port: {{ .Values.redis.port }}
      protocol: TCP
{{- else }}
- {{- with .Values.networkPolicy.redisTo }}
  to:
    {{- toYaml . | nindent 4 }}
  {{- end }}
  ports:
    {{- range .Values.networkPolicy.redisPorts }}
    - port: {{ . }}
      protocol: TCP
    {{- end }}
{{- end }}
{{- with .Values.networkPolicy.extraEgress }}
{{ toYaml . }}
{{- end }}
{{- end }}

{{/* Scheduling of a component's pods: nodeSelector, tolerations, affinity and topology spread. With
defaultSpread on, an empty affinity / topologySpreadConstraints becomes a soft spread over nodes and zones:
preferred anti-affinity and ScheduleAnyway constraints, so a small or single-zone cluster still schedules.
(dict "ctx" $ "component" "front" "values" .Values.front) */}}
{{- define "livegate.scheduling" -}}
{{- $v := .values }}
{{- $sel := include "livegate.componentSelectorLabels" (dict "ctx" .ctx "component" .component) }}
{{- with $v.nodeSelector }}
nodeSelector:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- with $v.tolerations }}
tolerations:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- if $v.affinity }}
affinity:
  {{- toYaml $v.affinity | nindent 2 }}
{{- else if $v.defaultSpread }}
affinity:
  podAntiAffinity:
    preferredDuringSchedulingIgnoredDuringExecution:
      {{- range $term := list (list 100 "kubernetes.io/hostname") (list 50 "topology.kubernetes.io/zone") }}
      - weight: {{ index $term 0 }}
        podAffinityTerm:
          topologyKey: {{ index $term 1 }}
          labelSelector:
            matchLabels:
              {{- $sel | nindent 14 }}
      {{- end }}
{{- end }}
{{- if $v.topologySpreadConstraints }}
topologySpreadConstraints:
  {{- toYaml $v.topologySpreadConstraints | nindent 2 }}
{{- else if $v.defaultSpread }}
topologySpreadConstraints:
  {{- range $key := list "topology.kubernetes.io/zone" "kubernetes.io/hostname" }}
  - maxSkew: 1
    topologyKey: {{ $key }}
    whenUnsatisfiable: ScheduleAnyway
    labelSelector:
      matchLabels:
        {{- $sel | nindent 8 }}
    # spread each rollout's new pods on their own, not counted together with the old ReplicaSet's
    matchLabelKeys: [pod-template-hash]
  {{- end }}
{{- end }}
{{- end }}

{{/* "true" where the cluster serves the prometheus-operator CRDs (ServiceMonitor, PodMonitor, PrometheusRule).
`helm template` knows only what --api-versions tells it: pass --api-versions monitoring.coreos.com/v1. */}}
{{- define "livegate.monitoringApi" -}}
{{- if .Capabilities.APIVersions.Has "monitoring.coreos.com/v1" }}true{{ end }}
{{- end }}

{{/* The TCP port the fronts fetch OIDC signing keys from: with auth mode oidc and an http(s) auth.oidc.jwks, its
URL's port (443 for https, 80 for http, unless the URL names one); empty otherwise (a JWKS file: no egress). */}}
{{- define "livegate.oidc.jwksPort" -}}
{{- $jwks := .Values.auth.oidc.jwks }}
{{- if and (has "oidc" .Values.auth.modes) (regexMatch "^https?://" $jwks) }}
{{- $u := urlParse $jwks }}
{{- $hostPort := regexSplit ":" $u.host -1 }}
{{- if gt (len $hostPort) 1 }}{{ last $hostPort }}{{ else }}{{ ternary 443 80 (eq $u.scheme "https") }}{{ end }}
{{- end }}
{{- end }}
