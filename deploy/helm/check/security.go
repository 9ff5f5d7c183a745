package main

import (
	"fmt"
	"regexp"
	"slices"
	"strings"

	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
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
// only to Spark drivers that start executor pods (a k8s:// master); and that no container
// argument carries a Kafka secret, which anyone who reads the pod spec or the process list sees.
func CheckSecurity(objs []Object) []error {
	var errs []error
	fail := func(o Object, format string, args ...any) {
		errs = append(errs, fmt.Errorf("%s: %s", o, fmt.Sprintf(format, args...)))
	}
	pods := podsOf(objs)
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
