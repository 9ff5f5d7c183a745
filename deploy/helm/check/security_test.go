package main

import (
	"strconv"
	"strings"
	"testing"
)

// A Spark Connect server whose driver starts executor pods, with the ServiceAccount, Role and
// RoleBinding it needs and no more; cases below break one thing each.
const sparkOnKubernetes = `---
# Source: iotinfer/templates/spark-connect.yaml
apiVersion: apps/v1
kind: Deployment
metadata: {name: spark-connect}
spec:
  selector:
    matchLabels: {app: spark-connect}
  template:
    metadata:
      labels: {app: spark-connect}
    spec:
      serviceAccountName: spark-connect
      securityContext:
        runAsNonRoot: true
        seccompProfile: {type: RuntimeDefault}
      containers:
        - name: spark-connect
          image: iotinfer-spark:4.0.0
          command: [/opt/spark/bin/spark-submit]
          args: [--class, org.apache.spark.sql.connect.service.SparkConnectServer, --master, "k8s://https://kubernetes.default.svc"]
          ports:
            - {name: grpc, containerPort: 15002}
          livenessProbe:
            tcpSocket: {port: grpc}
          readinessProbe:
            tcpSocket: {port: grpc}
          resources:
            requests: {cpu: "1", memory: 3Gi}
            limits: {memory: 3Gi}
          securityContext:
            allowPrivilegeEscalation: false
            readOnlyRootFilesystem: true
            capabilities: {drop: [ALL]}
---
apiVersion: v1
kind: ServiceAccount
metadata: {name: spark-connect}
---
apiVersion: rbac.authorization.k8s.io/v1
kind: Role
metadata: {name: spark-connect}
rules:
  - apiGroups: [""]
    resources: ["pods"]
    verbs: ["create", "get", "list", "watch", "delete", "deletecollection"]
---
apiVersion: rbac.authorization.k8s.io/v1
kind: RoleBinding
metadata: {name: spark-connect}
roleRef: {apiGroup: rbac.authorization.k8s.io, kind: Role, name: spark-connect}
subjects:
  - {kind: ServiceAccount, name: spark-connect, namespace: iotinfer}
`

func runSecurity(manifest string) string {
	objs, errs := Decode(strings.NewReader(manifest))
	if len(errs) == 0 {
		errs = append(Check(objs), CheckSecurity(objs)...)
	}
	msgs := make([]string, len(errs))
	for i, e := range errs {
		msgs[i] = e.Error()
	}
	return strings.Join(msgs, "\n")
}

func TestSparkRoleGrantsOnlyWhatExecutorsNeed(t *testing.T) {
	if errs := runSecurity(sparkOnKubernetes); errs != "" {
		t.Fatalf("want no errors, got:\n%s", errs)
	}
	for _, tc := range []struct{ name, old, new, want string }{
		{"a verb Spark does not use", `"delete", "deletecollection"]`, `"delete", "deletecollection", "patch"]`,
			`Role/spark-connect: rule 0 grants "patch" on pods, beyond what Spark's executors need`},
		{"every verb", `verbs: ["create", "get", "list", "watch", "delete", "deletecollection"]`, `verbs: ["*"]`,
			`grants "*" on pods`},
		{"a resource Spark does not use", `resources: ["pods"]`, `resources: ["pods", "configmaps"]`,
			`rule 0 grants "configmaps", which Spark's executors do not need`},
		{"another API group", `apiGroups: [""]`, `apiGroups: ["", "apps"]`, `apiGroups ["" "apps"], not only the core group`},
		{"a driver with local executors", `"k8s://https://kubernetes.default.svc"`, `"local[*]"`,
			`RoleBinding/spark-connect: grants Role spark-connect to Deployment/spark-connect (iotinfer/templates/spark-connect.yaml), which runs no Spark driver with a k8s:// master`},
		{"granted to an account no pod uses", "serviceAccountName: spark-connect", "serviceAccountName: default",
			"grants Role spark-connect to ServiceAccount spark-connect, which no pod of this render uses"},
		{"a binding to a missing Role", "kind: Role, name: spark-connect}", "kind: Role, name: spark}",
			"roleRef Role/spark is no Role of this render"},
		{"a Role bound to nothing", sparkOnKubernetes[strings.Index(sparkOnKubernetes, "---\napiVersion: rbac.authorization.k8s.io/v1\nkind: RoleBinding"):],
			"", "Role/spark-connect: bound to nothing"},
		{"a grant beyond the namespace", "kind: Role\n", "kind: ClusterRole\n", "ClusterRole/spark-connect: the chart grants nothing beyond its namespace"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if !strings.Contains(sparkOnKubernetes, tc.old) {
				t.Fatalf("test case does not apply: %q not in the manifest", tc.old)
			}
			if errs := runSecurity(strings.Replace(sparkOnKubernetes, tc.old, tc.new, 1)); !strings.Contains(errs, tc.want) {
				t.Errorf("want an error containing %q, got:\n%s", tc.want, errs)
			}
		})
	}
}

func TestKafkaSecretsInArgumentsAreReported(t *testing.T) {
	for _, tc := range []struct{ arg, want string }{
		{"--kafka=sasl.password=hunter2", `container "infer": argument --kafka=sasl.password=... puts a secret in the pod spec`},
		{"--spark-kafka=kafka.sasl.jaas.config=org.apache.kafka.common.security.plain.PlainLoginModule required;",
			"argument --spark-kafka=kafka.sasl.jaas.config=... puts a secret"},
		{"--kafka=ssl.key.pem=-----BEGIN PRIVATE KEY-----", "argument --kafka=ssl.key.pem=..."},
		{"--kafka=sasl.password=$(KAFKA_PASSWORD)", ""},
		{"--kafka=sasl.username=iotinfer", ""},
		{"--spark-kafka=kafka.ssl.truststore.location=/etc/kafka/truststore.p12", ""},
	} {
		manifest := strings.Replace(good, "args: [infer, ", "args: [infer, "+strconv.Quote(tc.arg)+", ", 1)
		if manifest == good {
			t.Fatal("test case does not apply to the manifest")
		}
		errs := runSecurity(manifest)
		if tc.want == "" && errs != "" || !strings.Contains(errs, tc.want) {
			t.Errorf("%s: want an error containing %q, got:\n%s", tc.arg, tc.want, errs)
		}
	}
}
