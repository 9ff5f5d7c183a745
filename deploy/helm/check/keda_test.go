package main

import (
	"go/ast"
	"go/parser"
	"go/token"
	"os/exec"
	"path/filepath"
	"reflect"
	"slices"
	"strconv"
	"strings"
	"testing"
)

// infer as a Deployment with what the chart gives it, its replicas left to KEDA, a ScaledObject
// on its lag over SASL/TLS, the TriggerAuthentication with the secrets, and a Secret of the
// render holding them; cases below break one thing each.
var kedaGood = strings.NewReplacer(
	"  replicas: 1\n", "",
	"args: [infer, --model-active", "args: [infer, --group=iotinfer-infer, --input-topic=images, --partitions=6, --batch-max=2048, --model-active",
	`- {name: IOTINFER_HTTP_PORT, value: "8080"}`, `- {name: IOTINFER_HTTP_PORT, value: "8080"}
            - {name: IOTINFER_BROKERS, value: "kafka-0:9093,kafka-1:9093"}`,
).Replace(good) + `---
# Source: iotinfer/templates/keda.yaml
apiVersion: keda.sh/v1alpha1
kind: ScaledObject
metadata: {name: infer}
spec:
  scaleTargetRef: {apiVersion: apps/v1, kind: Deployment, name: infer}
  pollingInterval: 30
  cooldownPeriod: 300
  minReplicaCount: 1
  maxReplicaCount: 6
  triggers:
    - type: kafka
      metadata:
        bootstrapServers: "kafka-0:9093,kafka-1:9093"
        consumerGroup: iotinfer-infer
        topic: images
        lagThreshold: "10000"
        activationLagThreshold: "0"
        offsetResetPolicy: earliest
        allowIdleConsumers: "false"
        sasl: scram_sha512
        tls: enable
      authenticationRef: {name: infer-kafka}
---
# Source: iotinfer/templates/keda.yaml
apiVersion: keda.sh/v1alpha1
kind: TriggerAuthentication
metadata: {name: infer-kafka}
spec:
  secretTargetRef:
    - {parameter: username, name: kafka, key: username}
    - {parameter: password, name: kafka, key: password}
    - {parameter: ca, name: kafka, key: ca.crt}
---
apiVersion: v1
kind: Secret
metadata: {name: kafka}
stringData: {username: iotinfer, password: s3cret, ca.crt: "-----BEGIN CERTIFICATE-----"}
`

func runKEDA(manifest string) string {
	objs, errs := Decode(strings.NewReader(manifest))
	if len(errs) == 0 {
		errs = append(Check(objs), CheckKEDA(objs)...)
	}
	msgs := make([]string, len(errs))
	for i, e := range errs {
		msgs[i] = e.Error()
	}
	return strings.Join(msgs, "\n")
}

func TestScaledObjectDefectsAreReported(t *testing.T) {
	if errs := runKEDA(kedaGood); errs != "" {
		t.Fatalf("want no errors, got:\n%s", errs)
	}
	hpa := "---\napiVersion: autoscaling/v2\nkind: HorizontalPodAutoscaler\nmetadata: {name: infer}\n" +
		"spec:\n  scaleTargetRef: {apiVersion: apps/v1, kind: Deployment, name: infer}\n  maxReplicas: 3\n"
	so := "ScaledObject/infer (iotinfer/templates/keda.yaml): "
	for _, tc := range []struct{ name, old, new, want string }{
		// KEDA's API types, decoded strictly.
		{"unknown field", "  pollingInterval: 30", "  pollingIntervall: 30", so + `unknown field "spec.pollingIntervall"`},
		{"string for an integer", "maxReplicaCount: 6", `maxReplicaCount: "6"`, "ScaledObject/infer"},
		{"a kind the chart does not render", "kind: ScaledObject", "kind: ScaledJob", "unknown apiVersion/kind keda.sh/v1alpha1 ScaledJob"},
		// KEDA's own validation.
		{"no triggers", "  triggers:\n    - type: kafka", "  triggers: []\n  unused:\n    - type: kafka", "ScaledObject/infer"},
		{"min above max", "minReplicaCount: 1", "minReplicaCount: 8", "MinReplicaCount=8 must be less than MaxReplicaCount=6"},
		// The scale target.
		{"target not in the render", "kind: Deployment, name: infer}", "kind: Deployment, name: sink}",
			so + "scaleTargetRef Deployment/sink is no Deployment or StatefulSet of this render"},
		{"target of another kind", "kind: Deployment, name: infer}", "kind: StatefulSet, name: infer}", "scaleTargetRef StatefulSet/infer"},
		{"target that is not infer", "args: [infer, --group", "args: [sink, --group", "which runs no infer"},
		{"replicas set under KEDA", "spec:\n  selector:\n    matchLabels: {app: infer}", "spec:\n  replicas: 2\n  selector:\n    matchLabels: {app: infer}",
			"Deployment/infer (iotinfer/templates/infer.yaml) sets replicas, which every helm upgrade would reset"},
		{"an HPA on the same target", "---\napiVersion: v1\nkind: Secret", hpa + "---\napiVersion: v1\nkind: Secret",
			"HorizontalPodAutoscaler/infer scales Deployment/infer (iotinfer/templates/infer.yaml) too"},
		{"above the partitions", "maxReplicaCount: 6", "maxReplicaCount: 12", "maxReplicaCount 12 is above infer's 6 partitions"},
		{"KEDA's default maximum", "  maxReplicaCount: 6\n", "", "maxReplicaCount 100 is above infer's 6 partitions"},
		// The kafka scaler's metadata.
		{"unknown trigger type", "type: kafka", "type: kafkaa", `type "kafkaa", which this checker does not know`},
		{"unknown metadata key", "lagThreshold: \"10000\"", "lagTreshold: \"10000\"", `trigger 0 (kafka): unknown metadata key "lagTreshold"`},
		{"a secret in the metadata", "tls: enable\n", "tls: enable\n        password: hunter2\n",
			`metadata key "password": KEDA reads it only from a TriggerAuthentication, as it may be a secret`},
		{"not an integer", `lagThreshold: "10000"`, `lagThreshold: "1k"`, `lagThreshold: "1k" is not an integer`},
		{"a threshold below a batch", `lagThreshold: "10000"`, `lagThreshold: "2000"`, "lagThreshold 2000 is below infer's --batch-max 2048"},
		{"zero lag threshold", `lagThreshold: "10000"`, `lagThreshold: "0"`, "lagThreshold 0: must be positive"},
		{"not a boolean", `allowIdleConsumers: "false"`, `allowIdleConsumers: "no"`, `allowIdleConsumers: "no" is not a boolean`},
		{"idle consumers", `allowIdleConsumers: "false"`, `allowIdleConsumers: "true"`, "allowIdleConsumers is true: replicas beyond the partitions"},
		{"unknown enum value", "tls: enable", "tls: enabled", `tls: "enabled" is not one of enable, disable`},
		{"no consumer group", "        consumerGroup: iotinfer-infer\n", "", "no consumerGroup: KEDA's kafka scaler requires it"},
		// ...against what infer consumes.
		{"another group", "consumerGroup: iotinfer-infer", "consumerGroup: iotinfer-sink", `consumerGroup "iotinfer-sink" is not infer's "iotinfer-infer" (--group)`},
		{"another topic", "topic: images", "topic: inferences", `topic "inferences" is not infer's "images" (--input-topic)`},
		{"no topic", "        topic: images\n", "", "no topic: infer consumes \"images\""},
		{"other brokers", `bootstrapServers: "kafka-0:9093,kafka-1:9093"`, `bootstrapServers: "kafka:9092"`, "is not infer's \"kafka-0:9093,kafka-1:9093\" (IOTINFER_BROKERS)"},
		{"KEDA's default offset reset policy", "        offsetResetPolicy: earliest\n", "",
			"offsetResetPolicy latest, but infer starts a partition without a committed offset at the earliest"},
		// Authentication.
		{"no TriggerAuthentication", "authenticationRef: {name: infer-kafka}", "authenticationRef: {name: kafka}",
			"trigger 0: authenticationRef TriggerAuthentication/kafka is no TriggerAuthentication of this render"},
		{"a cluster-wide one", "authenticationRef: {name: infer-kafka}", "authenticationRef: {name: infer-kafka, kind: ClusterTriggerAuthentication}",
			"authenticationRef ClusterTriggerAuthentication/infer-kafka"},
		{"SASL without a password", "    - {parameter: password, name: kafka, key: password}\n", "",
			"trigger 0 (kafka): sasl scram_sha512 needs password from a TriggerAuthentication"},
		{"a parameter the scaler does not read", "{parameter: username,", "{parameter: user,",
			`authentication parameter "user" is none KEDA's kafka scaler (v2.20.2) reads`},
		{"a key the Secret lacks", "{parameter: password, name: kafka, key: password}", "{parameter: password, name: kafka, key: passwd}",
			`TriggerAuthentication/infer-kafka (iotinfer/templates/keda.yaml): secretTargetRef "password": Secret kafka of this render has no key "passwd"`},
		{"an unused TriggerAuthentication", "      authenticationRef: {name: infer-kafka}\n", "", "TriggerAuthentication/infer-kafka (iotinfer/templates/keda.yaml): used by no ScaledObject"},
		{"an incomplete secretTargetRef", "{parameter: ca, name: kafka, key: ca.crt}", "{parameter: ca, name: kafka}", "parameter, name and key are all required"},
		{"a client certificate without its key", "    - {parameter: ca, name: kafka, key: ca.crt}\n",
			"    - {parameter: ca, name: kafka, key: ca.crt}\n    - {parameter: cert, name: kafka, key: ca.crt}\n", "tls: cert and key come together"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if !strings.Contains(kedaGood, tc.old) {
				t.Fatalf("test case does not apply: %q not in the manifest", tc.old)
			}
			errs := runKEDA(strings.Replace(kedaGood, tc.old, tc.new, 1))
			if tc.want == "" {
				if errs != "" {
					t.Errorf("want no errors, got:\n%s", errs)
				}
			} else if !strings.Contains(errs, tc.want) {
				t.Errorf("want an error containing %q, got:\n%s", tc.want, errs)
			}
		})
	}
}

// A StatefulSet is scaled as well, and parameters may come from the container's environment.
func TestScaledObjectOnAStatefulSet(t *testing.T) {
	manifest := strings.NewReplacer(
		"kind: Deployment\nmetadata:\n  name: infer\nspec:\n", "kind: StatefulSet\nmetadata:\n  name: infer\nspec:\n  serviceName: infer-metrics\n",
		"  selector: {app: infer}\n  ports", "  clusterIP: None\n  selector: {app: infer}\n  ports",
		"kind: Deployment, name: infer}", "kind: StatefulSet, name: infer}",
		`bootstrapServers: "kafka-0:9093,kafka-1:9093"`, "bootstrapServersFromEnv: IOTINFER_BROKERS",
	).Replace(kedaGood)
	if errs := runKEDA(manifest); errs != "" {
		t.Fatalf("want no errors, got:\n%s", errs)
	}
	bad := strings.Replace(manifest, "bootstrapServersFromEnv: IOTINFER_BROKERS", "bootstrapServersFromEnv: KAFKA_BROKERS", 1)
	if errs := runKEDA(bad); !strings.Contains(errs, `bootstrapServersFromEnv names "KAFKA_BROKERS", no environment variable of container "infer"`) {
		t.Errorf("want the missing variable named, got:\n%s", errs)
	}
}

// kafkaParams must be what KEDA's kafka scaler, at the version go.mod requires, reads: its
// kafkaMetadata struct's `keda:"..."` tags, from the module's source in Go's module cache.
func TestKafkaParamsAreKEDAs(t *testing.T) {
	out, err := exec.Command("go", "list", "-m", "-f", "{{.Version}} {{.Dir}}", "github.com/kedacore/keda/v2").Output()
	if err != nil {
		t.Fatalf("go list -m github.com/kedacore/keda/v2: %v", err)
	}
	version, dir, _ := strings.Cut(strings.TrimSpace(string(out)), " ")
	if version != kedaVersion {
		t.Errorf("go.mod requires KEDA %s, kedaVersion says %s: update it, and kafkaParams to that release's scaler", version, kedaVersion)
	}
	if dir == "" {
		t.Fatalf("KEDA %s is not in the module cache: go mod download", version)
	}
	file, err := parser.ParseFile(token.NewFileSet(), filepath.Join(dir, "pkg/scalers/kafka_scaler.go"), nil, 0)
	if err != nil {
		t.Fatal(err)
	}
	found := map[string]scalerParam{}
	ast.Inspect(file, func(n ast.Node) bool {
		spec, ok := n.(*ast.TypeSpec)
		if !ok || spec.Name.Name != "kafkaMetadata" {
			return true
		}
		for _, field := range spec.Type.(*ast.StructType).Fields.List {
			if field.Tag == nil {
				continue
			}
			raw, _ := strconv.Unquote(field.Tag.Value)
			tag, ok := reflect.StructTag(raw).Lookup("keda")
			if !ok {
				continue
			}
			var p scalerParam
			var names []string
			optional, hasDefault := false, false
			for _, part := range strings.Split(tag, ",") {
				key, value, _ := strings.Cut(strings.TrimSpace(part), "=")
				switch key {
				case "name":
					names = strings.Split(value, ";")
				case "order":
					orders := strings.Split(value, ";")
					p.metadata = slices.Contains(orders, "triggerMetadata")
					p.auth = slices.Contains(orders, "authParams")
					p.env = slices.Contains(orders, "resolvedEnv")
				case "optional":
					optional = true
				case "default":
					hasDefault = true
				case "enum":
					p.enum = strings.Split(value, ";")
				default:
					t.Errorf("kafkaMetadata.%s: tag %q has %q, which this test does not know", field.Names[0], tag, key)
				}
			}
			p.required = !optional && !hasDefault
			switch typ := field.Type.(type) {
			case *ast.ArrayType:
				p.kind = "list"
			case *ast.Ident:
				p.kind = map[string]string{"bool": "bool", "int": "int", "int32": "int", "int64": "int"}[typ.Name]
				if p.kind == "" {
					p.kind = "string"
				}
			}
			for _, name := range names {
				found[name] = p
			}
		}
		return false
	})
	if len(found) == 0 {
		t.Fatalf("no keda tags found in kafkaMetadata of %s/pkg/scalers/kafka_scaler.go: has it moved?", dir)
	}
	for name, want := range found {
		if got, ok := kafkaParams[name]; !ok {
			t.Errorf("KEDA %s reads %q (%+v), which kafkaParams lacks", version, name, want)
		} else if !reflect.DeepEqual(got, want) {
			t.Errorf("kafkaParams[%q] = %+v, KEDA %s's tag says %+v", name, got, version, want)
		}
	}
	for name := range kafkaParams {
		if _, ok := found[name]; !ok {
			t.Errorf("kafkaParams has %q, which KEDA %s does not read", name, version)
		}
	}
}
