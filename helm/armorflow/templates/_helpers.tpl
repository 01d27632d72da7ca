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
{{- required "kafka.bootstrapServers is required: the address of your Kafka (host:port[,host:port]), or set broker.embedded.enabled=true" (.Values.kafka.bootstrapServers | trim) -}}
{{- end -}}
{{- end -}}

{{/* The chart's default Kafka address: Strimzi's quick-start cluster, an example. */}}
{{- define "armorflow.kafkaPlaceholder" -}}
my-cluster-kafka-bootstrap.kafka.svc:9092
{{- end -}}

{{/* "true" when Kafka is the untouched example address (NOTES.txt warns about it). */}}
{{- define "armorflow.kafkaIsPlaceholder" -}}
{{- if and (not .Values.broker.embedded.enabled) (eq (.Values.kafka.bootstrapServers | trim) (include "armorflow.kafkaPlaceholder" .)) -}}
true
{{- end -}}
{{- end -}}

{{/*
The port of /metrics, /healthz and /readyz (armorflow/metrics.py) of a component; 0: off.
operator.healthPort is the operator's former setting and still wins for it.
*/}}
{{- define "armorflow.metricsPort" -}}
{{- $port := .root.Values.metrics.port -}}
{{- if and (eq .component "operator") .root.Values.operator.healthPort -}}
{{- $port = .root.Values.operator.healthPort -}}
{{- end -}}
{{- int $port -}}
{{- end -}}

{{/* Pod annotations for Prometheus' usual kubernetes-pods scrape job (docs/deploy.md). */}}
{{- define "armorflow.metricsAnnotations" -}}
{{- $port := include "armorflow.metricsPort" . | int -}}
{{- if and $port .root.Values.metrics.podAnnotations -}}
prometheus.io/scrape: "true"
prometheus.io/port: {{ $port | quote }}
prometheus.io/path: /metrics
{{- end -}}
{{- end -}}

{{/* The container's --metrics-port argument (a list item), nothing when metrics are off. */}}
{{- define "armorflow.metricsArg" -}}
{{- $port := include "armorflow.metricsPort" . | int -}}
{{- if $port }}
- --metrics-port={{ $port }}
{{- end -}}
{{- end -}}

{{/*
Port and probes of a component: liveness on /healthz (its loops turn), readiness on
/readyz (it reached Kafka...); with "startup" a startup probe gives it up to five minutes
first (the agent compiles its eBPF programs, the pipeline recovers its tables).
Pass (dict "root" $ "component" "agent" "startup" true).
*/}}
{{- define "armorflow.probes" -}}
{{- $port := include "armorflow.metricsPort" . | int -}}
{{- if $port }}
ports:
  - name: metrics
    containerPort: {{ $port }}
    protocol: TCP
{{- if .startup }}
startupProbe:
  httpGet:
    path: /healthz
    port: metrics
  periodSeconds: 5
  failureThreshold: 60
{{- end }}
livenessProbe:
  httpGet:
    path: /healthz
    port: metrics
  {{- if not .startup }}
  initialDelaySeconds: 10
  {{- end }}
  periodSeconds: 15
  timeoutSeconds: 5
  failureThreshold: 4
readinessProbe:
  httpGet:
    path: /readyz
    port: metrics
  periodSeconds: 10
  timeoutSeconds: 5
{{- end -}}
{{- end -}}

{{/*
An init container that waits until every topic exists with its partitions (created by
the topics Job, or by whoever runs Kafka when kafka.createTopics=false): a component
started before them would fail, or have them auto-created with one partition, which
breaks the co-partitioning of profiles. A pod stuck in Init says why in its log.
*/}}
{{- define "armorflow.waitForTopics" -}}
- name: wait-for-topics
  image: {{ include "armorflow.image" . }}
  imagePullPolicy: {{ .Values.image.pullPolicy }}
  args: [topics, --wait=0]
  env:
    {{- include "armorflow.kafkaEnv" . | nindent 4 }}
  resources:
    requests:
      cpu: 10m
      memory: 64Mi
    limits:
      cpu: 200m
      memory: 128Mi
  securityContext:
    {{- include "armorflow.restrictedContainer" . | nindent 4 }}
  {{- if .Values.kafka.tls.enabled }}
  volumeMounts:
    {{- include "armorflow.kafkaVolumeMounts" . | nindent 4 }}
  {{- end }}
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
