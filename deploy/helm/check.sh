#!/usr/bin/env bash
# The Helm chart's check (ctest: deploy.helm). For the default values, each example and a few
# combinations: `helm lint --strict`, then `helm template` decoded strictly into the Kubernetes API
# types (and KEDA's) by check/ (Go), which also cross-checks selectors, probes and pod hardening,
# a KEDA ScaledObject against KEDA's Kafka scaler and infer's own settings, what the
# render grants and isolates (Roles, NetworkPolicies, secrets; more for the production example),
# decodes the Grafana dashboard strictly and parses every PromQL expression, holding the metrics
# it names to those src/ exports; the alerting rules of each render pass `promtool check rules`,
# and those of the default values `promtool test rules` (tests/alerts_test.yaml). Then proof
# that the checks are not rubber stamps: renders with a planted defect must be rejected, naming
# it.
# Needs Go (the pinned one ./dev setup installs, or go on PATH), and helm 3 and promtool as
# ./dev setup installs them (helm_install, promtool_install in scripts/deploy-tools.sh) or on
# PATH. Exits non-zero on the first problem.
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
ROOT="$(cd "$HERE/../.." && pwd)"
# shellcheck source=scripts/deploy-tools.sh
source "$ROOT/scripts/deploy-tools.sh"
CHART="$HERE/iotinfer"
EXAMPLES="$HERE/examples"

die() {
  printf 'deploy/helm/check.sh: %b\n' "$*" >&2
  exit 1
}
step() { printf '==> %s\n' "$*"; }

find_helm() {
  if [[ -x "$HELM" ]]; then
    echo "$HELM"
  elif command -v helm >/dev/null && [[ "$(helm version --template '{{.Version}}')" == v3.* ]]; then
    command -v helm
  else
    die "helm 3 not found at $HELM nor on PATH. Get it with ./dev setup, or:\n  source scripts/deploy-tools.sh && helm_install"
  fi
}
helm_bin=$(find_helm)

find_promtool() {
  if [[ -x "$PROMTOOL" ]]; then
    echo "$PROMTOOL"
  elif command -v promtool >/dev/null; then
    command -v promtool
  else
    die "promtool not found at $PROMTOOL nor on PATH. Get it with ./dev setup, or:\n  source scripts/deploy-tools.sh && promtool_install"
  fi
}
promtool_bin=$(find_promtool)
# The pinned Go that ./dev setup installs (scripts/go-toolchain.sh), else the one on PATH.
go_use
command -v go >/dev/null || die "go not found on PATH: the chart checker (deploy/helm/check) is Go"

# The checker, from Go's build cache after the first time. A binary of our own per run, so that
# checks of two checkouts sharing $ARTIFACTS cannot overwrite each other's.
bin_dir=$(mktemp -d)
trap 'rm -rf "$bin_dir"' EXIT
checker="$bin_dir/check"
step "building the checker ($("$helm_bin" version --template '{{.Version}}'), $(go env GOVERSION), promtool $("$promtool_bin" --version | sed -n 's/^promtool, version \([^ ]*\).*/\1/p'))"
(cd "$HERE/check" && GOFLAGS=-mod=readonly go vet ./... && GOFLAGS=-mod=readonly go test -count=1 ./... >/dev/null &&
  GOFLAGS="-mod=readonly -buildvcs=false" go build -o "$checker" .) || die "building or testing deploy/helm/check failed"

# The metric names the dashboard and the alerts may use: what src/ exports (a histogram's series
# are its _bucket, _sum and _count), so that a metric renamed there fails here, not as an empty
# panel or an alert that can never fire.
metrics="$bin_dir/metrics"
{
  grep -rhoE --include='*.cc' --include='*.h' '"iotinfer_[a-z0-9_]+"' "$ROOT/src" | tr -d '"'
  grep -rhoE --include='*.cc' --include='*.h' 'Kind::kHistogram, "iotinfer_[a-z0-9_]+"' "$ROOT/src" |
    sed -E 's/.*"(iotinfer_[a-z0-9_]+)"/\1_bucket \1_sum \1_count/' | tr ' ' '\n'
} | sort -u >"$metrics"
grep -qx iotinfer_infer_latency_seconds_bucket "$metrics" || die "found no histograms in src/: has the way metrics are declared changed?"
for name in iotinfer_producer_images_total iotinfer_producer_verdict iotinfer_infer_dead_lettered_total; do
  grep -qx "$name" "$metrics" || die "$name is not among the metrics found in src/: has the way metrics are declared changed?"
done
rules="$bin_dir/iotinfer-rules.yaml"

render() { "$helm_bin" template iotinfer "$CHART" --namespace iotinfer "$@"; }

# The checker's flags for a render with ARGS: a render of the production example is held to
# what production needs (check -production).
flags=()
set_flags() {
  local arg
  flags=()
  for arg in "$@"; do
    if [[ $arg == "$EXAMPLES/production.yaml" ]]; then flags=(-production); fi
  done
}

# Checks a manifest (stdin) with the metric names above and $flags, and writes its rules to $rules.
check_manifest() {
  rm -f "$rules"
  "$checker" -metrics "$metrics" -rules "$rules" "${flags[@]}"
}

# NAME ARGS...: lints and renders with ARGS; the checker must accept the render, and promtool
# its alerting rules.
expect_ok() {
  local name=$1 manifest out rules_out=""
  shift
  set_flags "$@"
  out=$("$helm_bin" lint --strict "$CHART" --namespace iotinfer "$@" 2>&1) || die "$name: helm lint --strict failed:\n$out"
  # Separately: lint reports a template's fail as information only, and a failed render would
  # reach the checker as an empty one.
  manifest=$(render "$@" 2>&1) || die "$name: helm template failed:\n$manifest"
  out=$(check_manifest 2>&1 <<<"$manifest") || die "$name: the render is not valid:\n$out"
  if [[ -f "$rules" ]]; then
    rules_out=$("$promtool_bin" check rules "$rules" 2>&1) || die "$name: promtool check rules failed:\n$rules_out"
    rules_out=", promtool:$(grep -o ' [0-9]* rules found' <<<"$rules_out")"
  fi
  step "$name: $out$rules_out"
}

# NAME WANT ARGS...: the render succeeds, and the checker rejects it with WANT in what it says.
expect_rejected() {
  local name=$1 want=$2 manifest
  shift 2
  set_flags "$@"
  manifest=$(render "$@") || die "$name: helm template failed, but this defect is the checker's to find"
  expect_rejected_manifest "$name" "$want" "$manifest"
}

# NAME WANT SED ARGS...: as expect_rejected, for a defect no value can plant: the sed expression
# SED plants it into the render (and must change it).
expect_rejected_edit() {
  local name=$1 want=$2 edit=$3 manifest edited
  shift 3
  set_flags "$@"
  manifest=$(render "$@") || die "$name: helm template failed"
  edited=$(sed -e "$edit" <<<"$manifest")
  [[ "$edited" != "$manifest" ]] || die "$name: '$edit' changes nothing in the render: the case tests nothing"
  expect_rejected_manifest "$name" "$want" "$edited"
}

expect_rejected_manifest() {
  local name=$1 want=$2 manifest=$3 out
  if out=$(check_manifest <<<"$manifest" 2>&1); then
    die "$name: the checker accepted a render with a defect:\n$out"
  fi
  grep -qF -- "$want" <<<"$out" || die "$name: the checker failed without naming the defect ($want):\n$out"
  step "$name: rejected (${want})"
}

# NAME WANT ARGS...: the checker accepts the render, and promtool check rules refuses its rules
# with WANT in what it says: what only a Prometheus knows, such as the functions of templates.
expect_rules_refused() {
  local name=$1 want=$2 out
  shift 2
  set_flags "$@"
  out=$(render "$@" | check_manifest 2>&1) || die "$name: the checker rejected the render, but this defect is promtool's to find:\n$out"
  [[ -f "$rules" ]] || die "$name: the render has no rules"
  if out=$("$promtool_bin" check rules "$rules" 2>&1); then
    die "$name: promtool accepted the rules:\n$out"
  fi
  grep -qF -- "$want" <<<"$out" || die "$name: promtool failed, but not for the expected reason ($want):\n$out"
  step "$name: refused by promtool (${want})"
}

# NAME ARGS...: promtool test rules runs the alert tests on the rules of the render with ARGS.
test_rules() {
  local name=$1 out
  shift
  set_flags "$@"
  out=$(render "$@" | check_manifest 2>&1) || die "$name: the render is not valid:\n$out"
  # The test file names its rule file relative to itself.
  cp "$HERE/tests/alerts_test.yaml" "$bin_dir/"
  "$promtool_bin" test rules "$bin_dir/alerts_test.yaml"
}

# NAME WANT ARGS...: helm itself refuses the values (schema or a template's fail), saying WANT.
expect_refused() {
  local name=$1 want=$2 out
  shift 2
  if out=$(render "$@" 2>&1); then
    die "$name: helm rendered values it should refuse"
  fi
  grep -qF -- "$want" <<<"$out" || die "$name: helm failed, but not for the expected reason ($want):\n$out"
  step "$name: refused (${want})"
}

expect_ok "default values"
for example in "$EXAMPLES"/*.yaml; do
  expect_ok "examples/$(basename "$example")" -f "$example"
done
expect_ok "everything on" -f "$EXAMPLES/production.yaml" -f "$EXAMPLES/spark-cluster.yaml" \
  --set producer.enabled=true --set producer.faults=3:noise=0.4 --set batch.job.enabled=true \
  --set infer.model=/models/custom.onnx --set infer.engine=onednn-int8 --set batch.output.existingClaim=iotinfer-results \
  --set-json 'kafka.properties={"linger.ms":5,"queue.buffering.max.messages":1000000}' \
  --set-json 'stream.spark.kafkaProperties={"kafka.security.protocol":"SASL_SSL"}'
expect_ok "production, infer as a Deployment" -f "$EXAMPLES/production.yaml" --set infer.workload=Deployment
expect_ok "production, infer scaled by KEDA on its lag" -f "$EXAMPLES/production.yaml" -f "$EXAMPLES/keda.yaml"
expect_ok "KEDA on a plaintext Kafka, from zero" --set infer.autoscaling.keda.enabled=true --set infer.autoscaling.minReplicas=0 \
  --set infer.autoscaling.keda.activationLagThreshold=100
expect_ok "alerts and dashboard, elsewhere" --set metrics.prometheusRule.enabled=true --set infer.workload=StatefulSet \
  --set-json 'metrics.prometheusRule.alertLabels={"team":"iot"}' --set sink.enabled=false \
  --set metrics.grafanaDashboard.enabled=true --set metrics.grafanaDashboard.namespace=monitoring \
  --set metrics.grafanaDashboard.label=grafana_dashboard_iot --set metrics.grafanaDashboard.labelValue=yes
expect_ok "apache/spark with its connectors from Maven" -f "$EXAMPLES/spark-cluster.yaml" \
  --set spark.connect.image.repository=apache/spark --set spark.connect.allowUnverifiedPackages=true \
  --set-json 'spark.connect.packages=["org.apache.spark:spark-sql-kafka-0-10_2.13:4.0.0","org.mongodb.spark:mongo-spark-connector_2.13:10.5.0"]'
spark_tls=(-f "$EXAMPLES/spark-kubernetes.yaml" --set spark.connect.tls.enabled=true
  --set spark.connect.tls.existingSecret=iotinfer-spark-tls --set spark.connect.tls.caSecret=iotinfer-spark-ca)
expect_ok "Spark Connect behind its TLS proxy" "${spark_tls[@]}"
expect_ok "production, with Spark on Kubernetes behind its TLS proxy" -f "$EXAMPLES/production.yaml" "${spark_tls[@]}" \
  --set stream.replicas=1 --set producer.enabled=true --set-json 'networkPolicy.sparkConnect.from=[{"podSelector":{"matchLabels":{"app":"notebook"}}}]'
expect_ok "NetworkPolicies for a standalone Spark cluster" -f "$EXAMPLES/spark-cluster.yaml" --set networkPolicy.enabled=true \
  --set spark.connect.master=spark://spark-master.spark:7077 \
  --set-json 'networkPolicy.sparkConnect.standaloneExecutors=[{"namespaceSelector":{"matchLabels":{"kubernetes.io/metadata.name":"spark"}}}]'
expect_ok "external Spark" --set 'spark.external.url=sc://spark.analytics:15002/;use_ssl=true' \
  --set spark.external.tokenSecret=spark-token --set spark.external.caSecret=spark-ca \
  --set stream.engine=spark --set stream.spark.checkpoint=s3a://iotinfer/checkpoints/stream \
  --set batch.engine=spark --set batch.cronJob.enabled=true

# The alerts at the default thresholds, which tests/alerts_test.yaml is written for: each fires
# when it should and not when it should not.
out=$(test_rules "alert tests" --set metrics.prometheusRule.enabled=true 2>&1) || die "promtool test rules failed:\n$out"
step "alert tests (tests/alerts_test.yaml): $(grep -c '^  - name:' "$HERE/tests/alerts_test.yaml") cases passed"
# ...and they do notice a threshold that is not the one they assume.
if out=$(test_rules "alert tests" --set metrics.prometheusRule.enabled=true --set-json metrics.prometheusRule.deadLetters.ratio=0.2 2>&1); then
  die "the alert tests passed with a dead-letter ratio of 20%, which should silence their burst of 10%"
fi
grep -qF 'alertname: IotinferDeadLetterRateHigh' <<<"$out" || die "the alert tests failed at a 20% ratio, but not on that alert:\n$out"
step "alert tests at a dead-letter ratio of 20%: failed, as they should"

# Defects that pass the schema (affinity, tolerations, resources and probes are Kubernetes
# objects it leaves open) and helm: the API server would refuse the first two, our conventions the
# others.
expect_rejected "misspelt affinity field" 'Deployment/iotinfer-infer (iotinfer/templates/infer.yaml): unknown field "spec.template.spec.affinity.nodeAffinty"' \
  --set-json 'infer.affinity={"nodeAffinty":{}}'
expect_rejected "string for an integer" 'Deployment/iotinfer-sink (iotinfer/templates/sink.yaml): json: cannot unmarshal string into Go struct field Toleration' \
  --set-json 'sink.tolerations=[{"key":"dedicated","operator":"Exists","tolerationSeconds":"300"}]'
expect_rejected "container without a memory request" 'container "stream": no memory request' \
  --set stream.resources.requests.memory=null
expect_rejected "probe on an unknown port" 'probe port "http"' \
  --set-json 'probes={"readiness":{"httpGet":{"path":"/readyz","port":"http"}}}'
expect_rejected "a Kafka password in extraArgs" 'container "infer": argument --kafka=sasl.password=... puts a secret in the pod spec' \
  --set-json 'infer.extraArgs=["--kafka=sasl.password=hunter2"]'
# And manifests no chart value can produce.
bad_manifests='apiVersion: v1
metadata:
  name: orphan
---
apiVersion: apps/v1
kind: Deploymnet
metadata:
  name: typo'
set_flags
out=$(check_manifest 2>&1 <<<"$bad_manifests") && die "manifests without a kind, or of an unknown kind, were accepted:\n$out"
if ! grep -qF 'missing apiVersion or kind' <<<"$out" || ! grep -qF 'unknown apiVersion/kind apps/v1 Deploymnet' <<<"$out"; then
  die "the checker failed on the bad manifests without naming both defects:\n$out"
fi
step "hand-written bad manifests: rejected"

# The dashboard is a file of the chart, not values: its defects are planted into the render.
dashboard=(--set metrics.grafanaDashboard.enabled=true)
expect_rejected_edit "dashboard: a metric src/ does not export" 'unknown metric iotinfer_sink_stored_totl' \
  's/iotinfer_sink_stored_total/iotinfer_sink_stored_totl/' "${dashboard[@]}"
expect_rejected_edit "dashboard: a misspelt query field" "Dataquery: unexpected field 'legendFormt'" \
  '0,/"legendFormat"/s/"legendFormat"/"legendFormt"/' "${dashboard[@]}"
expect_rejected_edit "dashboard: a misspelt panel option" "unexpected field 'showHeadr'" \
  's/"showHeader"/"showHeadr"/' "${dashboard[@]}"
expect_rejected_edit "dashboard: a query that does not parse" 'unknown function with name' \
  's/sum by (reason) (rate(/sum by (reason) (rat(/' "${dashboard[@]}"
# shellcheck disable=SC2016 # a Grafana variable, not the shell's
expect_rejected_edit "dashboard: an undefined variable" 'unknown variable $namspace' \
  '0,/\$namespace/s/\$namespace/$namspace/' "${dashboard[@]}"
# Spark's Role is a template's: its defects are planted into the render.
expect_rejected_edit "Spark's Role: a verb its executors do not need" 'Role/iotinfer-spark-connect (iotinfer/templates/spark-connect.yaml): rule 0 grants "patch" on pods' \
  's/"delete", "deletecollection"\]/"delete", "deletecollection", "patch"]/' -f "$EXAMPLES/spark-kubernetes.yaml"
expect_rejected_edit "Spark's Role for local executors" 'which runs no Spark driver with a k8s:// master' \
  's|"k8s://https://kubernetes.default.svc"|"local[*]"|' -f "$EXAMPLES/spark-kubernetes.yaml"
# KEDA's ScaledObject: what its API types, its kafka scaler and infer's own settings refuse.
keda=(-f "$EXAMPLES/keda.yaml")
expect_rejected_edit "KEDA: a misspelt field" 'ScaledObject/iotinfer-infer (iotinfer/templates/keda.yaml): unknown field "spec.pollingIntervall"' \
  's/^  pollingInterval:/  pollingIntervall:/' "${keda[@]}"
expect_rejected_edit "KEDA: a metadata key its kafka scaler does not read" 'trigger 0 (kafka): unknown metadata key "lagTreshold"' \
  's/^        lagThreshold:/        lagTreshold:/' "${keda[@]}"
expect_rejected_edit "KEDA: a password in the ScaledObject" 'metadata key "password": KEDA reads it only from a TriggerAuthentication' \
  's/^        tls: "enable"$/&\n        password: "hunter2"/' "${keda[@]}"
expect_rejected_edit "KEDA: idle consumers" 'allowIdleConsumers is true: replicas beyond the partitions of the topic would get none' \
  's/allowIdleConsumers: "false"/allowIdleConsumers: "true"/' "${keda[@]}"
expect_rejected_edit "KEDA: the lag of another topic" "topic \"inferences\" is not infer's \"images\" (--input-topic)" \
  's/^        topic: "images"/        topic: "inferences"/' "${keda[@]}"
expect_rejected_edit "KEDA: KEDA's default offset reset policy" 'offsetResetPolicy latest, but infer starts a partition without a committed offset at the earliest' \
  '/^        offsetResetPolicy:/d' "${keda[@]}"
expect_rejected_edit "KEDA: SASL without a password" 'trigger 0 (kafka): sasl scram_sha512 needs password from a TriggerAuthentication' \
  '/^    - parameter: password$/,+2d' "${keda[@]}"
expect_rejected_edit "KEDA: a TriggerAuthentication the render lacks" \
  'trigger 0: authenticationRef TriggerAuthentication/iotinfer-kafka is no TriggerAuthentication of this render' \
  's/^        name: iotinfer-infer-kafka$/        name: iotinfer-kafka/' "${keda[@]}"
expect_rejected "KEDA beyond the partitions" "maxReplicaCount 16 is above infer's 12 partitions" "${keda[@]}" --set infer.autoscaling.maxReplicas=16
expect_rejected "KEDA: a lag threshold below a batch" "lagThreshold 1000 is below infer's --batch-max 2048" "${keda[@]}" \
  --set infer.autoscaling.keda.lagThreshold=1000
expect_rejected "production: Spark Connect without authentication" \
  'Deployment/iotinfer-spark-connect (iotinfer/templates/spark-connect.yaml): container "spark-connect" runs Spark Connect without authentication' \
  -f "$EXAMPLES/production.yaml" -f "$EXAMPLES/spark-cluster.yaml" --set spark.connect.auth.enabled=false
expect_rejected_edit "a service with another Spark token" 'IOTINFER_SPARK_TOKEN is not the token of the Spark Connect server it uses' \
  '/name: IOTINFER_SPARK_TOKEN/,/name: iotinfer-spark-connect-token/s/name: iotinfer-spark-connect-token/name: other/' \
  -f "$EXAMPLES/spark-cluster.yaml"
expect_rejected_edit "plaintext to Spark behind its TLS proxy" 'IOTINFER_SPARK has no use_ssl=true, but Deployment/iotinfer-spark-connect' \
  's|/;use_ssl=true||' "${spark_tls[@]}"
# NetworkPolicies: the production example must have them, and they must leave no pod open.
expect_rejected "production without NetworkPolicies" 'renders no NetworkPolicy: a production render must isolate its pods' \
  -f "$EXAMPLES/production.yaml" --set networkPolicy.enabled=false
expect_rejected_edit "a pod no NetworkPolicy isolates" 'Deployment/iotinfer-sink (iotinfer/templates/sink.yaml): no NetworkPolicy isolates its pods for ingress' \
  '/^kind: NetworkPolicy/,/^---/s/component: sink$/component: sinc/' -f "$EXAMPLES/production.yaml"
expect_rejected_edit "egress to Spark's own port behind the TLS proxy" \
  'NetworkPolicy/iotinfer-batch (iotinfer/templates/networkpolicy.yaml): egress rule 2: port 15002 is no container port of the pods it names' \
  '/^kind: NetworkPolicy/,/^---/s/- port: 15443$/- port: 15002/' -f "$EXAMPLES/production.yaml" "${spark_tls[@]}" --set stream.replicas=1
# Rules come from values too: additionalRules.
rule() { printf 'metrics.prometheusRule.additionalRules=[{"alert":"IotinferTest","expr":%s,"labels":{"severity":"warning"},"annotations":{"summary":%s,"description":"d"}}]' "$1" "$2"; }
rules_on=(--set metrics.prometheusRule.enabled=true)
expect_rejected "rule: a metric src/ does not export" 'unknown metric iotinfer_infer_inferred_totl' "${rules_on[@]}" \
  --set-json "$(rule '"rate(iotinfer_infer_inferred_totl[5m]) == 0"' '"s"')"
expect_rejected "rule: an expression that does not parse" 'does not parse' "${rules_on[@]}" \
  --set-json "$(rule '"sum(rate(iotinfer_infer_inferred_total[5m])"' '"s"')"
expect_rejected "rule: an alert without severity" 'rule 0 (IotinferTest): no severity label' "${rules_on[@]}" \
  --set-json 'metrics.prometheusRule.additionalRules=[{"alert":"IotinferTest","expr":"vector(1)","annotations":{"summary":"s","description":"d"}}]'
# shellcheck disable=SC2016 # a Prometheus template, not the shell's
expect_rules_refused "rule: a template function Prometheus does not have" 'function "humanizePercentag" not defined' \
  "${rules_on[@]}" --set-json "$(rule '"vector(1)"' '"{{ $value | humanizePercentag }}"')"

# Values helm must refuse before anything renders.
expect_refused "unknown engine" "value must be one of 'native', 'spark'" --set stream.engine=flink
expect_refused "unknown inference engine" "value must be one of 'auto', 'onednn', 'onednn-int8', 'opencv'" --set infer.engine=tensorrt
expect_refused "misspelt value" "additional properties 'replica' not allowed" --set infer.replica=3
expect_refused "misspelt alert setting" "additional properties 'ration' not allowed" --set-json metrics.prometheusRule.deadLetters.ration=0.05
expect_refused "dead-letter ratio above 1" "deadLetters/ratio': maximum: got 5, want 1" --set-json metrics.prometheusRule.deadLetters.ratio=5
expect_refused "a duration Prometheus cannot read" "'5min' does not match pattern" --set metrics.prometheusRule.deviceFaulty.for=5min
expect_refused "spark engine without a server" "set spark.external.url or spark.connect.enabled" --set batch.engine=spark \
  --set batch.job.enabled=true
expect_refused "Spark packages resolved unverified" "downloaded from Maven repositories at every start of the server, with no checksum" \
  -f "$EXAMPLES/spark-cluster.yaml" --set-json 'spark.connect.packages=["org.apache.spark:spark-sql-kafka-0-10_2.13:4.0.0"]'
# Secrets in the maps the chart turns into arguments, each key of the list, and what to do instead.
for key in sasl.password sasl.jaas.config ssl.key.password ssl.keystore.password ssl.truststore.password ssl.key.pem \
  ssl_key.pem ssl.keystore.key sasl.oauthbearer.client.secret sasl.oauthbearer.config my.SECRET.token; do
  expect_refused "kafka.properties: $key" "at '/kafka/properties/$key': value must be 'set in kafka.existingSecret, not here" \
    --set "kafka.properties.${key//./\\.}=x"
done
expect_refused "stream.spark.kafkaProperties: a JAAS configuration" \
  "at '/stream/spark/kafkaProperties/kafka.sasl.jaas.config': value must be 'set in a Secret, not here" \
  --set 'stream.spark.kafkaProperties.kafka\.sasl\.jaas\.config=x'
expect_ok "Kafka settings without secrets" \
  --set-json 'kafka.properties={"security.protocol":"SASL_SSL","sasl.mechanisms":"SCRAM-SHA-512","sasl.username":"iotinfer","ssl.ca.location":"/etc/iotinfer/kafka-tls/ca.crt","ssl.key.location":"/etc/iotinfer/kafka-tls/tls.key","ssl.keystore.location":"/etc/iotinfer/kafka-tls/client.p12","sasl.oauthbearer.client.id":"iotinfer"}' \
  --set stream.engine=spark --set spark.external.url=sc://spark:15002 --set stream.spark.checkpoint=/checkpoints/stream \
  --set-json 'stream.spark.kafkaProperties={"kafka.security.protocol":"SASL_SSL","kafka.sasl.mechanism":"SCRAM-SHA-512","kafka.ssl.truststore.location":"/etc/kafka/truststore.p12"}'
expect_refused "a Spark token in the URL" "at '/spark/external/url': value must be 'a URL without ;token=" \
  --set 'spark.external.url=sc://spark:15002/;token=s3cret'
expect_refused "Spark TLS without a certificate" "spark.connect.tls.enabled needs spark.connect.tls.existingSecret" \
  -f "$EXAMPLES/spark-cluster.yaml" --set spark.connect.tls.enabled=true
expect_refused "NetworkPolicies and a standalone Spark cluster of unknown place" "needs networkPolicy.sparkConnect.standaloneExecutors" \
  -f "$EXAMPLES/spark-cluster.yaml" --set networkPolicy.enabled=true --set spark.connect.master=spark://spark-master.spark:7077
expect_refused "spark stream without a checkpoint" "needs stream.spark.checkpoint" \
  --set stream.engine=spark --set spark.external.url=sc://spark:15002
expect_refused "a CPU HPA and KEDA together" "are exclusive: two HPAs on one workload fight over its replicas" \
  -f "$EXAMPLES/keda.yaml" --set infer.autoscaling.enabled=true
expect_refused "KEDA over SASL without a password" "infer.autoscaling.keda.sasl=scram_sha512 needs the username and password from a Secret" \
  --set infer.autoscaling.keda.enabled=true --set infer.autoscaling.keda.sasl=scram_sha512 --set kafka.existingSecret=iotinfer-kafka \
  --set infer.autoscaling.keda.authentication.secretKeys.username=username
expect_refused "KEDA: a parameter its kafka scaler takes from no Secret" \
  "at '/infer/autoscaling/keda/authentication/secretKeys': additional properties 'lagThreshold' not allowed" \
  -f "$EXAMPLES/keda.yaml" --set infer.autoscaling.keda.authentication.secretKeys.lagThreshold=x
expect_refused "KEDA to zero with the alerts on" "infer.autoscaling.minReplicas=0 scales infer to zero whenever there is no lag" \
  --set infer.autoscaling.keda.enabled=true --set infer.autoscaling.minReplicas=0 --set metrics.prometheusRule.enabled=true
expect_refused "a CPU HPA at zero" "an HPA does not scale to zero" --set infer.autoscaling.enabled=true --set infer.autoscaling.minReplicas=0
# A password given in values reaches only a Secret: never an argument, an environment value or a
# ConfigMap, which anyone who may read the workloads sees.
sentinel="s3ntinel-$RANDOM$RANDOM"
manifest=$(render -f "$EXAMPLES/production.yaml" --set mongodb.existingSecret= \
  --set "mongodb.uri=mongodb://sink:$sentinel@mongodb:27017/?tls=true") || die "the sentinel render failed"
holders=$(awk -v s="$sentinel" 'BEGIN { RS = "\n---" } index($0, s) { match($0, /\nkind: [A-Za-z]+/); print substr($0, RSTART + 7, RLENGTH - 7) }' <<<"$manifest" | sort -u | paste -sd' ')
[[ $holders == Secret ]] || die "a password in mongodb.uri is rendered into: ${holders:-nothing} (want: a Secret only)"
step "a password in values: only in a Secret"
step "deploy/helm: all checks passed"
