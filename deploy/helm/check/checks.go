package main

import (
	"fmt"
	"maps"
	"slices"
	"strings"

	monitoringv1 "github.com/prometheus-operator/prometheus-operator/pkg/apis/monitoring/v1"
	appsv1 "k8s.io/api/apps/v1"
	autoscalingv2 "k8s.io/api/autoscaling/v2"
	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	policyv1 "k8s.io/api/policy/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/apimachinery/pkg/util/validation"
)

// workload is a pod template and what renders it.
type workload struct {
	obj     Object
	pod     *corev1.PodTemplateSpec
	service bool // long-running: needs probes
	// A pod template another program completes (Spark's executors): it sets the resources.
	partial bool
}

// podTemplateSuffix names the ConfigMap keys that hold a pod template for another program to
// start pods from, such as Spark's executor template: checked for the same hardening.
const podTemplateSuffix = "pod-template.yaml"

// podTemplatesOf decodes the pod templates a ConfigMap holds.
func podTemplatesOf(o Object) ([]*workload, []error) {
	cm, ok := o.Obj.(*corev1.ConfigMap)
	if !ok {
		return nil, nil
	}
	var found []*workload
	var errs []error
	for _, key := range slices.Sorted(maps.Keys(cm.Data)) {
		if !strings.HasSuffix(key, podTemplateSuffix) {
			continue
		}
		inner, err := decodeDocument([]byte(cm.Data[key]))
		if err == nil && inner == nil {
			err = fmt.Errorf("empty")
		}
		if err != nil {
			errs = append(errs, fmt.Errorf("%s: %s: %w", o, key, err))
			continue
		}
		pod, ok := inner.Obj.(*corev1.Pod)
		if !ok {
			errs = append(errs, fmt.Errorf("%s: %s: a %s, not a Pod", o, key, inner.Kind))
			continue
		}
		template := &corev1.PodTemplateSpec{ObjectMeta: pod.ObjectMeta, Spec: pod.Spec}
		found = append(found, &workload{Object{Kind: o.Kind, Name: o.Name + " " + key, Source: o.Source, Obj: o.Obj},
			template, false, true})
	}
	return found, errs
}

func workloadOf(o Object) *workload {
	switch t := o.Obj.(type) {
	case *appsv1.Deployment:
		return &workload{o, &t.Spec.Template, true, false}
	case *appsv1.StatefulSet:
		return &workload{o, &t.Spec.Template, true, false}
	case *appsv1.DaemonSet:
		return &workload{o, &t.Spec.Template, true, false}
	case *batchv1.Job:
		return &workload{o, &t.Spec.Template, false, false}
	case *batchv1.CronJob:
		return &workload{o, &t.Spec.JobTemplate.Spec.Template, false, false}
	}
	return nil
}

// Check runs what the API server validates beyond the types, or what our conventions ask for, on
// the objects of one render: names, pod hardening and resources, probes of services, and that
// selectors and references find what the render defines.
func Check(objs []Object) []error {
	var errs []error
	fail := func(o Object, format string, args ...any) {
		errs = append(errs, fmt.Errorf("%s: %s", o, fmt.Sprintf(format, args...)))
	}

	seen := map[string]bool{}
	var workloads []*workload
	scalable := map[string]*workload{} // "Kind/name" of what an HPA may scale
	var services []*corev1.Service
	for _, o := range objs {
		if key := o.Kind + "/" + o.Name; seen[key] {
			fail(o, "defined twice")
		} else {
			seen[key] = true
		}
		limit := validation.DNS1123SubdomainMaxLength
		switch o.Kind {
		case "Service":
			limit = validation.DNS1035LabelMaxLength
		case "CronJob":
			limit = 52 // the controller appends 11 characters to name its Jobs
		}
		if len(o.Name) > limit {
			fail(o, "name longer than %d characters", limit)
		}
		for _, msg := range validation.IsDNS1123Subdomain(o.Name) {
			fail(o, "name: %s", msg)
		}
		if w := workloadOf(o); w != nil {
			workloads = append(workloads, w)
			if o.Kind == "Deployment" || o.Kind == "StatefulSet" {
				scalable[o.Kind+"/"+o.Name] = w
			}
		}
		if s, ok := o.Obj.(*corev1.Service); ok {
			services = append(services, s)
		}
		templates, templateErrs := podTemplatesOf(o)
		errs = append(errs, templateErrs...)
		for _, w := range templates {
			for _, msg := range checkPod(w) {
				fail(w.obj, "%s", msg)
			}
		}
	}

	for _, w := range workloads {
		for _, msg := range checkPod(w) {
			fail(w.obj, "%s", msg)
		}
		var selector *metav1.LabelSelector
		switch t := w.obj.Obj.(type) {
		case *appsv1.Deployment:
			selector = t.Spec.Selector
		case *appsv1.StatefulSet:
			selector = t.Spec.Selector
			// The pods' DNS names come from this Service, which must be headless and in the render.
			if !slices.ContainsFunc(services, func(svc *corev1.Service) bool {
				return svc.Name == t.Spec.ServiceName && svc.Spec.ClusterIP == corev1.ClusterIPNone
			}) {
				fail(w.obj, "serviceName %q is no headless Service of this render", t.Spec.ServiceName)
			}
		}
		if selector != nil && len(selectPodsBy(w.obj, selector, []*workload{w}, fail)) == 0 {
			fail(w.obj, "selector does not match the pod template's labels")
		}
	}

	// Selectors and references.
	for _, o := range objs {
		switch t := o.Obj.(type) {
		case *corev1.Service:
			if len(t.Spec.Selector) == 0 {
				continue
			}
			pods := selectPods(workloads, labels.SelectorFromSet(t.Spec.Selector))
			if len(pods) == 0 {
				fail(o, "selector %v matches no pod template of this render", t.Spec.Selector)
			}
			for _, p := range t.Spec.Ports {
				if p.TargetPort.Type == intstr.String && !slices.ContainsFunc(pods, func(w *workload) bool {
					return hasPort(w.pod, p.TargetPort.StrVal)
				}) {
					fail(o, "targetPort %q is no container port of the pods it selects", p.TargetPort.StrVal)
				}
			}
		case *policyv1.PodDisruptionBudget:
			if len(selectPodsBy(o, t.Spec.Selector, workloads, fail)) == 0 {
				fail(o, "selector matches no pod template of this render")
			}
		case *autoscalingv2.HorizontalPodAutoscaler:
			ref := t.Spec.ScaleTargetRef
			w := scalable[ref.Kind+"/"+ref.Name]
			if w == nil {
				fail(o, "scaleTargetRef %s/%s is no Deployment or StatefulSet of this render", ref.Kind, ref.Name)
				continue
			}
			// Utilization is a share of the request: without one the HPA never scales.
			for _, c := range w.pod.Spec.Containers {
				if _, ok := c.Resources.Requests[corev1.ResourceCPU]; !ok {
					fail(o, "container %q of %s requests no CPU", c.Name, ref.Name)
				}
			}
		case *monitoringv1.ServiceMonitor:
			sel, err := metav1.LabelSelectorAsSelector(&t.Spec.Selector)
			if err != nil {
				fail(o, "selector: %v", err)
				continue
			}
			var matched []*corev1.Service
			for _, s := range services {
				if sel.Matches(labels.Set(s.Labels)) {
					matched = append(matched, s)
				}
			}
			if len(matched) == 0 {
				fail(o, "selector matches no Service of this render")
			}
			for _, e := range t.Spec.Endpoints {
				for _, s := range matched {
					if e.Port != "" && !slices.ContainsFunc(s.Spec.Ports, func(p corev1.ServicePort) bool { return p.Name == e.Port }) {
						fail(o, "endpoint port %q is no port of Service %s", e.Port, s.Name)
					}
				}
			}
		}
	}
	return errs
}

// checkPod returns what is wrong with a pod template: hardening, resources, volumes, probes.
func checkPod(w *workload) []string {
	var msgs []string
	spec := &w.pod.Spec
	psc := spec.SecurityContext
	if psc == nil {
		psc = &corev1.PodSecurityContext{}
	}
	volumes := map[string]bool{}
	for _, v := range spec.Volumes {
		volumes[v.Name] = true
	}
	containers := append(slices.Clone(spec.InitContainers), spec.Containers...)
	for i, c := range containers {
		bad := func(format string, args ...any) {
			msgs = append(msgs, fmt.Sprintf("container %q: ", c.Name)+fmt.Sprintf(format, args...))
		}
		sc := c.SecurityContext
		if sc == nil {
			sc = &corev1.SecurityContext{}
		}
		if !isTrue(sc.RunAsNonRoot) && !(sc.RunAsNonRoot == nil && isTrue(psc.RunAsNonRoot)) {
			bad("runAsNonRoot is not true")
		}
		if sc.AllowPrivilegeEscalation == nil || *sc.AllowPrivilegeEscalation {
			bad("allowPrivilegeEscalation is not false")
		}
		if !isTrue(sc.ReadOnlyRootFilesystem) {
			bad("readOnlyRootFilesystem is not true")
		}
		if sc.Capabilities == nil || !slices.Contains(sc.Capabilities.Drop, "ALL") {
			bad("capabilities do not drop ALL")
		}
		seccomp := sc.SeccompProfile
		if seccomp == nil {
			seccomp = psc.SeccompProfile
		}
		if seccomp == nil || seccomp.Type != corev1.SeccompProfileTypeRuntimeDefault {
			bad("seccompProfile is not RuntimeDefault")
		}
		if !w.partial {
			for _, r := range []corev1.ResourceName{corev1.ResourceCPU, corev1.ResourceMemory} {
				if _, ok := c.Resources.Requests[r]; !ok {
					bad("no %s request", r)
				}
			}
			if _, ok := c.Resources.Limits[corev1.ResourceMemory]; !ok {
				bad("no memory limit")
			}
		}
		for _, m := range c.VolumeMounts {
			if !volumes[m.Name] {
				bad("volumeMount %q names no volume of the pod", m.Name)
			}
		}
		if msg := checkModelActive(spec, &c); msg != "" {
			bad("%s", msg)
		}
		if w.service && i >= len(spec.InitContainers) {
			if c.LivenessProbe == nil || c.ReadinessProbe == nil {
				bad("a service needs liveness and readiness probes")
			}
			for _, p := range []*corev1.Probe{c.StartupProbe, c.LivenessProbe, c.ReadinessProbe} {
				if port, ok := probePort(p); ok && port.Type == intstr.String && !hasPort(w.pod, port.StrVal) {
					bad("probe port %q is no port of the container", port.StrVal)
				}
			}
		}
	}
	return msgs
}

// infer's --model-active file is how a helm upgrade changes the model of running pods: it must
// come from a ConfigMap the kubelet keeps up to date, which it never does for a subPath mount.
func checkModelActive(spec *corev1.PodSpec, c *corev1.Container) string {
	for _, arg := range append(slices.Clone(c.Command), c.Args...) {
		file, ok := strings.CutPrefix(arg, "--model-active=")
		if !ok {
			continue
		}
		for _, m := range c.VolumeMounts {
			if !strings.HasPrefix(file, strings.TrimSuffix(m.MountPath, "/")+"/") && file != m.MountPath {
				continue
			}
			if m.SubPath != "" || m.SubPathExpr != "" {
				return fmt.Sprintf("--model-active %s is mounted with a subPath, which the kubelet never updates", file)
			}
			for _, v := range spec.Volumes {
				if v.Name == m.Name && (v.ConfigMap != nil || v.Projected != nil) {
					return ""
				}
			}
		}
		return fmt.Sprintf("--model-active %s is not in a mounted ConfigMap, so no upgrade can change it", file)
	}
	return ""
}

func probePort(p *corev1.Probe) (intstr.IntOrString, bool) {
	switch {
	case p == nil:
	case p.HTTPGet != nil:
		return p.HTTPGet.Port, true
	case p.TCPSocket != nil:
		return p.TCPSocket.Port, true
	}
	return intstr.IntOrString{}, false
}

func hasPort(pod *corev1.PodTemplateSpec, name string) bool {
	for _, c := range pod.Spec.Containers {
		for _, p := range c.Ports {
			if p.Name == name {
				return true
			}
		}
	}
	return false
}

func selectPods(workloads []*workload, sel labels.Selector) []*workload {
	var out []*workload
	for _, w := range workloads {
		if sel.Matches(labels.Set(w.pod.Labels)) {
			out = append(out, w)
		}
	}
	return out
}

func selectPodsBy(o Object, s *metav1.LabelSelector, workloads []*workload, fail func(Object, string, ...any)) []*workload {
	sel, err := metav1.LabelSelectorAsSelector(s)
	if err != nil {
		fail(o, "selector: %v", err)
		return nil
	}
	return selectPods(workloads, sel)
}

func isTrue(b *bool) bool { return b != nil && *b }
