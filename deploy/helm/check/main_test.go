package main

import (
	"strings"
	"testing"
)

// A Deployment and its Service that pass every check; cases below break one thing each.
const good = `---
# Source: iotinfer/templates/infer.yaml
apiVersion: apps/v1
kind: Deployment
metadata:
  name: infer
spec:
  replicas: 1
  selector:
    matchLabels: {app: infer}
  template:
    metadata:
      labels: {app: infer}
    spec:
      securityContext:
        runAsNonRoot: true
        seccompProfile: {type: RuntimeDefault}
      containers:
        - name: infer
          image: iotinfer:0.1.0
          env:
            - {name: IOTINFER_HTTP_PORT, value: "8080"}
          ports:
            - {name: metrics, containerPort: 8080}
          livenessProbe:
            httpGet: {path: /healthz, port: metrics}
          readinessProbe:
            httpGet: {path: /readyz, port: metrics}
          resources:
            requests: {cpu: 100m, memory: 64Mi}
            limits: {memory: 64Mi}
          securityContext:
            allowPrivilegeEscalation: false
            readOnlyRootFilesystem: true
            capabilities: {drop: [ALL]}
          args: [infer, --model-active=/etc/iotinfer/model-active/active]
          volumeMounts:
            - {name: tmp, mountPath: /tmp}
            - {name: model-active, mountPath: /etc/iotinfer/model-active, readOnly: true}
      volumes:
        - {name: tmp, emptyDir: {}}
        - {name: model-active, configMap: {name: infer-model}}
---
# Source: iotinfer/templates/services.yaml
apiVersion: v1
kind: Service
metadata:
  name: infer-metrics
  labels: {app: infer}
spec:
  selector: {app: infer}
  ports:
    - {name: metrics, port: 8080, targetPort: metrics}
---
# Source: iotinfer/templates/empty.yaml
`

func run(manifest string) (int, string) {
	objs, errs := Decode(strings.NewReader(manifest))
	if len(errs) == 0 {
		errs = Check(objs)
	}
	msgs := make([]string, len(errs))
	for i, e := range errs {
		msgs[i] = e.Error()
	}
	return len(objs), strings.Join(msgs, "\n")
}

func TestGoodManifestPasses(t *testing.T) {
	n, errs := run(good)
	if errs != "" || n != 2 {
		t.Fatalf("want 2 objects and no errors, got %d and:\n%s", n, errs)
	}
	objs, _ := Decode(strings.NewReader(good))
	if got, want := Summary(objs), "2 documents: Deployment=1 Service=1"; got != want {
		t.Errorf("Summary = %q, want %q", got, want)
	}
}

func TestEachDefectIsReported(t *testing.T) {
	for _, tc := range []struct {
		name, old, new, want string
	}{
		{"unknown field", "      securityContext:\n        runAsNonRoot", "      securityContex:\n        runAsNonRoot",
			`Deployment/infer (iotinfer/templates/infer.yaml): unknown field "spec.template.spec.securityContex"`},
		{"field in the wrong case", "  replicas: 1", "  Replicas: 1", `unknown field "spec.Replicas"`},
		{"wrong type", "  replicas: 1", "  replicas: one", "Deployment/infer"},
		{"number for a string", `value: "8080"`, `value: 8080`, "Deployment/infer"},
		{"bad quantity", "cpu: 100m", "cpu: 100 millicores", "Deployment/infer"},
		{"duplicate key", "  replicas: 1", "  replicas: 1\n  replicas: 2", "Deployment/infer"},
		{"unknown kind", "kind: Deployment", "kind: Deploymnet", "unknown apiVersion/kind apps/v1 Deploymnet"},
		{"unknown apiVersion", "apiVersion: apps/v1", "apiVersion: apps/v1beta9", "unknown apiVersion/kind apps/v1beta9 Deployment"},
		{"missing kind", "kind: Service\n", "", "missing apiVersion or kind"},
		{"no name", "  name: infer-metrics", "  namespace: x", "metadata.name is empty"},
		{"no memory limit", "            limits: {memory: 64Mi}", "", `container "infer": no memory limit`},
		{"runs as root", "        runAsNonRoot: true", "        runAsNonRoot: false", "runAsNonRoot is not true"},
		{"writable root", "readOnlyRootFilesystem: true", "readOnlyRootFilesystem: false", "readOnlyRootFilesystem is not true"},
		{"no readiness probe", "          readinessProbe:\n            httpGet: {path: /readyz, port: metrics}\n", "",
			"needs liveness and readiness probes"},
		{"probe on a missing port", "path: /healthz, port: metrics", "path: /healthz, port: http", `probe port "http"`},
		{"mount without volume", "{name: tmp, mountPath: /tmp}", "{name: scratch, mountPath: /tmp}", `volumeMount "scratch"`},
		{"service selects nothing", "  selector: {app: infer}\n  ports", "  selector: {app: inferr}\n  ports", "matches no pod template"},
		{"invalid name", "  name: infer-metrics", "  name: Infer_Metrics", "Service/Infer_Metrics"},
		{"model choice never updated", "{name: model-active, mountPath: /etc/iotinfer/model-active, readOnly: true}",
			"{name: model-active, mountPath: /etc/iotinfer/model-active/active, subPath: active, readOnly: true}",
			"mounted with a subPath, which the kubelet never updates"},
		{"model choice not mounted", "--model-active=/etc/iotinfer/model-active/active", "--model-active=/etc/model/active",
			"--model-active /etc/model/active is not in a mounted ConfigMap"},
		{"model choice in an emptyDir", "{name: model-active, configMap: {name: infer-model}}",
			"{name: model-active, emptyDir: {}}", "is not in a mounted ConfigMap"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if !strings.Contains(good, tc.old) {
				t.Fatalf("test case does not apply: %q not in the manifest", tc.old)
			}
			_, errs := run(strings.Replace(good, tc.old, tc.new, 1))
			if !strings.Contains(errs, tc.want) {
				t.Errorf("want an error containing %q, got:\n%s", tc.want, errs)
			}
		})
	}
}

func TestHPAAndMonitorReferences(t *testing.T) {
	extra := `---
apiVersion: autoscaling/v2
kind: HorizontalPodAutoscaler
metadata: {name: infer}
spec:
  scaleTargetRef: {apiVersion: apps/v1, kind: Deployment, name: infer}
  maxReplicas: 3
---
apiVersion: monitoring.coreos.com/v1
kind: ServiceMonitor
metadata: {name: iotinfer}
spec:
  selector: {matchLabels: {app: infer}}
  endpoints:
    - {port: metrics, interval: 30s}
---
apiVersion: policy/v1
kind: PodDisruptionBudget
metadata: {name: infer}
spec:
  maxUnavailable: 1
  selector: {matchLabels: {app: infer}}
`
	if _, errs := run(good + extra); errs != "" {
		t.Fatalf("want no errors, got:\n%s", errs)
	}
	for _, tc := range []struct{ old, new, want string }{
		{"name: infer}\n  maxReplicas", "name: sink}\n  maxReplicas", "scaleTargetRef Deployment/sink"},
		{"{port: metrics, interval", "{port: http, interval", `endpoint port "http"`},
		{"interval: 30s}", "interval: 30s, honorLabel: true}", `unknown field "spec.endpoints[0].honorLabel"`},
		{"maxUnavailable: 1\n  selector: {matchLabels: {app: infer}}", "maxUnavailable: 1\n  selector: {matchLabels: {app: sink}}",
			"PodDisruptionBudget/infer"},
	} {
		if !strings.Contains(extra, tc.old) {
			t.Fatalf("test case does not apply: %q not in the manifest", tc.old)
		}
		all := good + strings.Replace(extra, tc.old, tc.new, 1)
		if _, errs := run(all); !strings.Contains(errs, tc.want) {
			t.Errorf("%q -> %q: want an error containing %q, got:\n%s", tc.old, tc.new, tc.want, errs)
		}
	}
}

func TestStatefulSetNeedsItsHeadlessService(t *testing.T) {
	statefulSet := strings.Replace(good, "kind: Deployment\nmetadata:\n  name: infer\nspec:\n",
		"kind: StatefulSet\nmetadata:\n  name: infer\nspec:\n  serviceName: infer-metrics\n", 1)
	headless := strings.Replace(statefulSet, "  selector: {app: infer}\n  ports", "  clusterIP: None\n  selector: {app: infer}\n  ports", 1)
	if statefulSet == good || headless == statefulSet {
		t.Fatal("test case does not apply to the manifest")
	}
	if _, errs := run(headless); errs != "" {
		t.Fatalf("want no errors, got:\n%s", errs)
	}
	if _, errs := run(statefulSet); !strings.Contains(errs, `serviceName "infer-metrics" is no headless Service`) {
		t.Errorf("want the missing headless Service named, got:\n%s", errs)
	}
	hpa := "---\napiVersion: autoscaling/v2\nkind: HorizontalPodAutoscaler\nmetadata: {name: infer}\n" +
		"spec:\n  scaleTargetRef: {apiVersion: apps/v1, kind: StatefulSet, name: infer}\n  maxReplicas: 3\n"
	if _, errs := run(headless + hpa); errs != "" {
		t.Errorf("an HPA may scale a StatefulSet, got:\n%s", errs)
	}
}

// A pod template that a ConfigMap holds for another program (Spark's executors) is checked for
// the same hardening as the chart's own pods, but not for resources, which that program sets.
func TestPodTemplatesInConfigMapsAreChecked(t *testing.T) {
	configMap := `---
# Source: iotinfer/templates/spark-connect.yaml
apiVersion: v1
kind: ConfigMap
metadata: {name: spark-executor}
data:
  executor-pod-template.yaml: |
    apiVersion: v1
    kind: Pod
    metadata: {name: executor}
    spec:
      securityContext:
        runAsNonRoot: true
        seccompProfile: {type: RuntimeDefault}
      containers:
        - name: executor
          securityContext:
            allowPrivilegeEscalation: false
            readOnlyRootFilesystem: true
            capabilities: {drop: [ALL]}
          volumeMounts:
            - {name: tmp, mountPath: /tmp}
      volumes:
        - {name: tmp, emptyDir: {}}
  other.yaml: "not: [checked"
`
	if _, errs := run(good + configMap); errs != "" {
		t.Fatalf("want no errors, got:\n%s", errs)
	}
	for _, tc := range []struct{ old, new, want string }{
		{"runAsNonRoot: true\n        seccomp", "runAsNonRoot: false\n        seccomp",
			`ConfigMap/spark-executor executor-pod-template.yaml (iotinfer/templates/spark-connect.yaml): container "executor": runAsNonRoot is not true`},
		{"readOnlyRootFilesystem: true\n            capabilities: {drop: [ALL]}\n          volumeMounts",
			"readOnlyRootFilesystem: false\n            capabilities: {drop: [ALL]}\n          volumeMounts", "readOnlyRootFilesystem is not true"},
		{"{name: tmp, mountPath: /tmp}\n      volumes", "{name: scratch, mountPath: /tmp}\n      volumes", `volumeMount "scratch"`},
		{"    kind: Pod", "    kind: Service", `Service/executor: unknown field "spec.containers"`},
		{"      securityContext:\n        runAsNonRoot", "      securityContex:\n        runAsNonRoot", `unknown field "spec.securityContex"`},
	} {
		if !strings.Contains(configMap, tc.old) {
			t.Fatalf("test case does not apply: %q not in the manifest", tc.old)
		}
		if _, errs := run(good + strings.Replace(configMap, tc.old, tc.new, 1)); !strings.Contains(errs, tc.want) {
			t.Errorf("%q -> %q: want an error containing %q, got:\n%s", tc.old, tc.new, tc.want, errs)
		}
	}
	notAPod := configMap[:strings.Index(configMap, "    kind: Pod")] + "    kind: ConfigMap\n    metadata: {name: x}\n"
	if _, errs := run(good + notAPod); !strings.Contains(errs, "executor-pod-template.yaml: a ConfigMap, not a Pod") {
		t.Errorf("want the template's kind refused, got:\n%s", errs)
	}
}
