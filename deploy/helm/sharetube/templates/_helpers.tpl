{{/*
Shared helpers. Every file under templates/<service>/ is one include of a helper below with
(dict "ctx" $ "component" "<service>"), so all services render the same objects from the same
shape of values (.Values.<service>). Global objects (ConfigMap, Secret, Ingress, migrations,
dashboards) sit at the top of templates/.
*/}}

{{- define "sharetube.components" -}}
gateway rooms queue chat auth janitor
{{- end }}

{{- define "sharetube.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "sharetube.fullname" -}}
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

{{- define "sharetube.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* <fullname>-<component>. Takes (dict "ctx" $ "component" name). */}}
{{- define "sharetube.resourceName" -}}
{{- printf "%s-%s" (include "sharetube.fullname" .ctx) .component | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "sharetube.configName" -}}
{{- printf "%s-config" (include "sharetube.fullname" .) }}
{{- end }}

{{- define "sharetube.secretName" -}}
{{- .Values.secrets.existingSecret | default (printf "%s-secrets" (include "sharetube.fullname" .)) }}
{{- end }}

{{- define "sharetube.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- .Values.serviceAccount.name | default (include "sharetube.fullname" .) }}
{{- else }}
{{- .Values.serviceAccount.name | default "default" }}
{{- end }}
{{- end }}

{{- define "sharetube.image" -}}
{{- if .Values.image.digest }}
{{- printf "%s@%s" .Values.image.repository .Values.image.digest }}
{{- else }}
{{- printf "%s:%s" .Values.image.repository (.Values.image.tag | default .Chart.AppVersion) }}
{{- end }}
{{- end }}

{{/* Selector labels; component optional. Takes (dict "ctx" $ "component" name). */}}
{{- define "sharetube.selectorLabels" -}}
app.kubernetes.io/name: {{ include "sharetube.name" .ctx }}
app.kubernetes.io/instance: {{ .ctx.Release.Name }}
{{- with .component }}
app.kubernetes.io/component: {{ . }}
{{- end }}
{{- end }}

{{- define "sharetube.labels" -}}
helm.sh/chart: {{ include "sharetube.chart" .ctx }}
{{ include "sharetube.selectorLabels" . }}
app.kubernetes.io/version: {{ .ctx.Values.image.tag | default .ctx.Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .ctx.Release.Service }}
app.kubernetes.io/part-of: sharetube
{{- with .ctx.Values.commonLabels }}
{{ toYaml . }}
{{- end }}
{{- end }}

{{/* Renders nothing; fails on a combination of values that cannot work. */}}
{{- define "sharetube.check" -}}
{{- $v := index .ctx.Values .component }}
{{- if and $v.autoscaling.enabled $v.keda.enabled }}
{{- fail (printf "%s: autoscaling.enabled and keda.enabled are exclusive (KEDA makes its own HPA)" .component) }}
{{- end }}
{{- if gt (int $v.autoscaling.minReplicas) (int $v.autoscaling.maxReplicas) }}
{{- fail (printf "%s: autoscaling.minReplicas is above maxReplicas" .component) }}
{{- end }}
{{- if ge (int $v.preStopSleepSeconds) (int $v.terminationGracePeriodSeconds) }}
{{- fail (printf "%s: preStopSleepSeconds must leave time in terminationGracePeriodSeconds for the shutdown itself" .component) }}
{{- end }}
{{- end }}

{{/* "true" when an HPA or KEDA owns the replica count. */}}
{{- define "sharetube.autoscaled" -}}
{{- $v := index .ctx.Values .component }}
{{- if or $v.autoscaling.enabled $v.keda.enabled }}true{{ end }}
{{- end }}

{{/* The fewest replicas the service runs: what decides whether a PDB makes sense. */}}
{{- define "sharetube.minReplicas" -}}
{{- $v := index .ctx.Values .component }}
{{- if include "sharetube.autoscaled" . }}{{ $v.autoscaling.minReplicas }}{{ else }}{{ $v.replicas }}{{ end }}
{{- end }}

{{/* The gateway serves /metrics, /healthz and /readyz on its client port. */}}
{{- define "sharetube.portName" -}}
{{- if eq .component "gateway" }}http{{ else }}metrics{{ end }}
{{- end }}

{{- define "sharetube.port" -}}
{{- if eq .component "gateway" }}{{ .ctx.Values.ports.http }}{{ else }}{{ .ctx.Values.ports.metrics }}{{ end }}
{{- end }}

{{/*
The container's env: the chart's own variables, then the global extraEnv, then the service's
extraEnv; a name given later drops the earlier one (server-side apply refuses duplicates).
Config and secrets come in through envFrom.
*/}}
{{- define "sharetube.env" -}}
{{- $v := index .ctx.Values .component }}
{{- $own := list (dict "name" "OTEL_SERVICE_NAME" "value" (printf "sharetube-%s" .component)) }}
{{- if eq .component "gateway" }}
{{- $own = append $own (dict "name" "HOST" "value" "0.0.0.0") }}
{{- $own = append $own (dict "name" "PORT" "value" (toString .ctx.Values.ports.http)) }}
{{- else }}
{{- $own = append $own (dict "name" "METRICS_PORT" "value" (toString .ctx.Values.ports.metrics)) }}
{{- end }}
{{- $layers := list $own .ctx.Values.extraEnv $v.extraEnv }}
{{- $env := list }}
{{- range $i, $layer := $layers }}
{{- $later := list }}
{{- range (slice $layers (add1 $i)) }}{{ range . }}{{ $later = append $later .name }}{{ end }}{{ end }}
{{- range $layer }}{{ if not (has .name $later) }}{{ $env = append $env . }}{{ end }}{{ end }}
{{- end }}
{{- toYaml $env }}
{{- end }}

{{/* An httpGet probe from {path, enabled?, ...timings}. Takes (dict "probe" p "port" name). */}}
{{- define "sharetube.probe" -}}
httpGet:
  path: {{ .probe.path }}
  port: {{ .port }}
{{- with omit .probe "path" "enabled" }}
{{ toYaml . }}
{{- end }}
{{- end }}

{{/* Pod volumes and mounts: the root filesystem is read-only, Python may want a /tmp. */}}
{{- define "sharetube.tmpVolume" -}}
- name: tmp
  emptyDir:
    sizeLimit: 64Mi
{{- end }}

{{- define "sharetube.podSecurity" -}}
automountServiceAccountToken: false
{{- with .Values.imagePullSecrets }}
imagePullSecrets:
  {{- toYaml . | nindent 2 }}
{{- end }}
securityContext:
  {{- toYaml .Values.podSecurityContext | nindent 2 }}
{{- end }}

{{/* ------------------------------ per-service objects ------------------------------ */}}

{{- define "sharetube.deployment" -}}
{{- $ctx := .ctx }}
{{- include "sharetube.check" . }}
{{- $v := index .ctx.Values .component }}
{{- if $v.enabled }}
{{- $portName := include "sharetube.portName" . }}
apiVersion: apps/v1
kind: Deployment
metadata:
  name: {{ include "sharetube.resourceName" . }}
  namespace: {{ $ctx.Release.Namespace }}
  labels:
    {{- include "sharetube.labels" . | nindent 4 }}
spec:
  {{- if not (include "sharetube.autoscaled" .) }}
  replicas: {{ $v.replicas }}
  {{- end }}
  revisionHistoryLimit: 5
  selector:
    matchLabels:
      {{- include "sharetube.selectorLabels" . | nindent 6 }}
  strategy:
    type: RollingUpdate
    rollingUpdate:
      {{- toYaml $v.rollingUpdate | nindent 6 }}
  template:
    metadata:
      labels:
        {{- include "sharetube.labels" . | nindent 8 }}
        {{- with $v.podLabels }}
        {{- toYaml . | nindent 8 }}
        {{- end }}
      annotations:
        # New config or secrets roll the pods.
        checksum/config: {{ include (print $ctx.Template.BasePath "/configmap.yaml") $ctx | sha256sum }}
        {{- if not $ctx.Values.secrets.existingSecret }}
        checksum/secrets: {{ include (print $ctx.Template.BasePath "/secret.yaml") $ctx | sha256sum }}
        {{- end }}
        {{- with $v.podAnnotations }}
        {{- toYaml . | nindent 8 }}
        {{- end }}
    spec:
      serviceAccountName: {{ include "sharetube.serviceAccountName" $ctx }}
      {{- include "sharetube.podSecurity" $ctx | nindent 6 }}
      terminationGracePeriodSeconds: {{ $v.terminationGracePeriodSeconds }}
      containers:
        - name: {{ .component }}
          image: {{ include "sharetube.image" $ctx | quote }}
          imagePullPolicy: {{ $ctx.Values.image.pullPolicy }}
          command: ["python", "-m", "services.{{ .component }}"]
          ports:
            - name: {{ $portName }}
              containerPort: {{ include "sharetube.port" . }}
              protocol: TCP
          envFrom:
            - configMapRef:
                name: {{ include "sharetube.configName" $ctx }}
            # After the ConfigMap: a key in both (NATS_URL with credentials) takes the Secret's.
            - secretRef:
                name: {{ include "sharetube.secretName" $ctx }}
          env:
            {{- include "sharetube.env" . | nindent 12 }}
          {{- if $v.probes.startup.enabled }}
          startupProbe:
            {{- include "sharetube.probe" (dict "probe" $v.probes.startup "port" $portName) | nindent 12 }}
          {{- end }}
          livenessProbe:
            {{- include "sharetube.probe" (dict "probe" $v.probes.liveness "port" $portName) | nindent 12 }}
          readinessProbe:
            {{- include "sharetube.probe" (dict "probe" $v.probes.readiness "port" $portName) | nindent 12 }}
          {{- if gt (int $v.preStopSleepSeconds) 0 }}
          lifecycle:
            preStop:
              exec:
                command: ["sleep", "{{ $v.preStopSleepSeconds }}"]
          {{- end }}
          resources:
            {{- toYaml $v.resources | nindent 12 }}
          securityContext:
            {{- toYaml $ctx.Values.securityContext | nindent 12 }}
          volumeMounts:
            - name: tmp
              mountPath: /tmp
      volumes:
        {{- include "sharetube.tmpVolume" . | nindent 8 }}
      {{- with $v.nodeSelector }}
      nodeSelector:
        {{- toYaml . | nindent 8 }}
      {{- end }}
      {{- with $v.tolerations }}
      tolerations:
        {{- toYaml . | nindent 8 }}
      {{- end }}
      {{- with $v.affinity }}
      affinity:
        {{- toYaml . | nindent 8 }}
      {{- end }}
      topologySpreadConstraints:
        {{- if $v.topologySpreadConstraints }}
        {{- toYaml $v.topologySpreadConstraints | nindent 8 }}
        {{- else }}
        {{- range list "kubernetes.io/hostname" "topology.kubernetes.io/zone" }}
        - topologyKey: {{ . }}
          maxSkew: 1
          whenUnsatisfiable: ScheduleAnyway
          labelSelector:
            matchLabels:
              {{- include "sharetube.selectorLabels" $ | nindent 14 }}
        {{- end }}
        {{- end }}
{{- end }}
{{- end }}

{{- define "sharetube.service" -}}
{{- $ctx := .ctx }}
{{- include "sharetube.check" . }}
{{- $v := index .ctx.Values .component }}
{{- if $v.enabled }}
apiVersion: v1
kind: Service
metadata:
  name: {{ include "sharetube.resourceName" . }}
  namespace: {{ $ctx.Release.Namespace }}
  labels:
    {{- include "sharetube.labels" . | nindent 4 }}
  {{- with $v.service.annotations }}
  annotations:
    {{- toYaml . | nindent 4 }}
  {{- end }}
spec:
  type: {{ $v.service.type }}
  ports:
    - name: {{ include "sharetube.portName" . }}
      port: {{ include "sharetube.port" . }}
      targetPort: {{ include "sharetube.portName" . }}
      protocol: TCP
  selector:
    {{- include "sharetube.selectorLabels" . | nindent 4 }}
{{- end }}
{{- end }}

{{/*
The service's autoscaler: an autoscaling/v2 HPA, or a KEDA ScaledObject (which makes and owns
its own HPA), never both.
*/}}
{{- define "sharetube.hpa" -}}
{{- $ctx := .ctx }}
{{- include "sharetube.check" . }}
{{- $v := index .ctx.Values .component }}
{{- if and $v.enabled $v.autoscaling.enabled }}
apiVersion: autoscaling/v2
kind: HorizontalPodAutoscaler
metadata:
  name: {{ include "sharetube.resourceName" . }}
  namespace: {{ $ctx.Release.Namespace }}
  labels:
    {{- include "sharetube.labels" . | nindent 4 }}
spec:
  scaleTargetRef:
    apiVersion: apps/v1
    kind: Deployment
    name: {{ include "sharetube.resourceName" . }}
  minReplicas: {{ $v.autoscaling.minReplicas }}
  maxReplicas: {{ $v.autoscaling.maxReplicas }}
  metrics:
    - type: Resource
      resource:
        name: cpu
        target:
          type: Utilization
          averageUtilization: {{ $v.autoscaling.targetCPUUtilizationPercentage }}
    {{- range $v.autoscaling.podsMetrics }}
    - type: Pods
      pods:
        metric:
          name: {{ .name }}
        target:
          type: AverageValue
          averageValue: {{ .averageValue | quote }}
    {{- end }}
  {{- with $v.autoscaling.behavior }}
  behavior:
    {{- toYaml . | nindent 4 }}
  {{- end }}
{{- else if and $v.enabled $v.keda.enabled }}
apiVersion: keda.sh/v1alpha1
kind: ScaledObject
metadata:
  name: {{ include "sharetube.resourceName" . }}
  namespace: {{ $ctx.Release.Namespace }}
  labels:
    {{- include "sharetube.labels" . | nindent 4 }}
spec:
  scaleTargetRef:
    name: {{ include "sharetube.resourceName" . }}
  minReplicaCount: {{ $v.autoscaling.minReplicas }}
  maxReplicaCount: {{ $v.autoscaling.maxReplicas }}
  pollingInterval: {{ $v.keda.pollingInterval }}
  cooldownPeriod: {{ $v.keda.cooldownPeriod }}
  triggers:
    {{- if $v.keda.triggers }}
    {{- tpl (toYaml $v.keda.triggers) $ctx | nindent 4 }}
    {{- else }}
    - type: cpu
      metricType: Utilization
      metadata:
        value: {{ $v.autoscaling.targetCPUUtilizationPercentage | quote }}
    {{- end }}
{{- end }}
{{- end }}

{{- define "sharetube.pdb" -}}
{{- $ctx := .ctx }}
{{- include "sharetube.check" . }}
{{- $v := index .ctx.Values .component }}
{{- if and $v.enabled (gt (int (include "sharetube.minReplicas" .)) 1) }}
apiVersion: policy/v1
kind: PodDisruptionBudget
metadata:
  name: {{ include "sharetube.resourceName" . }}
  namespace: {{ $ctx.Release.Namespace }}
  labels:
    {{- include "sharetube.labels" . | nindent 4 }}
spec:
  maxUnavailable: {{ $v.pdb.maxUnavailable }}
  selector:
    matchLabels:
      {{- include "sharetube.selectorLabels" . | nindent 6 }}
{{- end }}
{{- end }}

{{- define "sharetube.servicemonitor" -}}
{{- $ctx := .ctx }}
{{- include "sharetube.check" . }}
{{- $v := index .ctx.Values .component }}
{{- $sm := $ctx.Values.metrics.serviceMonitor }}
{{- if and $v.enabled $sm.enabled }}
apiVersion: monitoring.coreos.com/v1
kind: ServiceMonitor
metadata:
  name: {{ include "sharetube.resourceName" . }}
  namespace: {{ $ctx.Release.Namespace }}
  labels:
    {{- include "sharetube.labels" . | nindent 4 }}
    {{- with $sm.labels }}
    {{- toYaml . | nindent 4 }}
    {{- end }}
spec:
  # job="gateway", "rooms", ...: the same job names as a local Prometheus scraping `make run`,
  # so one dashboard query works in both places.
  jobLabel: app.kubernetes.io/component
  selector:
    matchLabels:
      {{- include "sharetube.selectorLabels" . | nindent 6 }}
  endpoints:
    - port: {{ include "sharetube.portName" . }}
      path: /metrics
      interval: {{ $sm.interval }}
      scrapeTimeout: {{ $sm.scrapeTimeout }}
{{- end }}
{{- end }}
