package main

import (
	"fmt"
	"maps"
	"slices"
	"strconv"
	"strings"

	"github.com/go-logr/logr"
	kedav1alpha1 "github.com/kedacore/keda/v2/apis/keda/v1alpha1"
	appsv1 "k8s.io/api/apps/v1"
	autoscalingv2 "k8s.io/api/autoscaling/v2"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/runtime"
	ctrllog "sigs.k8s.io/controller-runtime/pkg/log"
)

// KEDA's validators log through controller-runtime, which complains on stderr when no logger
// was ever set.
func init() { ctrllog.SetLogger(logr.Discard()) }

// addKEDA registers the KEDA kinds the chart renders, and no others: a ScaledJob or a
// ClusterTriggerAuthentication would be new to this checker, as any unknown kind is.
func addKEDA(s *runtime.Scheme) error {
	s.AddKnownTypes(kedav1alpha1.GroupVersion, &kedav1alpha1.ScaledObject{}, &kedav1alpha1.TriggerAuthentication{})
	return nil
}

// kedaVersion is the release of github.com/kedacore/keda/v2 in go.mod, whose Kafka scaler
// kafkaParams describes (TestKafkaParamsAreKEDAs compares them).
const kedaVersion = "v2.20.2"

// scalerParam is one parameter of a KEDA scaler, as a `keda:"..."` tag of its metadata struct
// declares it: where KEDA looks for it (the trigger's metadata; a TriggerAuthentication's
// parameters; an environment variable of the scaled container, named by metadata <name>FromEnv),
// whether it must be given (neither optional nor with a default), its allowed values, and how
// it is parsed (the Go type of its field).
type scalerParam struct {
	metadata, auth, env, required bool
	enum                          []string
	kind                          string // "string", "int", "bool" or "list"
}

// kafkaParams are the parameters of KEDA's kafka scaler (pkg/scalers/kafka_scaler.go,
// kafkaMetadata) at kedaVersion.
var kafkaParams = map[string]scalerParam{
	"bootstrapServers":                   {metadata: true, env: true, required: true, kind: "list"},
	"consumerGroup":                      {metadata: true, env: true, required: true, kind: "string"},
	"topic":                              {metadata: true, env: true, kind: "string"},
	"partitionLimitation":                {metadata: true, kind: "string"},
	"lagThreshold":                       {metadata: true, kind: "int"},
	"activationLagThreshold":             {metadata: true, kind: "int"},
	"offsetResetPolicy":                  {metadata: true, enum: []string{"latest", "earliest"}, kind: "string"},
	"allowIdleConsumers":                 {metadata: true, kind: "bool"},
	"excludePersistentLag":               {metadata: true, kind: "bool"},
	"scaleToZeroOnInvalidOffset":         {metadata: true, kind: "bool"},
	"limitToPartitionsWithLag":           {metadata: true, kind: "bool"},
	"ensureEvenDistributionOfPartitions": {metadata: true, kind: "bool"},
	"version":                            {metadata: true, kind: "string"},
	"tls":                                {metadata: true, auth: true, enum: []string{"enable", "disable"}, kind: "string"},
	"unsafeSsl":                          {metadata: true, kind: "bool"},
	"ca":                                 {auth: true, kind: "string"},
	"cert":                               {auth: true, kind: "string"},
	"key":                                {auth: true, kind: "string"},
	"keyPassword":                        {auth: true, kind: "string"},
	"sasl": {metadata: true, auth: true, kind: "string",
		enum: []string{"none", "plaintext", "scram_sha256", "scram_sha512", "oauthbearer", "gssapi"}},
	"username":              {auth: true, kind: "string"},
	"password":              {auth: true, kind: "string"},
	"saslTokenProvider":     {metadata: true, auth: true, enum: []string{"bearer", "aws_msk_iam"}, kind: "string"},
	"scopes":                {auth: true, kind: "string"},
	"oauthTokenEndpointUri": {auth: true, kind: "string"},
	"oauthExtensions":       {auth: true, kind: "string"},
	"keytab":                {auth: true, kind: "string"},
	"realm":                 {auth: true, kind: "string"},
	"kerberosConfig":        {auth: true, kind: "string"},
	"kerberosServiceName":   {auth: true, kind: "string"},
	"kerberosDisableFAST":   {auth: true, kind: "bool"},
	"awsRegion":             {metadata: true, kind: "string"},
}

// KEDA's label values and the HPA it names after a ScaledObject are at most this long.
const kedaMaxName = 63

// CheckKEDA checks the render's ScaledObjects and TriggerAuthentications beyond their types:
// KEDA's own validation of them (what its admission webhook runs without a cluster), that a
// ScaledObject scales a Deployment or StatefulSet of the render that runs infer, that no HPA of
// the render scales it too and that it leaves the replicas to KEDA, that its kafka triggers use
// only parameters KEDA's kafka scaler reads, where it reads them (secrets only from a
// TriggerAuthentication), with what that scaler requires, on the brokers, group, topic and
// offset reset policy infer consumes with, with a lag threshold of at least one of infer's
// batches, never beyond infer's partitions; and that each
// TriggerAuthentication is used, and names keys its Secret has when the render has that Secret.
func CheckKEDA(objs []Object) []error {
	var errs []error
	fail := func(o Object, format string, args ...any) {
		errs = append(errs, fmt.Errorf("%s: %s", o, fmt.Sprintf(format, args...)))
	}
	scalable := map[string]*workload{}
	hpas := map[string]Object{}
	secrets := map[string]*corev1.Secret{}
	auths := map[string]*kedav1alpha1.TriggerAuthentication{}
	used := map[string]bool{}
	for _, o := range objs {
		if w := workloadOf(o); w != nil && (o.Kind == "Deployment" || o.Kind == "StatefulSet") {
			scalable[o.Kind+"/"+o.Name] = w
		}
		switch t := o.Obj.(type) {
		case *autoscalingv2.HorizontalPodAutoscaler:
			hpas[t.Spec.ScaleTargetRef.Kind+"/"+t.Spec.ScaleTargetRef.Name] = o
		case *corev1.Secret:
			secrets[o.Name] = t
		case *kedav1alpha1.TriggerAuthentication:
			auths[o.Name] = t
		}
	}

	for _, o := range objs {
		so, ok := o.Obj.(*kedav1alpha1.ScaledObject)
		if !ok {
			continue
		}
		// KEDA's admission webhook, less what needs the cluster (other ScaledObjects and HPAs
		// there, LimitRanges).
		if err := kedav1alpha1.ValidateTriggers(so.Spec.Triggers); err != nil {
			fail(o, "%v", err)
		}
		if err := kedav1alpha1.CheckReplicaCountBoundsAreValid(so); err != nil {
			fail(o, "%v", err)
		}
		if err := kedav1alpha1.CheckFallbackValid(so); err != nil {
			fail(o, "%v", err)
		}
		if so.IsUsingModifiers() {
			if _, err := kedav1alpha1.ValidateAndCompileScalingModifiers(so.DeepCopy()); err != nil {
				fail(o, "%v", err)
			}
		}
		hpaName := "keda-hpa-" + so.Name
		if a := so.Spec.Advanced; a != nil && a.HorizontalPodAutoscalerConfig != nil && a.HorizontalPodAutoscalerConfig.Name != "" {
			hpaName = a.HorizontalPodAutoscalerConfig.Name
		}
		if len(so.Name) > kedaMaxName || len(hpaName) > kedaMaxName {
			fail(o, "the name, or that of its HPA %q, is longer than %d characters", hpaName, kedaMaxName)
		}

		w := scaleTarget(o, so, scalable, hpas, fail)
		infer := inferContainer(w, so)
		if w != nil && infer == nil {
			fail(o, "scales %s, which runs no infer: the chart scales only infer on its lag", w.obj)
		}
		for i, tr := range so.Spec.Triggers {
			var authParams []string
			if ref := tr.AuthenticationRef; ref != nil {
				ta := auths[ref.Name]
				if (ref.Kind != "" && ref.Kind != "TriggerAuthentication") || ta == nil {
					fail(o, "trigger %d: authenticationRef %s/%s is no TriggerAuthentication of this render",
						i, orDefault(ref.Kind, "TriggerAuthentication"), ref.Name)
				} else {
					used[ref.Name] = true
					authParams = authParamsOf(ta)
				}
			}
			if tr.Type != "kafka" {
				fail(o, "trigger %d: type %q, which this checker does not know (it knows kafka): teach it in keda.go", i, tr.Type)
				continue
			}
			for _, msg := range checkKafkaTrigger(tr, authParams, infer) {
				fail(o, "trigger %d (kafka): %s", i, msg)
			}
		}
		if infer != nil {
			// A batch in flight is lag until its transaction commits: a threshold below one
			// batch would scale out a replica that keeps up.
			batch, err := strconv.ParseInt(argValue(infer, "--batch-max"), 10, 64)
			for i, tr := range so.Spec.Triggers {
				threshold, thresholdErr := strconv.ParseInt(strings.TrimSpace(tr.Metadata["lagThreshold"]), 10, 64)
				if tr.Type == "kafka" && err == nil && thresholdErr == nil && threshold < batch {
					fail(o, "trigger %d (kafka): lagThreshold %d is below infer's --batch-max %d: one batch in flight would "+
						"ask for more replicas", i, threshold, batch)
				}
			}
			// KEDA's kafka scaler, with allowIdleConsumers false, never asks for more replicas
			// than the topic has partitions: a maximum above them is never reached.
			partitions, err := strconv.Atoi(argValue(infer, "--partitions"))
			if maxReplicas := so.GetHPAMaxReplicas(); err == nil && int(maxReplicas) > partitions {
				fail(o, "maxReplicaCount %d is above infer's %d partitions (--partitions), where KEDA stops: replicas "+
					"beyond them would get none and idle (raise topics.partitions if the topic has more)", maxReplicas, partitions)
			}
		}
	}

	for _, name := range slices.Sorted(maps.Keys(auths)) {
		ta := auths[name]
		o := objectOf(objs, ta)
		if !used[name] {
			fail(o, "used by no ScaledObject of this render")
		}
		dryRun := true
		if _, err := ta.ValidateCreate(&dryRun); err != nil {
			fail(o, "%v", err)
		}
		for _, ref := range ta.Spec.SecretTargetRef {
			if ref.Parameter == "" || ref.Name == "" || ref.Key == "" {
				fail(o, "secretTargetRef %+v: parameter, name and key are all required", ref)
				continue
			}
			s := secrets[ref.Name]
			if s == nil {
				continue // a Secret of the user's: not ours to see
			}
			if _, inData := s.Data[ref.Key]; !inData {
				if _, inStringData := s.StringData[ref.Key]; !inStringData {
					fail(o, "secretTargetRef %q: Secret %s of this render has no key %q", ref.Parameter, ref.Name, ref.Key)
				}
			}
		}
	}
	return errs
}

// scaleTarget returns the workload a ScaledObject scales, after checking that it is one of the
// render that nothing else scales and whose replicas are left to KEDA.
func scaleTarget(o Object, so *kedav1alpha1.ScaledObject, scalable map[string]*workload, hpas map[string]Object,
	fail func(Object, string, ...any)) *workload {
	ref := so.Spec.ScaleTargetRef
	if ref == nil {
		fail(o, "no scaleTargetRef")
		return nil
	}
	kind := orDefault(ref.Kind, "Deployment")
	if apiVersion := orDefault(ref.APIVersion, "apps/v1"); apiVersion != "apps/v1" {
		fail(o, "scaleTargetRef apiVersion %q: the chart's workloads are apps/v1", apiVersion)
		return nil
	}
	w := scalable[kind+"/"+ref.Name]
	if w == nil {
		fail(o, "scaleTargetRef %s/%s is no Deployment or StatefulSet of this render", kind, ref.Name)
		return nil
	}
	if hpa, ok := hpas[kind+"/"+ref.Name]; ok {
		fail(o, "%s scales %s too: KEDA makes an HPA of its own, and two fight over the replicas", hpa, w.obj)
	}
	var replicas *int32
	switch t := w.obj.Obj.(type) {
	case *appsv1.Deployment:
		replicas = t.Spec.Replicas
	case *appsv1.StatefulSet:
		replicas = t.Spec.Replicas
	}
	if replicas != nil {
		fail(o, "%s sets replicas, which every helm upgrade would reset under KEDA: leave them out", w.obj)
	}
	return w
}

// inferContainer is the container of w that KEDA resolves the environment from
// (envSourceContainerName, else the first), when it runs `infer`.
func inferContainer(w *workload, so *kedav1alpha1.ScaledObject) *corev1.Container {
	if w == nil || len(w.pod.Spec.Containers) == 0 {
		return nil
	}
	c := &w.pod.Spec.Containers[0]
	if name := so.Spec.ScaleTargetRef.EnvSourceContainerName; name != "" {
		i := slices.IndexFunc(w.pod.Spec.Containers, func(c corev1.Container) bool { return c.Name == name })
		if i < 0 {
			return nil
		}
		c = &w.pod.Spec.Containers[i]
	}
	if len(c.Args) == 0 || c.Args[0] != "infer" {
		return nil
	}
	return c
}

// authParamsOf names the parameters a TriggerAuthentication gives a scaler.
func authParamsOf(ta *kedav1alpha1.TriggerAuthentication) []string {
	var params []string
	for _, r := range ta.Spec.SecretTargetRef {
		params = append(params, r.Parameter)
	}
	for _, r := range ta.Spec.ConfigMapTargetRef {
		params = append(params, r.Parameter)
	}
	for _, r := range ta.Spec.Env {
		params = append(params, r.Parameter)
	}
	return params
}

// checkKafkaTrigger checks a kafka trigger's metadata and authentication parameters against
// what KEDA's kafka scaler reads (kafkaParams) and requires (its Validate, parseTLS and
// parseSASL), and, with infer its container, against what infer consumes.
func checkKafkaTrigger(tr kedav1alpha1.ScaleTriggers, authParams []string, infer *corev1.Container) []string {
	var msgs []string
	bad := func(format string, args ...any) { msgs = append(msgs, fmt.Sprintf(format, args...)) }
	given := map[string]string{} // metadata values, and "" for what a TriggerAuthentication gives
	for _, key := range slices.Sorted(maps.Keys(tr.Metadata)) {
		value := tr.Metadata[key]
		if base, ok := strings.CutSuffix(key, "FromEnv"); ok && kafkaParams[base].env {
			if infer != nil && !slices.ContainsFunc(infer.Env, func(e corev1.EnvVar) bool { return e.Name == value }) {
				bad("%s names %q, no environment variable of container %q", key, value, infer.Name)
			}
			given[base] = ""
			continue
		}
		p, known := kafkaParams[key]
		switch {
		case !known:
			bad("unknown metadata key %q: KEDA's kafka scaler (%s) reads %s", key, kedaVersion, strings.Join(metadataKeys(), ", "))
			continue
		case !p.metadata:
			bad("metadata key %q: KEDA reads it only from a TriggerAuthentication, as it may be a secret: give it from a "+
				"Secret there, never in the ScaledObject", key)
			continue
		}
		given[key] = value
		if msg := p.parse(value); msg != "" {
			bad("%s: %s", key, msg)
		}
	}
	for _, name := range authParams {
		if p, ok := kafkaParams[name]; !ok || !p.auth {
			bad("authentication parameter %q is none KEDA's kafka scaler (%s) reads from a TriggerAuthentication", name, kedaVersion)
			continue
		}
		if _, inMetadata := given[name]; !inMetadata {
			given[name] = ""
		}
	}
	has := func(name string) bool { _, ok := given[name]; return ok }
	for _, name := range slices.Sorted(maps.Keys(kafkaParams)) {
		p := kafkaParams[name]
		if p.required && !(p.metadata && strings.TrimSpace(tr.Metadata[name]) != "") && !(p.env && hasFromEnv(tr, name)) &&
			!(p.auth && slices.Contains(authParams, name)) {
			bad("no %s: KEDA's kafka scaler requires it", name)
		}
	}

	// The scaler's Validate.
	if n, err := strconv.ParseInt(given["lagThreshold"], 10, 64); err == nil && n <= 0 {
		bad("lagThreshold %d: must be positive", n)
	}
	if n, err := strconv.ParseInt(given["activationLagThreshold"], 10, 64); err == nil && n < 0 {
		bad("activationLagThreshold %d: must not be negative", n)
	}
	isTrue := func(name string) bool { b, _ := strconv.ParseBool(given[name]); return b }
	if isTrue("allowIdleConsumers") {
		bad("allowIdleConsumers is true: replicas beyond the partitions of the topic would get none and idle")
	}
	if isTrue("limitToPartitionsWithLag") && isTrue("ensureEvenDistributionOfPartitions") {
		bad("limitToPartitionsWithLag and ensureEvenDistributionOfPartitions cannot both be set")
	}
	if !has("topic") && (isTrue("limitToPartitionsWithLag") || isTrue("ensureEvenDistributionOfPartitions")) {
		bad("limitToPartitionsWithLag and ensureEvenDistributionOfPartitions need a topic")
	}
	// parseTLS and parseSASL, on what the render says (a value from a Secret is not ours to see).
	if given["tls"] == "enable" && has("cert") != has("key") {
		bad("tls: cert and key come together")
	}
	need := func(mode string, names ...string) {
		for _, name := range names {
			if !has(name) {
				bad("sasl %s needs %s from a TriggerAuthentication", mode, name)
			}
		}
	}
	switch sasl := given["sasl"]; sasl {
	case "plaintext", "scram_sha256", "scram_sha512":
		need(sasl, "username", "password")
	case "oauthbearer":
		switch given["saslTokenProvider"] {
		case "", "bearer":
			need(sasl, "username", "password", "oauthTokenEndpointUri")
		case "aws_msk_iam":
			if given["tls"] != "enable" {
				bad("sasl oauthbearer with aws_msk_iam needs tls enable")
			}
			if !has("awsRegion") {
				bad("sasl oauthbearer with aws_msk_iam needs awsRegion")
			}
		}
	case "gssapi":
		need(sasl, "username", "realm", "kerberosConfig")
		if has("password") == has("keytab") {
			bad("sasl gssapi needs exactly one of password and keytab")
		}
	}

	if infer == nil {
		return msgs
	}
	// What infer consumes, so that KEDA counts infer's lag.
	env := ""
	for _, e := range infer.Env {
		if e.Name == "IOTINFER_BROKERS" {
			env = e.Value
		}
	}
	for _, c := range []struct{ param, infer, what string }{
		{"bootstrapServers", env, "IOTINFER_BROKERS"},
		{"consumerGroup", argValue(infer, "--group"), "--group"},
		{"topic", argValue(infer, "--input-topic"), "--input-topic"},
	} {
		if value, ok := tr.Metadata[c.param]; !ok {
			// A required one is reported above.
			if !hasFromEnv(tr, c.param) && !kafkaParams[c.param].required {
				bad("no %s: infer consumes %q (%s), and KEDA would count the lag of every topic of the group", c.param, c.infer, c.what)
			}
		} else if strings.TrimSpace(value) != c.infer {
			bad("%s %q is not infer's %q (%s)", c.param, value, c.infer, c.what)
		}
	}
	reset := "earliest" // infer's default (src/kafka/consumer.cc)
	if value := argValue(infer, "--kafka=auto.offset.reset"); value != "" {
		reset = map[string]string{"smallest": "earliest", "beginning": "earliest", "largest": "latest", "end": "latest"}[value]
		if reset == "" {
			reset = value
		}
	}
	if policy := orDefault(given["offsetResetPolicy"], "latest"); policy != reset {
		bad("offsetResetPolicy %s, but infer starts a partition without a committed offset at the %s: KEDA would count "+
			"another lag than infer's", policy, reset)
	}
	return msgs
}

func hasFromEnv(tr kedav1alpha1.ScaleTriggers, name string) bool {
	_, ok := tr.Metadata[name+"FromEnv"]
	return ok
}

// parse checks a value as KEDA parses it into the parameter's field, and against its enum.
func (p scalerParam) parse(value string) string {
	value = strings.TrimSpace(value)
	switch {
	case value == "":
		return ""
	case p.kind == "int":
		if _, err := strconv.ParseInt(value, 10, 64); err != nil {
			return fmt.Sprintf("%q is not an integer", value)
		}
	case p.kind == "bool":
		if _, err := strconv.ParseBool(value); err != nil {
			return fmt.Sprintf("%q is not a boolean", value)
		}
	}
	if len(p.enum) > 0 && !slices.Contains(p.enum, value) {
		return fmt.Sprintf("%q is not one of %s", value, strings.Join(p.enum, ", "))
	}
	return ""
}

func metadataKeys() []string {
	var keys []string
	for _, name := range slices.Sorted(maps.Keys(kafkaParams)) {
		if kafkaParams[name].metadata {
			keys = append(keys, name)
		}
	}
	return keys
}

// argValue is the value of the container's argument FLAG=VALUE, or "".
func argValue(c *corev1.Container, flag string) string {
	for _, a := range c.Args {
		if value, ok := strings.CutPrefix(a, flag+"="); ok {
			return value
		}
	}
	return ""
}

func objectOf(objs []Object, obj runtime.Object) Object {
	for _, o := range objs {
		if o.Obj == obj {
			return o
		}
	}
	return Object{}
}

func orDefault(s, def string) string {
	if s == "" {
		return def
	}
	return s
}
