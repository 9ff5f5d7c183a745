package main

import (
	"fmt"
	"regexp"
	"slices"
	"strings"

	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/util/intstr"
)

// roleAllowList is all a Role of the chart may grant: what Spark 4.0's Kubernetes scheduler asks
// of the API for its executors, as the chart runs it (the driver in the Spark Connect server's
// pod, with no executor ConfigMap, driver Service or on-demand claims). A verb or resource beyond
// it is a grant nothing uses, there for whoever takes over the pod.
var roleAllowList = map[string][]string{
	"pods": {"create", "delete", "deletecollection", "get", "list", "watch"},
}

// secretKey matches the Kafka property names that hold secrets, as values.schema.json refuses
// them in kafka.properties and stream.spark.kafkaProperties.
var secretKey = regexp.MustCompile(`(?i)password|secret|(^|\.)(sasl\.jaas\.config|sasl\.oauthbearer\.config|ssl[._]key\.pem|ssl\.keystore\.key)$`)

// A value the kubelet fills in from the container's environment, e.g. from a Secret.
var envReference = regexp.MustCompile(`^\$\([A-Za-z_][A-Za-z0-9_]*\)$`)

// podsOf returns the pod templates of a render: its workloads' and those its ConfigMaps hold.
func podsOf(objs []Object) []*workload {
	var pods []*workload
	for _, o := range objs {
		if w := workloadOf(o); w != nil {
			pods = append(pods, w)
		}
		templates, _ := podTemplatesOf(o) // their errors are Check's to report
		pods = append(pods, templates...)
	}
	return pods
}

// CheckSecurity checks what a render grants: its Roles stay within roleAllowList and are bound
// only to Spark drivers that start executor pods (a k8s:// master); no container argument
// carries a Kafka secret, nor any place but a Secret the Spark Connect token, since anyone who
// reads the pod spec or the process list sees them; the services present the token of the
// Spark Connect server they use; and, where the render has NetworkPolicies, they leave no pod
// open and name what the render has. A production render must also isolate its pods with
// NetworkPolicies and authenticate its Spark Connect servers.
func CheckSecurity(objs []Object, production bool) []error {
	var errs []error
	fail := func(o Object, format string, args ...any) {
		errs = append(errs, fmt.Errorf("%s: %s", o, fmt.Sprintf(format, args...)))
	}
	pods := podsOf(objs)
	errs = append(errs, checkSparkAuth(objs, pods, production)...)
	errs = append(errs, checkNetworkPolicies(objs, pods, production)...)
	for _, p := range pods {
		for _, c := range append(slices.Clone(p.pod.Spec.InitContainers), p.pod.Spec.Containers...) {
			for _, a := range append(slices.Clone(c.Command), c.Args...) {
				if key, value, ok := kafkaArgument(a); ok && secretKey.MatchString(key) && !envReference.MatchString(value) {
					fail(p.obj, "container %q: argument %s=... puts a secret in the pod spec and the process list: give it from a Secret",
						c.Name, a[:len(a)-len(value)-1])
				}
			}
		}
	}
	roles := map[string]Object{}
	bound := map[string]bool{}
	for _, o := range objs {
		switch t := o.Obj.(type) {
		case *rbacv1.ClusterRole, *rbacv1.ClusterRoleBinding:
			fail(o, "the chart grants nothing beyond its namespace")
		case *rbacv1.Role:
			roles[o.Name] = o
			for _, msg := range checkRoleRules(t.Rules) {
				fail(o, "%s", msg)
			}
		}
	}
	for _, o := range objs {
		rb, ok := o.Obj.(*rbacv1.RoleBinding)
		if !ok {
			continue
		}
		if rb.RoleRef.Kind != "Role" || roles[rb.RoleRef.Name].Obj == nil {
			fail(o, "roleRef %s/%s is no Role of this render", rb.RoleRef.Kind, rb.RoleRef.Name)
			continue
		}
		bound[rb.RoleRef.Name] = true
		for _, s := range rb.Subjects {
			if s.Kind != rbacv1.ServiceAccountKind {
				fail(o, "subject %s/%s: only the chart's ServiceAccounts may be bound", s.Kind, s.Name)
				continue
			}
			users := 0
			for _, p := range pods {
				if p.pod.Spec.ServiceAccountName != s.Name {
					continue
				}
				users++
				if !runsK8sMaster(&p.pod.Spec) {
					fail(o, "grants Role %s to %s, which runs no Spark driver with a k8s:// master: nothing there starts executor pods",
						rb.RoleRef.Name, p.obj)
				}
			}
			if users == 0 {
				fail(o, "grants Role %s to ServiceAccount %s, which no pod of this render uses", rb.RoleRef.Name, s.Name)
			}
		}
	}
	for _, o := range objs {
		if _, ok := o.Obj.(*rbacv1.Role); ok && !bound[o.Name] {
			fail(o, "bound to nothing")
		}
	}
	return errs
}

func checkRoleRules(rules []rbacv1.PolicyRule) []string {
	var msgs []string
	for i, r := range rules {
		if len(r.NonResourceURLs) > 0 {
			msgs = append(msgs, fmt.Sprintf("rule %d grants non-resource URLs %v", i, r.NonResourceURLs))
		}
		if !slices.Equal(r.APIGroups, []string{""}) {
			msgs = append(msgs, fmt.Sprintf("rule %d: apiGroups %q, not only the core group", i, r.APIGroups))
		}
		for _, res := range r.Resources {
			allowed, ok := roleAllowList[res]
			if !ok {
				msgs = append(msgs, fmt.Sprintf("rule %d grants %q, which Spark's executors do not need (allowed: %s)",
					i, res, strings.Join(sortedKeys(roleAllowList), ", ")))
				continue
			}
			for _, v := range r.Verbs {
				if !slices.Contains(allowed, v) {
					msgs = append(msgs, fmt.Sprintf("rule %d grants %q on %s, beyond what Spark's executors need (%s)",
						i, v, res, strings.Join(allowed, ", ")))
				}
			}
		}
	}
	return msgs
}

const (
	sparkConnectServerClass = "org.apache.spark.sql.connect.service.SparkConnectServer"
	sparkServerTokenEnv     = "SPARK_CONNECT_AUTHENTICATE_TOKEN"
	sparkClientTokenEnv     = "IOTINFER_SPARK_TOKEN"
	sparkURLEnv             = "IOTINFER_SPARK"
)

// sparkServer is a Spark Connect server of the render: its pod and the Secret of its token.
type sparkServer struct {
	pod   *workload
	token *corev1.SecretKeySelector // nil: no authentication
	// Listening on the pod's loopback, behind a TLS proxy.
	tlsOnly bool
}

func checkSparkAuth(objs []Object, pods []*workload, production bool) []error {
	var errs []error
	fail := func(o Object, format string, args ...any) {
		errs = append(errs, fmt.Errorf("%s: %s", o, fmt.Sprintf(format, args...)))
	}
	var servers []sparkServer
	for _, p := range pods {
		for _, c := range p.pod.Spec.Containers {
			for _, e := range c.Env {
				if (e.Name == sparkServerTokenEnv || e.Name == sparkClientTokenEnv) && e.Value != "" {
					fail(p.obj, "container %q: %s is a plain value of the pod spec: take it from a Secret", c.Name, e.Name)
				}
				if e.Name == sparkURLEnv && strings.Contains(strings.ToLower(e.Value), "token=") {
					fail(p.obj, "container %q: %s carries a token in the pod spec: take it from a Secret as %s",
						c.Name, e.Name, sparkClientTokenEnv)
				}
			}
			args := append(slices.Clone(c.Command), c.Args...)
			if slices.ContainsFunc(args, func(a string) bool { return strings.Contains(a, "spark.connect.authenticate.token=") }) {
				fail(p.obj, "container %q: the Spark Connect token is an argument, in the pod spec and the process list", c.Name)
			}
			if !slices.Contains(args, sparkConnectServerClass) {
				continue
			}
			server := sparkServer{pod: p, token: secretKeyRef(&c, sparkServerTokenEnv),
				tlsOnly: slices.Contains(args, "spark.connect.grpc.binding.address=127.0.0.1")}
			if server.token == nil && production {
				fail(p.obj, "container %q runs Spark Connect without authentication (%s from a Secret): any pod that reaches its port runs code in the driver",
					c.Name, sparkServerTokenEnv)
			}
			servers = append(servers, server)
		}
	}
	// Which server a service's URL names: the Service of that name selecting the server's pod.
	serverOf := map[string]sparkServer{}
	for _, o := range objs {
		svc, ok := o.Obj.(*corev1.Service)
		if !ok || len(svc.Spec.Selector) == 0 {
			continue
		}
		for _, srv := range servers {
			if labels.SelectorFromSet(svc.Spec.Selector).Matches(labels.Set(srv.pod.pod.Labels)) {
				serverOf[svc.Name] = srv
			}
		}
	}
	for _, p := range pods {
		for _, c := range p.pod.Spec.Containers {
			url, ok := envValue(&c, sparkURLEnv)
			if !ok {
				continue
			}
			got := secretKeyRef(&c, sparkClientTokenEnv)
			srv, ours := serverOf[sparkHost(url)]
			if ours && srv.tlsOnly && !strings.Contains(url, "use_ssl=true") {
				fail(p.obj, "container %q: %s has no use_ssl=true, but %s takes only TLS", c.Name, sparkURLEnv, srv.pod.obj)
			}
			if ca, ok := envValue(&c, "IOTINFER_SPARK_CA"); ok && !mounted(&c, ca) {
				fail(p.obj, "container %q: IOTINFER_SPARK_CA %s is in no volume the container mounts", c.Name, ca)
			}
			switch {
			case ours && srv.token != nil && (got == nil || got.Name != srv.token.Name || got.Key != srv.token.Key):
				fail(p.obj, "container %q: %s is not the token of the Spark Connect server it uses (%s, Secret %s key %s)",
					c.Name, sparkClientTokenEnv, srv.pod.obj, srv.token.Name, srv.token.Key)
			case got == nil && production:
				fail(p.obj, "container %q uses Spark Connect (%s) without a token (%s from a Secret)", c.Name, url, sparkClientTokenEnv)
			}
		}
	}
	return errs
}

// The label every object of a release carries: peers with it name the release's own pods.
const instanceLabel = "app.kubernetes.io/instance"

func checkNetworkPolicies(objs []Object, pods []*workload, production bool) []error {
	var errs []error
	fail := func(o Object, format string, args ...any) {
		errs = append(errs, fmt.Errorf("%s: %s", o, fmt.Sprintf(format, args...)))
	}
	ingress := map[*workload]bool{}
	egress := map[*workload]bool{}
	policies := 0
	for _, o := range objs {
		np, ok := o.Obj.(*networkingv1.NetworkPolicy)
		if !ok {
			continue
		}
		policies++
		selected := selectPodsBy(o, &np.Spec.PodSelector, pods, fail)
		if len(selected) == 0 {
			fail(o, "podSelector matches no pod of this render")
		}
		types := np.Spec.PolicyTypes
		if len(types) == 0 { // the API's default
			types = []networkingv1.PolicyType{networkingv1.PolicyTypeIngress}
			if len(np.Spec.Egress) > 0 {
				types = append(types, networkingv1.PolicyTypeEgress)
			}
		}
		for _, w := range selected {
			ingress[w] = ingress[w] || slices.Contains(types, networkingv1.PolicyTypeIngress)
			egress[w] = egress[w] || slices.Contains(types, networkingv1.PolicyTypeEgress)
		}
		for i, r := range np.Spec.Ingress {
			for _, p := range r.Ports {
				if !anyHasPort(selected, p.Port) {
					fail(o, "ingress rule %d: port %s is no container port of the pods it selects", i, p.Port.String())
				}
			}
			for _, peer := range r.From {
				checkPeer(o, fmt.Sprintf("ingress rule %d", i), peer, nil, pods, fail)
			}
		}
		for i, r := range np.Spec.Egress {
			for _, peer := range r.To {
				checkPeer(o, fmt.Sprintf("egress rule %d", i), peer, r.Ports, pods, fail)
			}
		}
	}
	if policies == 0 {
		if production {
			errs = append(errs, fmt.Errorf("renders no NetworkPolicy: a production render must isolate its pods (networkPolicy.enabled)"))
		}
		return errs
	}
	for _, w := range pods {
		if !ingress[w] {
			fail(w.obj, "no NetworkPolicy isolates its pods for ingress: anything in the cluster may connect to them")
		}
		if runsIotinfer(w) && !egress[w] {
			fail(w.obj, "no NetworkPolicy limits where its iotinfer pods connect (egress)")
		}
	}
	return errs
}

// checkPeer checks a peer that names pods of the release (a podSelector with the release's
// label, in the policy's namespace): it must match some, and an egress rule's ports must be
// ports of theirs, as a policy sees a Service's traffic once it reaches the pod.
func checkPeer(o Object, where string, peer networkingv1.NetworkPolicyPeer, ports []networkingv1.NetworkPolicyPort,
	pods []*workload, fail func(Object, string, ...any)) {
	if peer.PodSelector == nil || peer.NamespaceSelector != nil || peer.IPBlock != nil {
		return
	}
	if _, ours := peer.PodSelector.MatchLabels[instanceLabel]; !ours {
		return
	}
	matched := selectPodsBy(o, peer.PodSelector, pods, fail)
	if len(matched) == 0 {
		fail(o, "%s: podSelector %s matches no pod of this render", where, metav1.FormatLabelSelector(peer.PodSelector))
		return
	}
	for _, p := range ports {
		if !anyHasPort(matched, p.Port) {
			fail(o, "%s: port %s is no container port of the pods it names", where, p.Port.String())
		}
	}
}

// anyHasPort says whether a pod declares the port (by number or name); pods that declare none
// (templates another program completes) cannot tell, and pass.
func anyHasPort(pods []*workload, port *intstr.IntOrString) bool {
	if port == nil {
		return true
	}
	declared := false
	for _, w := range pods {
		for _, c := range w.pod.Spec.Containers {
			for _, p := range c.Ports {
				declared = true
				if (port.Type == intstr.Int && p.ContainerPort == port.IntVal) || (port.Type == intstr.String && p.Name == port.StrVal) {
					return true
				}
			}
		}
	}
	return !declared
}

// runsIotinfer says whether a pod runs iotinfer: its configuration is IOTINFER_* variables.
func runsIotinfer(w *workload) bool {
	for _, c := range w.pod.Spec.Containers {
		if slices.ContainsFunc(c.Env, func(e corev1.EnvVar) bool { return strings.HasPrefix(e.Name, "IOTINFER_") }) {
			return true
		}
	}
	return false
}

// secretKeyRef returns the Secret an environment variable of the container comes from.
func secretKeyRef(c *corev1.Container, name string) *corev1.SecretKeySelector {
	for _, e := range c.Env {
		if e.Name == name && e.ValueFrom != nil && e.ValueFrom.SecretKeyRef != nil {
			return e.ValueFrom.SecretKeyRef
		}
	}
	return nil
}

// mounted says whether a file lies in a volume the container mounts (not the image's own file system).
func mounted(c *corev1.Container, file string) bool {
	return slices.ContainsFunc(c.VolumeMounts, func(m corev1.VolumeMount) bool {
		return strings.HasPrefix(file, strings.TrimSuffix(m.MountPath, "/")+"/")
	})
}

func envValue(c *corev1.Container, name string) (string, bool) {
	for _, e := range c.Env {
		if e.Name == name {
			return e.Value, true
		}
	}
	return "", false
}

// sparkHost is the first label of the host of sc://HOST[:PORT][/;...], which names a Service
// of the release's namespace (HOST, HOST.NAMESPACE.svc, ...).
func sparkHost(url string) string {
	host, _ := strings.CutPrefix(url, "sc://")
	host, _, _ = strings.Cut(host, "/")
	host, _, _ = strings.Cut(host, ":")
	host, _, _ = strings.Cut(host, ".")
	return host
}

// kafkaArgument splits --kafka=KEY=VALUE and --spark-kafka=KEY=VALUE.
func kafkaArgument(arg string) (key, value string, ok bool) {
	for _, flag := range []string{"--kafka=", "--spark-kafka="} {
		if rest, found := strings.CutPrefix(arg, flag); found {
			return strings.Cut(rest, "=")
		}
	}
	return "", "", false
}

// runsK8sMaster says whether a container of the pod runs spark-submit with a k8s:// master.
func runsK8sMaster(spec *corev1.PodSpec) bool {
	for _, c := range spec.Containers {
		args := append(slices.Clone(c.Command), c.Args...)
		for i, a := range args {
			if (a == "--master" && i+1 < len(args) && strings.HasPrefix(args[i+1], "k8s://")) ||
				strings.HasPrefix(a, "--master=k8s://") {
				return true
			}
		}
	}
	return false
}

func sortedKeys[V any](m map[string]V) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	return keys
}
