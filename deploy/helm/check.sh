#!/usr/bin/env bash
# The Helm chart's check (ctest: deploy.helm). For the default values, each example and a few
# combinations: `helm lint --strict`, then `helm template` decoded strictly into the Kubernetes API
# types by check/ (Go), which also cross-checks selectors, probes and pod hardening. Then proof
# that the checker is not a rubber stamp: renders with a planted defect must be rejected, naming it.
# Needs Go (the pinned one ./dev setup installs, or go on PATH), and helm 3 as ./dev setup installs it (helm_install in scripts/deploy-tools.sh) or
# on PATH. Exits non-zero on the first problem.
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
# The pinned Go that ./dev setup installs (scripts/go-toolchain.sh), else the one on PATH.
go_use
command -v go >/dev/null || die "go not found on PATH: the chart checker (deploy/helm/check) is Go"

# The checker, from Go's build cache after the first time. A binary of our own per run, so that
# checks of two checkouts sharing $ARTIFACTS cannot overwrite each other's.
bin_dir=$(mktemp -d)
trap 'rm -rf "$bin_dir"' EXIT
checker="$bin_dir/check"
step "building the checker ($("$helm_bin" version --template '{{.Version}}'), $(go env GOVERSION))"
(cd "$HERE/check" && GOFLAGS=-mod=readonly go vet ./... && GOFLAGS=-mod=readonly go test -count=1 ./... >/dev/null &&
  GOFLAGS="-mod=readonly -buildvcs=false" go build -o "$checker" .) || die "building or testing deploy/helm/check failed"

render() { "$helm_bin" template iotinfer "$CHART" --namespace iotinfer "$@"; }

# NAME ARGS...: lints and renders with ARGS; the checker must accept the render.
expect_ok() {
  local name=$1 out
  shift
  out=$("$helm_bin" lint --strict "$CHART" --namespace iotinfer "$@" 2>&1) || die "$name: helm lint --strict failed:\n$out"
  out=$(render "$@" | "$checker" 2>&1) || die "$name: the render is not valid:\n$out"
  step "$name: $out"
}

# NAME WANT ARGS...: the render succeeds, and the checker rejects it with WANT in what it says.
expect_rejected() {
  local name=$1 want=$2 manifest out
  shift 2
  manifest=$(render "$@") || die "$name: helm template failed, but this defect is the checker's to find"
  if out=$("$checker" <<<"$manifest" 2>&1); then
    die "$name: the checker accepted a render with a defect:\n$out"
  fi
  grep -qF -- "$want" <<<"$out" || die "$name: the checker failed without naming the defect ($want):\n$out"
  step "$name: rejected (${want})"
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
expect_ok "external Spark" --set spark.external.url=sc://spark.analytics:15002 \
  --set stream.engine=spark --set stream.spark.checkpoint=s3a://iotinfer/checkpoints/stream \
  --set batch.engine=spark --set batch.cronJob.enabled=true

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
# And manifests no chart value can produce.
bad_manifests='apiVersion: v1
metadata:
  name: orphan
---
apiVersion: apps/v1
kind: Deploymnet
metadata:
  name: typo'
out=$("$checker" 2>&1 <<<"$bad_manifests") && die "manifests without a kind, or of an unknown kind, were accepted:\n$out"
if ! grep -qF 'missing apiVersion or kind' <<<"$out" || ! grep -qF 'unknown apiVersion/kind apps/v1 Deploymnet' <<<"$out"; then
  die "the checker failed on the bad manifests without naming both defects:\n$out"
fi
step "hand-written bad manifests: rejected"

# Values helm must refuse before anything renders.
expect_refused "unknown engine" "value must be one of 'native', 'spark'" --set stream.engine=flink
expect_refused "unknown inference engine" "value must be one of 'auto', 'onednn', 'onednn-int8', 'opencv'" --set infer.engine=tensorrt
expect_refused "misspelt value" "additional properties 'replica' not allowed" --set infer.replica=3
expect_refused "spark engine without a server" "set spark.external.url or spark.connect.enabled" --set batch.engine=spark \
  --set batch.job.enabled=true
expect_refused "spark stream without a checkpoint" "needs stream.spark.checkpoint" \
  --set stream.engine=spark --set spark.external.url=sc://spark:15002
step "deploy/helm: all checks passed"
