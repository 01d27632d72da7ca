{{/* Names, labels and the settings every component shares. */}}

{{- define "armorflow.name" -}}
{{- .Chart.Name | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{- define "armorflow.fullname" -}}
{{- if contains .Chart.Name .Release.Name -}}
{{- .Release.Name | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name .Chart.Name | trunc 63 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}

{{- define "armorflow.labels" -}}
app.kubernetes.io/name: {{ include "armorflow.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" }}
{{- end -}}

{{/* Selector labels of one component: pass (dict "root" $ "component" "agent"). */}}
{{- define "armorflow.selectorLabels" -}}
app.kubernetes.io/name: {{ include "armorflow.name" .root }}
app.kubernetes.io/instance: {{ .root.Release.Name }}
app.kubernetes.io/component: {{ .component }}
{{- end -}}

{{- define "armorflow.image" -}}
{{- $tag := .Values.image.tag | default .Chart.AppVersion -}}
{{- if .Values.image.registry -}}
{{- printf "%s/%s:%s" .Values.image.registry .Values.image.repository $tag -}}
{{- else -}}
{{- printf "%s:%s" .Values.image.repository $tag -}}
{{- end -}}
{{- end -}}

{{- define "armorflow.systemNamespace" -}}
{{- .Values.systemNamespace | default .Release.Namespace -}}
{{- end -}}

{{- define "armorflow.bootstrapServers" -}}
{{- if .Values.broker.embedded.enabled -}}
{{- printf "%s-broker.%s.svc:%d" (include "armorflow.fullname" .) .Release.Namespace (int .Values.broker.embedded.port) -}}
{{- else -}}
{{- required "kafka.bootstrapServers is required (or set broker.embedded.enabled=true)" .Values.kafka.bootstrapServers -}}
{{- end -}}
{{- end -}}

{{- define "armorflow.checks" -}}
{{- if not .Values.behaviorModeling.enabled -}}
{{- fail "armorflow implements vArmor's BehaviorModeling mode only: behaviorModeling.enabled=false leaves nothing to install" -}}
{{- end -}}
{{- if and .Values.kafka.tls.enabled (not .Values.kafka.tls.secretName) -}}
{{- fail "kafka.tls.enabled needs kafka.tls.secretName" -}}
{{- end -}}
{{- if and .Values.kafka.sasl.enabled (not .Values.kafka.sasl.secretName) -}}
{{- fail "kafka.sasl.enabled needs kafka.sasl.secretName" -}}
{{- end -}}
{{- end -}}

{{/*
Kafka settings as environment variables. librdkafka options travel in
ARMORFLOW_KAFKA_OPTIONS ("k=v;k=v"); the SASL credentials come from the Secret through
variables that Kubernetes expands inside that value, so they never sit in the manifest.
*/}}
{{- define "armorflow.kafkaEnv" -}}
- name: ARMORFLOW_BOOTSTRAP_SERVERS
  value: {{ include "armorflow.bootstrapServers" . | quote }}
{{- $opts := list -}}
{{- $tls := .Values.kafka.tls -}}
{{- $sasl := .Values.kafka.sasl -}}
{{- if and $tls.enabled $sasl.enabled -}}
{{- $opts = append $opts "security.protocol=SASL_SSL" -}}
{{- else if $tls.enabled -}}
{{- $opts = append $opts "security.protocol=SSL" -}}
{{- else if $sasl.enabled -}}
{{- $opts = append $opts "security.protocol=SASL_PLAINTEXT" -}}
{{- end -}}
{{- if $tls.enabled -}}
{{- $opts = append $opts (printf "ssl.ca.location=/etc/armorflow/kafka-tls/%s" $tls.caKey) -}}
{{- if $tls.certKey -}}
{{- $opts = append $opts (printf "ssl.certificate.location=/etc/armorflow/kafka-tls/%s" $tls.certKey) -}}
{{- $opts = append $opts (printf "ssl.key.location=/etc/armorflow/kafka-tls/%s" $tls.keyKey) -}}
{{- end -}}
{{- end -}}
{{- if $sasl.enabled -}}
{{- $opts = append $opts (printf "sasl.mechanism=%s" $sasl.mechanism) -}}
{{- $opts = append $opts "sasl.username=$(ARMORFLOW_KAFKA_SASL_USERNAME)" -}}
{{- $opts = append $opts "sasl.password=$(ARMORFLOW_KAFKA_SASL_PASSWORD)" -}}
{{- end -}}
{{- range $k, $v := .Values.kafka.options -}}
{{- $opts = append $opts (printf "%s=%v" $k $v) -}}
{{- end }}
{{- if $sasl.enabled }}
- name: ARMORFLOW_KAFKA_SASL_USERNAME
  valueFrom:
    secretKeyRef:
      name: {{ $sasl.secretName }}
      key: {{ $sasl.usernameKey }}
- name: ARMORFLOW_KAFKA_SASL_PASSWORD
  valueFrom:
    secretKeyRef:
      name: {{ $sasl.secretName }}
      key: {{ $sasl.passwordKey }}
{{- end }}
{{- if $opts }}
- name: ARMORFLOW_KAFKA_OPTIONS
  value: {{ join ";" $opts | quote }}
{{- end }}
{{- end -}}

{{- define "armorflow.kafkaVolumeMounts" -}}
{{- if .Values.kafka.tls.enabled }}
- name: kafka-tls
  mountPath: /etc/armorflow/kafka-tls
  readOnly: true
{{- end }}
{{- end -}}

{{- define "armorflow.kafkaVolumes" -}}
{{- if .Values.kafka.tls.enabled }}
- name: kafka-tls
  secret:
    secretName: {{ .Values.kafka.tls.secretName }}
{{- end }}
{{- end -}}

{{/* The restricted security context of the components that need no privilege. */}}
{{- define "armorflow.restrictedContainer" -}}
allowPrivilegeEscalation: false
readOnlyRootFilesystem: true
runAsNonRoot: true
runAsUser: 65532
runAsGroup: 65532
capabilities:
  drop: [ALL]
seccompProfile:
  type: RuntimeDefault
{{- end -}}
