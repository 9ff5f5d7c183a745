{{/*
Named templates. Those taking a component get a dict:
  root: the top context ($), component: "infer" | "sink" | ..., values: that component's values.
*/}}

{{- define "iotinfer.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "iotinfer.fullname" -}}
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

{{- define "iotinfer.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* The name of a component's objects. CronJob names are cut to 52: the controller appends 11. */}}
{{- define "iotinfer.componentName" -}}
{{- printf "%s-%s" (include "iotinfer.fullname" .root) .component | trunc 52 | trimSuffix "-" }}
{{- end }}

{{- define "iotinfer.selectorLabels" -}}
app.kubernetes.io/name: {{ include "iotinfer.name" .root }}
app.kubernetes.io/instance: {{ .root.Release.Name }}
{{- with .component }}
app.kubernetes.io/component: {{ . }}
{{- end }}
{{- end }}

{{- define "iotinfer.labels" -}}
helm.sh/chart: {{ include "iotinfer.chart" .root }}
{{ include "iotinfer.selectorLabels" . }}
app.kubernetes.io/version: {{ .root.Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .root.Release.Service }}
app.kubernetes.io/part-of: iotinfer
{{- end }}

{{/* Labels of a pod: the selector's, the chart-wide podLabels and the component's. */}}
{{- define "iotinfer.podLabels" -}}
{{- $labels := merge (dict) (.values.podLabels | default dict) (.root.Values.podLabels | default dict) }}
{{- include "iotinfer.labels" . }}
{{- with $labels }}
{{ toYaml . }}
{{- end }}
{{- end }}

{{- define "iotinfer.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "iotinfer.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- default "default" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{- define "iotinfer.image" -}}
{{- if .Values.image.digest }}
{{- printf "%s@%s" .Values.image.repository .Values.image.digest }}
{{- else }}
{{- printf "%s:%s" .Values.image.repository (default .Chart.AppVersion .Values.image.tag) }}
{{- end }}
{{- end }}

{{- define "iotinfer.mongodbSecretName" -}}
{{- default (printf "%s-mongodb" (include "iotinfer.fullname" .)) .Values.mongodb.existingSecret }}
{{- end }}

{{- define "iotinfer.mongodbSecretKey" -}}
{{- if .Values.mongodb.existingSecret }}{{ .Values.mongodb.existingSecretKey }}{{ else }}uri{{ end }}
{{- end }}

{{/*
The Spark Connect URL the services get, or "" when there is no server. Behind the TLS proxy,
the Service's name in the namespace, as the certificate names it.
*/}}
{{- define "iotinfer.sparkUrl" -}}
{{- $c := .Values.spark.connect }}
{{- if .Values.spark.external.url }}
{{- .Values.spark.external.url }}
{{- else if and $c.enabled $c.tls.enabled }}
{{- printf "sc://%s.%s.svc:%d/;use_ssl=true" (include "iotinfer.componentName" (dict "root" . "component" "spark-connect")) .Release.Namespace (int $c.port) }}
{{- else if and $c.enabled $c.auth.enabled }}
{{- /* The token goes in the clear inside the cluster only because the URL says so: a token alone implies TLS. */}}
{{- printf "sc://%s:%d/;use_ssl=false" (include "iotinfer.componentName" (dict "root" . "component" "spark-connect")) (int $c.port) }}
{{- else if $c.enabled }}
{{- printf "sc://%s:%d" (include "iotinfer.componentName" (dict "root" . "component" "spark-connect")) (int $c.port) }}
{{- end }}
{{- end }}

{{/* The Secret holding the CA the services trust for Spark Connect's TLS: "name: ..., key: ...", or "" for the system's CAs. */}}
{{- define "iotinfer.sparkCaRef" -}}
{{- $c := .Values.spark.connect }}
{{- if and .Values.spark.external.url .Values.spark.external.caSecret }}
{{- toYaml (dict "name" .Values.spark.external.caSecret "key" .Values.spark.external.caSecretKey) }}
{{- else if and (not .Values.spark.external.url) $c.enabled $c.tls.enabled $c.tls.caSecret }}
{{- toYaml (dict "name" $c.tls.caSecret "key" $c.tls.caSecretKey) }}
{{- end }}
{{- end }}

{{- define "iotinfer.sparkCaDir" -}}/etc/iotinfer/spark-ca{{- end }}

{{/* The port of the Spark Connect pod that clients reach: the TLS proxy's, or Spark's own. */}}
{{- define "iotinfer.sparkConnectPodPort" -}}
{{- $c := .Values.spark.connect }}
{{- ternary $c.tls.port $c.port $c.tls.enabled | int }}
{{- end }}

{{/*
The TLS proxy's nginx.conf. gRPC needs HTTP/2, which clients negotiate with ALPN h2 in the TLS
handshake (`http2 on`: nginx 1.25.1 or later).
*/}}
{{- define "iotinfer.sparkTlsProxyConfig" -}}
{{- $s := .values -}}
daemon off;
worker_processes 1;
pid /tmp/nginx.pid;
error_log stderr warn;
events {
  worker_connections 1024;
}
http {
  access_log off;
  # The root file system is read-only.
  client_body_temp_path /tmp/client_body;
  proxy_temp_path /tmp/proxy;
  fastcgi_temp_path /tmp/fastcgi;
  uwsgi_temp_path /tmp/uwsgi;
  scgi_temp_path /tmp/scgi;
  server {
    listen {{ $s.tls.port }} ssl;
    http2 on;
    ssl_certificate /etc/iotinfer/spark-tls/tls.crt;
    ssl_certificate_key /etc/iotinfer/spark-tls/tls.key;
    ssl_protocols TLSv1.2 TLSv1.3;
    # A gRPC call's messages are one request body: plans and artifacts of any size.
    client_max_body_size 0;
    # A long query may send nothing for minutes before its results.
    grpc_read_timeout 1h;
    grpc_send_timeout 1h;
    location / {
      grpc_pass grpc://127.0.0.1:{{ $s.port }};
    }
  }
}
{{- end }}

{{/* The Secret the chart's Spark Connect server takes its token from: "name: ..., key: ...", or "" without auth. */}}
{{- define "iotinfer.sparkConnectTokenRef" -}}
{{- $auth := .Values.spark.connect.auth }}
{{- if and .Values.spark.connect.enabled $auth.enabled }}
{{- if $auth.existingSecret }}
{{- toYaml (dict "name" $auth.existingSecret "key" $auth.existingSecretKey) }}
{{- else }}
{{- toYaml (dict "name" (printf "%s-token" (include "iotinfer.componentName" (dict "root" . "component" "spark-connect"))) "key" "token") }}
{{- end }}
{{- end }}
{{- end }}

{{/* The Secret of the token the services present to Spark (IOTINFER_SPARK_TOKEN), as above. */}}
{{- define "iotinfer.sparkTokenRef" -}}
{{- if .Values.spark.external.url }}
{{- with .Values.spark.external.tokenSecret }}
{{- toYaml (dict "name" . "key" $.Values.spark.external.tokenSecretKey) }}
{{- end }}
{{- else }}
{{- include "iotinfer.sparkConnectTokenRef" . }}
{{- end }}
{{- end }}

{{- define "iotinfer.requireSparkUrl" -}}
{{- if and .Values.spark.external.url .Values.spark.connect.enabled }}
{{- fail "set either spark.external.url or spark.connect.enabled, not both" }}
{{- end }}
{{- if not (include "iotinfer.sparkUrl" .) }}
{{- fail "an engine is spark: set spark.external.url or spark.connect.enabled=true" }}
{{- end }}
{{- end }}

{{/* --kafka KEY=VALUE for kafka.properties, in key order so that renders are stable. */}}
{{- define "iotinfer.kafkaArgs" -}}
{{- $props := .Values.kafka.properties | default dict }}
{{- range $key := keys $props | sortAlpha }}
- {{ printf "--kafka=%s=%s" $key (include "iotinfer.str" (get $props $key)) | quote }}
{{- end }}
{{- end }}

{{/* A scalar as a flag value: numbers from values are float64, which %v prints as 1e+06. */}}
{{- define "iotinfer.str" -}}
{{- if and (kindIs "float64" .) (eq . (floor .)) }}{{ int64 . }}{{ else }}{{ . }}{{ end }}
{{- end }}

{{- define "iotinfer.kafkaConfigDir" -}}/etc/iotinfer/kafka{{- end }}

{{/*
The environment of an iotinfer container. Flags: kafka, store, spark, http (booleans); model (IOTINFER_MODEL, optional).
*/}}
{{- define "iotinfer.env" -}}
{{- $root := .root }}
{{- /* The Kafka transactional id suffix: unique per live pod, so replicas never fence each other. */}}
- name: IOTINFER_INSTANCE_ID
  valueFrom:
    fieldRef:
      fieldPath: metadata.name
{{- if .kafka }}
- name: IOTINFER_BROKERS
  value: {{ $root.Values.kafka.brokers | quote }}
{{- if $root.Values.kafka.existingSecret }}
- name: IOTINFER_KAFKA_CONFIG
  value: {{ printf "%s/kafka.properties" (include "iotinfer.kafkaConfigDir" $root) | quote }}
{{- end }}
{{- end }}
{{- if .store }}
- name: IOTINFER_STORE
  valueFrom:
    secretKeyRef:
      name: {{ include "iotinfer.mongodbSecretName" $root }}
      key: {{ include "iotinfer.mongodbSecretKey" $root }}
- name: IOTINFER_DB
  value: {{ $root.Values.mongodb.database | quote }}
{{- end }}
{{- with .model }}
- name: IOTINFER_MODEL
  value: {{ . | quote }}
{{- end }}
{{- if .spark }}
- name: IOTINFER_SPARK
  value: {{ include "iotinfer.sparkUrl" $root | quote }}
{{- /* From the Secret, never in the URL: the URL is a plain value of the pod spec. */}}
{{- with include "iotinfer.sparkTokenRef" $root | fromYaml }}
- name: IOTINFER_SPARK_TOKEN
  valueFrom:
    secretKeyRef:
      {{- toYaml . | nindent 6 }}
{{- end }}
{{- if include "iotinfer.sparkCaRef" $root }}
- name: IOTINFER_SPARK_CA
  value: {{ printf "%s/ca.crt" (include "iotinfer.sparkCaDir" $root) | quote }}
{{- end }}
{{- end }}
{{- if .http }}
- name: IOTINFER_HTTP_PORT
  value: {{ $root.Values.metrics.port | quote }}
- name: IOTINFER_HTTP_HOST
  value: "0.0.0.0"
{{- end }}
{{- with .values.extraEnv }}
{{ toYaml . }}
{{- end }}
{{- end }}

{{- define "iotinfer.volumeMounts" -}}
- name: tmp
  mountPath: /tmp
{{- if and .kafka .root.Values.kafka.existingSecret }}
- name: kafka-config
  mountPath: {{ include "iotinfer.kafkaConfigDir" .root }}
  readOnly: true
{{- end }}
{{- if and .kafka .root.Values.kafka.tls.existingSecret }}
- name: kafka-tls
  mountPath: {{ .root.Values.kafka.tls.mountPath }}
  readOnly: true
{{- end }}
{{- if and .spark (include "iotinfer.sparkCaRef" .root) }}
- name: spark-ca
  mountPath: {{ include "iotinfer.sparkCaDir" .root }}
  readOnly: true
{{- end }}
{{- with .extraVolumeMounts }}
{{ toYaml . }}
{{- end }}
{{- with .values.extraVolumeMounts }}
{{ toYaml . }}
{{- end }}
{{- end }}

{{- define "iotinfer.volumes" -}}
- name: tmp
  emptyDir: {}
{{- if and .kafka .root.Values.kafka.existingSecret }}
- name: kafka-config
  secret:
    secretName: {{ .root.Values.kafka.existingSecret }}
    defaultMode: 0440
    items:
      - key: {{ .root.Values.kafka.existingSecretKey }}
        path: kafka.properties
{{- end }}
{{- if and .kafka .root.Values.kafka.tls.existingSecret }}
- name: kafka-tls
  secret:
    secretName: {{ .root.Values.kafka.tls.existingSecret }}
    defaultMode: 0440
{{- end }}
{{- with and .spark (include "iotinfer.sparkCaRef" .root | fromYaml) }}
- name: spark-ca
  secret:
    secretName: {{ .name }}
    defaultMode: 0440
    items:
      - key: {{ .key }}
        path: ca.crt
{{- end }}
{{- with .extraVolumes }}
{{ toYaml . }}
{{- end }}
{{- with .values.extraVolumes }}
{{ toYaml . }}
{{- end }}
{{- end }}

{{/*
The pod spec of an iotinfer component. Besides root/component/values:
  args: the container's arguments; kafka, store, spark, http: as for iotinfer.env;
  service: a long-running service (ports and probes); restartPolicy;
  extraVolumes, extraVolumeMounts: the chart's own, ahead of the user's.
*/}}
{{- define "iotinfer.podSpec" -}}
{{- $root := .root }}
{{- $v := .values }}
{{- with $root.Values.imagePullSecrets }}
imagePullSecrets:
  {{- toYaml . | nindent 2 }}
{{- end }}
serviceAccountName: {{ include "iotinfer.serviceAccountName" $root }}
automountServiceAccountToken: {{ $root.Values.serviceAccount.automountToken }}
securityContext:
  {{- toYaml $root.Values.podSecurityContext | nindent 2 }}
{{- with .restartPolicy }}
restartPolicy: {{ . }}
{{- end }}
{{- with $v.terminationGracePeriodSeconds }}
terminationGracePeriodSeconds: {{ . }}
{{- end }}
{{- with $v.priorityClassName }}
priorityClassName: {{ . }}
{{- end }}
containers:
  - name: {{ .component }}
    image: {{ include "iotinfer.image" $root | quote }}
    imagePullPolicy: {{ $root.Values.image.pullPolicy }}
    args:
      {{- range .args }}
      - {{ . | quote }}
      {{- end }}
      {{- range $v.extraArgs }}
      - {{ . | quote }}
      {{- end }}
    env:
      {{- include "iotinfer.env" . | trim | nindent 6 }}
    {{- if .service }}
    {{- $probes := mergeOverwrite (deepCopy $root.Values.probes) ($v.probes | default dict) }}
    ports:
      - name: metrics
        containerPort: {{ $root.Values.metrics.port }}
        protocol: TCP
    startupProbe:
      {{- toYaml $probes.startup | nindent 6 }}
    livenessProbe:
      {{- toYaml $probes.liveness | nindent 6 }}
    readinessProbe:
      {{- toYaml $probes.readiness | nindent 6 }}
    {{- end }}
    resources:
      {{- toYaml $v.resources | nindent 6 }}
    securityContext:
      {{- toYaml $root.Values.securityContext | nindent 6 }}
    volumeMounts:
      {{- include "iotinfer.volumeMounts" . | trim | nindent 6 }}
volumes:
  {{- include "iotinfer.volumes" . | trim | nindent 2 }}
{{- with $v.nodeSelector }}
nodeSelector:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- with $v.affinity }}
affinity:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- with $v.tolerations }}
tolerations:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- with $v.topologySpreadConstraints }}
topologySpreadConstraints:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- end }}

{{/* Pod annotations: the chart-wide ones, the component's, and a checksum of the chart's Secret. */}}
{{- define "iotinfer.podAnnotations" -}}
{{- $annotations := merge (dict) (.values.podAnnotations | default dict) (.root.Values.podAnnotations | default dict) }}
{{- if and .store (not .root.Values.mongodb.existingSecret) }}
{{- /* A changed URI reaches running pods only through a restart. */}}
{{- $_ := set $annotations "checksum/mongodb" (include (print .root.Template.BasePath "/secret.yaml") .root | sha256sum) }}
{{- end }}
{{- with $annotations }}
{{- toYaml . }}
{{- end }}
{{- end }}

{{/*
A long-running service: a Deployment, or a StatefulSet when .workload says so. Takes what
iotinfer.podSpec takes, plus: replicas (omitted when an HPA or KEDA owns it), strategy (a Deployment's;
a StatefulSet replaces one pod at a time).
*/}}
{{- define "iotinfer.deployment" -}}
{{- $v := .values }}
{{- $statefulSet := eq (.workload | default "Deployment") "StatefulSet" }}
apiVersion: apps/v1
kind: {{ ternary "StatefulSet" "Deployment" $statefulSet }}
metadata:
  name: {{ include "iotinfer.componentName" . }}
  labels:
    {{- include "iotinfer.labels" . | nindent 4 }}
spec:
  {{- /* An autoscaler owns the count: a value here would reset it at every upgrade. */}}
  {{- if not (or (dig "autoscaling" "enabled" false $v) (dig "autoscaling" "keda" "enabled" false $v)) }}
  replicas: {{ $v.replicas }}
  {{- end }}
  revisionHistoryLimit: 3
  {{- if $statefulSet }}
  # The metrics Service is headless: it gives the pods their stable DNS names too.
  serviceName: {{ printf "%s-metrics" (include "iotinfer.componentName" .) }}
  # Replicas share partitions and need no start order; scaling adds or removes them at once.
  podManagementPolicy: Parallel
  updateStrategy:
    type: RollingUpdate
  {{- else }}
  {{- with .strategy }}
  strategy:
    {{- toYaml . | nindent 4 }}
  {{- end }}
  {{- end }}
  selector:
    matchLabels:
      {{- include "iotinfer.selectorLabels" . | nindent 6 }}
  template:
    metadata:
      labels:
        {{- include "iotinfer.podLabels" . | nindent 8 }}
      {{- with include "iotinfer.podAnnotations" . }}
      annotations:
        {{- . | nindent 8 }}
      {{- end }}
    spec:
      {{- $_ := set . "service" true }}
      {{- include "iotinfer.podSpec" . | trim | nindent 6 }}
{{- end }}

{{/* The headless Service Prometheus finds a component's pods through. */}}
{{- define "iotinfer.metricsService" -}}
apiVersion: v1
kind: Service
metadata:
  name: {{ printf "%s-metrics" (include "iotinfer.componentName" .) }}
  labels:
    {{- include "iotinfer.labels" . | nindent 4 }}
spec:
  clusterIP: None
  # A consumer without partitions is unready, and its metrics say why: scrape it all the same.
  publishNotReadyAddresses: true
  selector:
    {{- include "iotinfer.selectorLabels" . | nindent 4 }}
  ports:
    - name: metrics
      port: {{ .root.Values.metrics.port }}
      targetPort: metrics
      protocol: TCP
{{- end }}

{{- define "iotinfer.pdb" -}}
{{- $pdb := .values.pdb }}
apiVersion: policy/v1
kind: PodDisruptionBudget
metadata:
  name: {{ include "iotinfer.componentName" . }}
  labels:
    {{- include "iotinfer.labels" . | nindent 4 }}
spec:
  {{- if not (kindIs "invalid" $pdb.minAvailable) }}
  minAvailable: {{ $pdb.minAvailable }}
  {{- else }}
  maxUnavailable: {{ $pdb.maxUnavailable }}
  {{- end }}
  # Replicas beyond the partitions are unready for good; under the default policy they would
  # block every node drain.
  unhealthyPodEvictionPolicy: AlwaysAllow
  selector:
    matchLabels:
      {{- include "iotinfer.selectorLabels" . | nindent 6 }}
{{- end }}

{{/* A NetworkPolicy egress rule of networkPolicy.egress: its peers (none: any address) and ports. */}}
{{- define "iotinfer.egressRule" -}}
{{- $rule := dict }}
{{- with .to }}{{ $_ := set $rule "to" . }}{{ end }}
{{- with .ports }}{{ $_ := set $rule "ports" . }}{{ end }}
{{- toYaml (list $rule) }}
{{- end }}

{{/*
An alert's labels: its severity (from .alert, its values), its component, and the chart-wide
metrics.prometheusRule.alertLabels, which cannot replace the first two nor repeat a key.
*/}}
{{- define "iotinfer.alertLabels" -}}
{{- $own := dict "severity" .alert.severity "component" .component }}
{{- toYaml (merge $own (.root.Values.metrics.prometheusRule.alertLabels | default dict)) }}
{{- end }}
