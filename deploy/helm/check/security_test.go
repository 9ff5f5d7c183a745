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
      labels: {app: spark-connect, app.kubernetes.io/instance: iotinfer}
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
          env:
            - name: SPARK_CONNECT_AUTHENTICATE_TOKEN
              valueFrom:
                secretKeyRef: {name: spark-connect-token, key: token}
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

func runSecurity(manifest string, production bool) string {
	objs, errs := Decode(strings.NewReader(manifest))
	if len(errs) == 0 {
		errs = append(Check(objs), CheckSecurity(objs, production)...)
	}
	msgs := make([]string, len(errs))
	for i, e := range errs {
		msgs[i] = e.Error()
	}
	return strings.Join(msgs, "\n")
}

func TestSparkRoleGrantsOnlyWhatExecutorsNeed(t *testing.T) {
	if errs := runSecurity(sparkOnKubernetes, false); errs != "" {
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
			if errs := runSecurity(strings.Replace(sparkOnKubernetes, tc.old, tc.new, 1), false); !strings.Contains(errs, tc.want) {
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
		errs := runSecurity(manifest, false)
		if tc.want == "" && errs != "" || !strings.Contains(errs, tc.want) {
			t.Errorf("%s: want an error containing %q, got:\n%s", tc.arg, tc.want, errs)
		}
	}
}

// The Service of the server above, and a batch run that uses it with its token.
const sparkClient = `---
apiVersion: v1
kind: Service
metadata: {name: spark-connect}
spec:
  selector: {app: spark-connect}
  ports:
    - {name: grpc, port: 15002, targetPort: grpc}
---
# Source: iotinfer/templates/batch-job.yaml
apiVersion: batch/v1
kind: Job
metadata: {name: batch}
spec:
  template:
    metadata:
      labels: {app: batch, app.kubernetes.io/instance: iotinfer}
    spec:
      restartPolicy: Never
      securityContext:
        runAsNonRoot: true
        seccompProfile: {type: RuntimeDefault}
      containers:
        - name: batch
          image: iotinfer:0.1.0
          args: [batch, --engine=spark]
          env:
            - {name: IOTINFER_SPARK, value: "sc://spark-connect:15002"}
            - name: IOTINFER_SPARK_TOKEN
              valueFrom:
                secretKeyRef: {name: spark-connect-token, key: token}
          resources:
            requests: {cpu: 100m, memory: 64Mi}
            limits: {memory: 64Mi}
          securityContext:
            allowPrivilegeEscalation: false
            readOnlyRootFilesystem: true
            capabilities: {drop: [ALL]}
`

// A policy that isolates every pod, for production renders whose policies are not the point.
const isolateAll = `---
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {name: isolate-all}
spec:
  podSelector: {}
  policyTypes: [Ingress, Egress]
`

func TestSparkConnectTokenComesFromItsSecret(t *testing.T) {
	all := sparkOnKubernetes + sparkClient + isolateAll
	for _, production := range []bool{false, true} {
		if errs := runSecurity(all, production); errs != "" {
			t.Fatalf("production=%v: want no errors, got:\n%s", production, errs)
		}
	}
	serverToken := `            - name: SPARK_CONNECT_AUTHENTICATE_TOKEN
              valueFrom:
                secretKeyRef: {name: spark-connect-token, key: token}
`
	clientToken := `            - name: IOTINFER_SPARK_TOKEN
              valueFrom:
                secretKeyRef: {name: spark-connect-token, key: token}
`
	for _, tc := range []struct {
		name, old, new string
		production     bool
		want           string
	}{
		{"production without authentication", serverToken, "            - {name: SPARK_LOCAL_DIRS, value: /tmp}\n", true,
			`Deployment/spark-connect (iotinfer/templates/spark-connect.yaml): container "spark-connect" runs Spark Connect without authentication`},
		{"a server token in the pod spec", serverToken, "            - {name: SPARK_CONNECT_AUTHENTICATE_TOKEN, value: s3cret}\n", false,
			"container \"spark-connect\": SPARK_CONNECT_AUTHENTICATE_TOKEN is a plain value of the pod spec"},
		{"a server token as an argument", "--master,", "--conf, spark.connect.authenticate.token=s3cret, --master,", false,
			"the Spark Connect token is an argument"},
		{"a client token in the pod spec", clientToken, "            - {name: IOTINFER_SPARK_TOKEN, value: s3cret}\n", false,
			"container \"batch\": IOTINFER_SPARK_TOKEN is a plain value of the pod spec"},
		{"a client token in the URL", `"sc://spark-connect:15002"`, `"sc://spark-connect:15002/;token=s3cret"`, false,
			"IOTINFER_SPARK carries a token in the pod spec"},
		{"a client without the token", clientToken, "", false,
			"Job/batch (iotinfer/templates/batch-job.yaml): container \"batch\": IOTINFER_SPARK_TOKEN is not the token of the Spark Connect server it uses"},
		{"a client with another Secret", "secretKeyRef: {name: spark-connect-token, key: token}\n          resources",
			"secretKeyRef: {name: other, key: token}\n          resources", false, "is not the token of the Spark Connect server it uses"},
		{"a client of another server without the token", clientToken + "          resources", "          resources", true,
			"uses Spark Connect (sc://spark-connect:15002) without a token"},
		{"plaintext to a server behind its TLS proxy", "--master,", "--conf, spark.connect.grpc.binding.address=127.0.0.1, --master,", false,
			`container "batch": IOTINFER_SPARK has no use_ssl=true, but Deployment/spark-connect (iotinfer/templates/spark-connect.yaml) takes only TLS`},
		{"a CA that is not mounted", `            - {name: IOTINFER_SPARK, value: "sc://spark-connect:15002"}`,
			`            - {name: IOTINFER_SPARK, value: "sc://spark-connect:15002"}` + "\n" + `            - {name: IOTINFER_SPARK_CA, value: /etc/iotinfer/spark-ca/ca.crt}`, false,
			`container "batch": IOTINFER_SPARK_CA /etc/iotinfer/spark-ca/ca.crt is in no volume the container mounts`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if !strings.Contains(all, tc.old) {
				t.Fatalf("test case does not apply: %q not in the manifest", tc.old)
			}
			manifest := strings.Replace(all, tc.old, tc.new, 1)
			if tc.name == "a client of another server without the token" {
				manifest = strings.Replace(manifest, "sc://spark-connect:15002", "sc://spark.analytics:15002", 1)
				tc.want = strings.Replace(tc.want, "sc://spark-connect:15002", "sc://spark.analytics:15002", 1)
			}
			if errs := runSecurity(manifest, tc.production); !strings.Contains(errs, tc.want) {
				t.Errorf("want an error containing %q, got:\n%s", tc.want, errs)
			}
		})
	}
	// Authentication is the production check's to demand: elsewhere a server may go without.
	noAuth := strings.Replace(strings.Replace(all, serverToken, "", 1), clientToken, "", 1)
	if errs := runSecurity(noAuth, false); errs != "" {
		t.Errorf("want no errors without authentication outside production, got:\n%s", errs)
	}
}

// Policies for good's infer, the Spark Connect server and its batch client: each isolated, reached
// only as it is used.
const policies = `---
# Source: iotinfer/templates/networkpolicy.yaml
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {name: infer}
spec:
  podSelector: {matchLabels: {app: infer}}
  policyTypes: [Ingress, Egress]
  ingress:
    - from:
        - namespaceSelector: {matchLabels: {kubernetes.io/metadata.name: monitoring}}
      ports:
        - {port: 8080, protocol: TCP}
  egress:
    - to:
        - namespaceSelector: {matchLabels: {kubernetes.io/metadata.name: kube-system}}
          podSelector: {matchLabels: {k8s-app: kube-dns}}
      ports:
        - {port: 53, protocol: UDP}
---
# Source: iotinfer/templates/networkpolicy.yaml
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {name: batch}
spec:
  podSelector: {matchLabels: {app: batch}}
  policyTypes: [Ingress, Egress]
  ingress: []
  egress:
    - to:
        - podSelector: {matchLabels: {app: spark-connect, app.kubernetes.io/instance: iotinfer}}
      ports:
        - {port: 15002, protocol: TCP}
---
# Source: iotinfer/templates/networkpolicy.yaml
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {name: spark-connect}
spec:
  podSelector: {matchLabels: {app: spark-connect}}
  policyTypes: [Ingress]
  ingress:
    - from:
        - podSelector:
            matchLabels: {app.kubernetes.io/instance: iotinfer}
            matchExpressions:
              - {key: app, operator: In, values: [batch]}
      ports:
        - {port: grpc, protocol: TCP}
`

func TestNetworkPoliciesLeaveNoPodOpen(t *testing.T) {
	all := good + sparkOnKubernetes + sparkClient + policies
	for _, production := range []bool{false, true} {
		if errs := runSecurity(all, production); errs != "" {
			t.Fatalf("production=%v: want no errors, got:\n%s", production, errs)
		}
	}
	if errs := runSecurity(good, true); !strings.Contains(errs, "renders no NetworkPolicy: a production render must isolate its pods") {
		t.Errorf("want a production render without policies refused, got:\n%s", errs)
	}
	if errs := runSecurity(good, false); errs != "" {
		t.Errorf("want no policies required outside production, got:\n%s", errs)
	}
	for _, tc := range []struct{ name, old, new, want string }{
		{"a policy that selects nothing", "podSelector: {matchLabels: {app: infer}}", "podSelector: {matchLabels: {app: inferr}}",
			"NetworkPolicy/infer (iotinfer/templates/networkpolicy.yaml): podSelector matches no pod of this render"},
		{"a pod no policy isolates", "podSelector: {matchLabels: {app: infer}}", "podSelector: {matchLabels: {app: inferr}}",
			"Deployment/infer (iotinfer/templates/infer.yaml): no NetworkPolicy isolates its pods for ingress"},
		{"an iotinfer pod free to connect anywhere", "metadata: {name: infer}\nspec:\n  podSelector: {matchLabels: {app: infer}}\n  policyTypes: [Ingress, Egress]",
			"metadata: {name: infer}\nspec:\n  podSelector: {matchLabels: {app: infer}}\n  policyTypes: [Ingress]",
			"Deployment/infer (iotinfer/templates/infer.yaml): no NetworkPolicy limits where its iotinfer pods connect (egress)"},
		{"the Spark server left open", "metadata: {name: spark-connect}\nspec:\n  podSelector: {matchLabels: {app: spark-connect}}",
			"metadata: {name: spark-connect}\nspec:\n  podSelector: {matchLabels: {app: spark-connecter}}",
			"Deployment/spark-connect (iotinfer/templates/spark-connect.yaml): no NetworkPolicy isolates its pods for ingress"},
		{"metrics allowed on another port", "{port: 8080, protocol: TCP}", "{port: 9090, protocol: TCP}",
			"NetworkPolicy/infer (iotinfer/templates/networkpolicy.yaml): ingress rule 0: port 9090 is no container port of the pods it selects"},
		{"a named port the pods lack", "{port: grpc, protocol: TCP}", "{port: grpcs, protocol: TCP}",
			"NetworkPolicy/spark-connect (iotinfer/templates/networkpolicy.yaml): ingress rule 0: port grpcs is no container port"},
		{"egress to a pod of the release that is not there", "{matchLabels: {app: spark-connect, app.kubernetes.io/instance: iotinfer}}",
			"{matchLabels: {app: spark, app.kubernetes.io/instance: iotinfer}}",
			"NetworkPolicy/batch (iotinfer/templates/networkpolicy.yaml): egress rule 0: podSelector app=spark,app.kubernetes.io/instance=iotinfer matches no pod of this render"},
		{"egress to a port the server does not listen on", "{port: 15002, protocol: TCP}", "{port: 15443, protocol: TCP}",
			"NetworkPolicy/batch (iotinfer/templates/networkpolicy.yaml): egress rule 0: port 15443 is no container port of the pods it names"},
		{"ingress from a client of the release that is not there", "values: [batch]", "values: [stream]",
			"NetworkPolicy/spark-connect (iotinfer/templates/networkpolicy.yaml): ingress rule 0: podSelector app in (stream),app.kubernetes.io/instance=iotinfer matches no pod"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if !strings.Contains(policies, tc.old) {
				t.Fatalf("test case does not apply: %q not in the policies", tc.old)
			}
			if errs := runSecurity(good+sparkOnKubernetes+sparkClient+strings.Replace(policies, tc.old, tc.new, 1), false); !strings.Contains(errs, tc.want) {
				t.Errorf("want an error containing %q, got:\n%s", tc.want, errs)
			}
		})
	}
}
