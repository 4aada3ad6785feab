package ci

import (
	"bytes"
	"fmt"
	"os"
	"slices"
	"strings"
	"testing"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	policyv1 "k8s.io/api/policy/v1"
	"sigs.k8s.io/yaml"
)

// The deployment files are checked offline: `kubectl apply --dry-run`
// needs an API server even with --dry-run=client, so the Kubernetes
// manifests are decoded strictly into the API's own Go types (an unknown
// or misspelt field, or a wrong type, fails) and their relations checked;
// the compose file is checked for what the nodes need to form.

// k8sObjects decodes every document of a manifest file by kind.
func k8sObjects(t *testing.T, path string) (svcs []*corev1.Service, sts []*appsv1.StatefulSet, pdbs []*policyv1.PodDisruptionBudget) {
	t.Helper()
	raw, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	for i, doc := range bytes.Split(raw, []byte("\n---\n")) {
		var head struct{ APIVersion, Kind string }
		if err := yaml.Unmarshal(doc, &head); err != nil {
			t.Fatalf("%s document %d: %v", path, i, err)
		}
		var obj any
		switch head.APIVersion + " " + head.Kind {
		case "v1 Service":
			s := &corev1.Service{}
			svcs, obj = append(svcs, s), s
		case "apps/v1 StatefulSet":
			s := &appsv1.StatefulSet{}
			sts, obj = append(sts, s), s
		case "policy/v1 PodDisruptionBudget":
			p := &policyv1.PodDisruptionBudget{}
			pdbs, obj = append(pdbs, p), p
		default:
			t.Fatalf("%s document %d: unexpected %s %s", path, i, head.APIVersion, head.Kind)
		}
		if err := yaml.UnmarshalStrict(doc, obj); err != nil {
			t.Errorf("%s document %d (%s): %v", path, i, head.Kind, err)
		}
	}
	return svcs, sts, pdbs
}

func matches(sel map[string]string, labels map[string]string) bool {
	if len(sel) == 0 {
		return false
	}
	for k, v := range sel {
		if labels[k] != v {
			return false
		}
	}
	return true
}

func TestKubernetesManifests(t *testing.T) {
	svcs, sets, pdbs := k8sObjects(t, "deploy/k8s/meta.yaml")
	if len(sets) != 1 || len(pdbs) != 1 {
		t.Fatalf("got %d StatefulSets and %d PodDisruptionBudgets, want 1 and 1", len(sets), len(pdbs))
	}
	st := sets[0]
	pod := st.Spec.Template
	if !matches(st.Spec.Selector.MatchLabels, pod.Labels) {
		t.Errorf("StatefulSet selector %v does not select its pods %v", st.Spec.Selector.MatchLabels, pod.Labels)
	}
	if st.Spec.PodManagementPolicy != appsv1.ParallelPodManagement {
		t.Errorf("podManagementPolicy %q: want Parallel (no pod is ready before a majority runs)", st.Spec.PodManagementPolicy)
	}
	var headless *corev1.Service
	for _, s := range svcs {
		if s.Name == st.Spec.ServiceName {
			headless = s
		}
	}
	if headless == nil {
		t.Fatalf("no Service %q (the StatefulSet's serviceName)", st.Spec.ServiceName)
	}
	if headless.Spec.ClusterIP != corev1.ClusterIPNone || !headless.Spec.PublishNotReadyAddresses {
		t.Errorf("service %s: clusterIP %q publishNotReadyAddresses %v, want None and true", headless.Name, headless.Spec.ClusterIP, headless.Spec.PublishNotReadyAddresses)
	}
	if !matches(headless.Spec.Selector, pod.Labels) {
		t.Errorf("service %s does not select the pods", headless.Name)
	}
	if !matches(pdbs[0].Spec.Selector.MatchLabels, pod.Labels) {
		t.Errorf("PodDisruptionBudget does not select the pods")
	}
	if mu := pdbs[0].Spec.MaxUnavailable; mu == nil || mu.IntValue() != 1 {
		t.Errorf("PodDisruptionBudget maxUnavailable %v, want 1", mu)
	}
	aa := pod.Spec.Affinity
	if aa == nil || aa.PodAntiAffinity == nil || len(aa.PodAntiAffinity.RequiredDuringSchedulingIgnoredDuringExecution) == 0 ||
		aa.PodAntiAffinity.RequiredDuringSchedulingIgnoredDuringExecution[0].TopologyKey != "kubernetes.io/hostname" {
		t.Errorf("no required pod anti-affinity on kubernetes.io/hostname")
	}
	if len(pod.Spec.Containers) != 1 {
		t.Fatalf("got %d containers, want 1", len(pod.Spec.Containers))
	}
	c := pod.Spec.Containers[0]
	ports := map[string]int32{}
	for _, p := range c.Ports {
		ports[p.Name] = p.ContainerPort
	}
	flags := map[string]string{}
	for _, a := range c.Args {
		k, v, _ := strings.Cut(a, "=")
		flags[k] = v
	}
	if rp := c.ReadinessProbe; rp == nil || rp.HTTPGet == nil || rp.HTTPGet.Path != "/readyz" || rp.HTTPGet.Port.String() != "metrics" {
		t.Errorf("readiness probe %+v: want GET /readyz on the metrics port", rp)
	}
	if lp := c.LivenessProbe; lp == nil || lp.HTTPGet == nil || lp.HTTPGet.Path != "/livez" {
		t.Errorf("liveness probe %+v: want GET /livez", lp)
	}
	if want := fmt.Sprintf("0.0.0.0:%d", ports["metrics"]); flags["--metrics-listen"] != want {
		t.Errorf("--metrics-listen %q, want %q (the metrics port)", flags["--metrics-listen"], want)
	}
	if want := fmt.Sprintf("0.0.0.0:%d", ports["grpc"]); flags["--listen"] != want {
		t.Errorf("--listen %q, want %q (the grpc port)", flags["--listen"], want)
	}
	// The initial members are exactly the StatefulSet's pods, by their
	// stable names under the headless service.
	var want []string
	for i := range int(*st.Spec.Replicas) {
		want = append(want, fmt.Sprintf("%s-%d=%s-%d.%s:%d", st.Name, i, st.Name, i, headless.Name, ports["grpc"]))
	}
	if got := strings.Split(flags["--initial-cluster"], ","); !slices.Equal(got, want) {
		t.Errorf("--initial-cluster %v, want %v", got, want)
	}
	mounted := false
	for _, m := range c.VolumeMounts {
		mounted = mounted || m.MountPath == flags["--data-dir"]
	}
	if !mounted || len(st.Spec.VolumeClaimTemplates) == 0 {
		t.Errorf("--data-dir %q is not a mounted volume claim", flags["--data-dir"])
	}
}

func TestComposeFile(t *testing.T) {
	raw, err := os.ReadFile("deploy/docker-compose.yml")
	if err != nil {
		t.Fatal(err)
	}
	var doc struct {
		Services map[string]struct {
			Image   string
			Command []string
			Volumes []string
		}
	}
	if err := yaml.Unmarshal(raw, &doc); err != nil {
		t.Fatal(err)
	}
	if len(doc.Services) != 3 {
		t.Fatalf("got %d services, want 3", len(doc.Services))
	}
	var initial []string
	for name, s := range doc.Services {
		if s.Image != "meta-node:latest" {
			t.Errorf("%s: image %q, want meta-node:latest (what make image tags)", name, s.Image)
		}
		flags := map[string]string{}
		for i := 0; i+1 < len(s.Command); i += 2 {
			flags[s.Command[i]] = s.Command[i+1]
		}
		if flags["--id"] != name || flags["--advertise"] != name+":7001" {
			t.Errorf("%s: --id %q --advertise %q, want %s and %s:7001", name, flags["--id"], flags["--advertise"], name, name)
		}
		ic := strings.Split(flags["--initial-cluster"], ",")
		slices.Sort(ic)
		if initial == nil {
			initial = ic
		} else if !slices.Equal(ic, initial) {
			t.Errorf("%s: --initial-cluster %v differs from another node's %v", name, ic, initial)
		}
		if !slices.Contains(ic, name+"="+name+":7001") {
			t.Errorf("%s: not in its --initial-cluster %v", name, ic)
		}
		if len(s.Volumes) != 1 || !strings.HasSuffix(s.Volumes[0], ":"+flags["--data-dir"]) {
			t.Errorf("%s: volumes %v do not hold --data-dir %q", name, s.Volumes, flags["--data-dir"])
		}
	}
}
