{{/* The pod template of a batch run, shared by the Job and the CronJob. Takes the root context. */}}
{{- define "iotinfer.batchPodTemplate" -}}
{{- $v := .Values.batch }}
{{- $spark := eq $v.engine "spark" }}
{{- if $spark }}
{{- include "iotinfer.requireSparkUrl" . }}
{{- end }}
{{- $args := list "batch"
  (printf "--engine=%s" $v.engine)
  (printf "--out=%s" $v.output.mountPath) }}
{{- if $spark }}
{{- $args = append $args (printf "--spark-partitions=%d" (int64 $v.sparkPartitions)) }}
{{- end }}
{{- $results := dict "name" "results" }}
{{- if $v.output.existingClaim }}
{{- $_ := set $results "persistentVolumeClaim" (dict "claimName" $v.output.existingClaim) }}
{{- else }}
{{- $_ := set $results "emptyDir" dict }}
{{- end }}
{{- $ctx := dict "root" . "component" "batch" "values" $v "args" $args "store" true "spark" $spark
     "restartPolicy" "Never"
     "extraVolumes" (list $results)
     "extraVolumeMounts" (list (dict "name" "results" "mountPath" $v.output.mountPath)) }}
metadata:
  labels:
    {{- include "iotinfer.podLabels" $ctx | nindent 4 }}
  {{- with include "iotinfer.podAnnotations" $ctx }}
  annotations:
    {{- . | nindent 4 }}
  {{- end }}
spec:
  {{- include "iotinfer.podSpec" $ctx | trim | nindent 2 }}
{{- end }}
