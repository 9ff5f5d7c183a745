// Command check reads the multi-document YAML that `helm template` prints and decodes every
// document strictly into the Kubernetes Go type of its apiVersion and kind, then runs a few checks
// the types cannot express (checks.go), checks the alerting rules' and dashboards' queries
// (monitoring.go), what the render grants and isolates (security.go) and its KEDA objects
// (keda.go). It prints one line per problem, naming the document, and exits 1 if there was any;
// else one summary line.
//
//	helm template iotinfer deploy/helm/iotinfer | check [-metrics FILE] [-rules FILE] [-production]
//
// -metrics names a file of the metric names (one a line) that queries may name; without it,
// names are not checked. -rules writes the render's PrometheusRule groups as a Prometheus rule
// file, for promtool (nothing when it has none). -production holds the render to what a
// production deployment needs: NetworkPolicies, and an authenticated Spark Connect server.
package main

import (
	"bufio"
	"bytes"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"sort"
	"strings"

	monitoringv1 "github.com/prometheus-operator/prometheus-operator/pkg/apis/monitoring/v1"
	appsv1 "k8s.io/api/apps/v1"
	autoscalingv2 "k8s.io/api/autoscaling/v2"
	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	policyv1 "k8s.io/api/policy/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	utilyaml "k8s.io/apimachinery/pkg/util/yaml"
	kjson "sigs.k8s.io/json"
	"sigs.k8s.io/yaml"
)

// The API groups a chart of ours may render. A kind outside them is an error: it is either a
// typo or a new dependency this checker has to learn about.
var scheme = func() *runtime.Scheme {
	s := runtime.NewScheme()
	for _, add := range []func(*runtime.Scheme) error{
		corev1.AddToScheme, appsv1.AddToScheme, batchv1.AddToScheme, autoscalingv2.AddToScheme,
		policyv1.AddToScheme, rbacv1.AddToScheme, networkingv1.AddToScheme, monitoringv1.AddToScheme, addKEDA,
	} {
		if err := add(s); err != nil {
			panic(err)
		}
	}
	return s
}()

// Object is one decoded document.
type Object struct {
	Kind   string
	Name   string
	Source string // the template it came from, from helm's "# Source:" line
	Obj    runtime.Object
}

func (o Object) String() string {
	name := o.Kind + "/" + o.Name
	if o.Source != "" {
		name += " (" + o.Source + ")"
	}
	return name
}

// Decode splits a stream of YAML documents and decodes each one strictly. Documents that are
// empty or only comments are skipped. It returns the objects it could decode and one error per
// document it could not.
func Decode(r io.Reader) ([]Object, []error) {
	var objs []Object
	var errs []error
	reader := utilyaml.NewYAMLReader(bufio.NewReader(r))
	for index := 0; ; index++ {
		doc, err := reader.Read()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			errs = append(errs, fmt.Errorf("document %d: %w", index, err))
			break
		}
		obj, err := decodeDocument(doc)
		if err != nil {
			errs = append(errs, fmt.Errorf("document %d: %w", index, err))
			continue
		}
		if obj != nil {
			objs = append(objs, *obj)
		}
	}
	return objs, errs
}

func decodeDocument(doc []byte) (*Object, error) {
	source := sourceOf(doc)
	// Converted without a target type, as kubectl and the API server do: sigs.k8s.io/yaml's
	// UnmarshalStrict would turn `value: 8080` into the string an env var needs and hide the bug.
	js, err := yaml.YAMLToJSON(doc)
	if err != nil {
		return nil, fmt.Errorf("%s: not valid YAML: %w", orUnknown(source), err)
	}
	js = bytes.TrimSpace(js)
	if bytes.Equal(js, []byte("null")) {
		return nil, nil
	}
	var head struct {
		APIVersion string `json:"apiVersion"`
		Kind       string `json:"kind"`
		Metadata   struct {
			Name string `json:"name"`
		} `json:"metadata"`
	}
	if err := kjson.UnmarshalCaseSensitivePreserveInts(js, &head); err != nil {
		return nil, fmt.Errorf("%s: not a Kubernetes object: %w", orUnknown(source), err)
	}
	obj := Object{Kind: orUnknown(head.Kind), Name: orUnknown(head.Metadata.Name), Source: source}
	if head.APIVersion == "" || head.Kind == "" {
		return nil, fmt.Errorf("%s: missing apiVersion or kind", obj)
	}
	// Duplicate keys, which the lenient conversion above let through so that the error names
	// the object.
	if _, err := yaml.YAMLToJSONStrict(doc); err != nil {
		return nil, fmt.Errorf("%s: %w", obj, err)
	}
	gv, err := schema.ParseGroupVersion(head.APIVersion)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", obj, err)
	}
	typed, err := scheme.New(gv.WithKind(head.Kind))
	if err != nil {
		return nil, fmt.Errorf("%s: unknown apiVersion/kind %s %s", obj, head.APIVersion, head.Kind)
	}
	// Case-sensitive and with unknown and duplicate fields reported, as the API server decodes:
	// encoding/json would accept "Replicas" for "replicas"; the server does not.
	strict, err := kjson.UnmarshalStrict(js, typed)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", obj, err)
	}
	if len(strict) > 0 {
		msgs := make([]string, len(strict))
		for i, e := range strict {
			msgs[i] = e.Error()
		}
		return nil, fmt.Errorf("%s: %s", obj, strings.Join(msgs, "; "))
	}
	if head.Metadata.Name == "" {
		return nil, fmt.Errorf("%s: metadata.name is empty", obj)
	}
	obj.Obj = typed
	return &obj, nil
}

func sourceOf(doc []byte) string {
	for _, line := range strings.Split(string(doc), "\n") {
		if rest, ok := strings.CutPrefix(strings.TrimSpace(line), "# Source: "); ok {
			return rest
		}
	}
	return ""
}

func orUnknown(s string) string {
	if s == "" {
		return "<unknown>"
	}
	return s
}

// Summary is "N documents: K1=n1 K2=n2 ..." with kinds in name order.
func Summary(objs []Object) string {
	counts := map[string]int{}
	for _, o := range objs {
		counts[o.Kind]++
	}
	kinds := make([]string, 0, len(counts))
	for k := range counts {
		kinds = append(kinds, k)
	}
	sort.Strings(kinds)
	parts := make([]string, len(kinds))
	for i, k := range kinds {
		parts[i] = fmt.Sprintf("%s=%d", k, counts[k])
	}
	return fmt.Sprintf("%d documents: %s", len(objs), strings.Join(parts, " "))
}

// readMetrics reads a file of metric names, one a line.
func readMetrics(path string) (map[string]bool, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	known := map[string]bool{}
	for _, line := range strings.Split(string(data), "\n") {
		if line = strings.TrimSpace(line); line != "" {
			known[line] = true
		}
	}
	if len(known) == 0 {
		return nil, fmt.Errorf("%s: no metric names", path)
	}
	return known, nil
}

func main() {
	// A flag set of our own: controller-runtime, which KEDA's API package imports, adds
	// -kubeconfig to the global one.
	flags := flag.NewFlagSet("check", flag.ExitOnError)
	metricsFile := flags.String("metrics", "", "file of the metric names queries may name, one a line")
	rulesFile := flags.String("rules", "", "write the PrometheusRule groups here, as a Prometheus rule file")
	production := flags.Bool("production", false, "hold the render to what a production deployment needs (security.go)")
	_ = flags.Parse(os.Args[1:]) // ExitOnError: it exits on an error
	var known map[string]bool
	if *metricsFile != "" {
		var err error
		if known, err = readMetrics(*metricsFile); err != nil {
			fmt.Fprintln(os.Stderr, "check:", err)
			os.Exit(2)
		}
	}
	objs, errs := Decode(os.Stdin)
	// Checks across objects would only echo a document that failed to decode.
	if len(errs) == 0 {
		errs = append(Check(objs), CheckMonitoring(objs, known)...)
		errs = append(errs, CheckSecurity(objs, *production)...)
		errs = append(errs, CheckKEDA(objs)...)
	}
	if len(errs) == 0 && *rulesFile != "" {
		rules, err := RuleFile(objs)
		if err == nil && rules != nil {
			err = os.WriteFile(*rulesFile, rules, 0o644)
		}
		if err != nil {
			errs = append(errs, err)
		}
	}
	for _, err := range errs {
		fmt.Fprintln(os.Stderr, "check:", err)
	}
	if len(errs) > 0 {
		fmt.Fprintf(os.Stderr, "check: %d problem(s)\n", len(errs))
		os.Exit(1)
	}
	if len(objs) == 0 {
		fmt.Fprintln(os.Stderr, "check: no documents on stdin")
		os.Exit(1)
	}
	fmt.Println("ok,", Summary(objs))
}
