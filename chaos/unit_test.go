package chaos

import (
	"archive/tar"
	"bytes"
	"context"
	"errors"
	"io"
	"net/netip"
	"os"
	"os/exec"
	"slices"
	"strings"
	"testing"
	"time"
)

func TestParseLdd(t *testing.T) {
	tests := []struct {
		name    string
		out     string
		want    []string
		wantErr error
	}{
		{
			name: "dynamic",
			out: "\tlinux-vdso.so.1 (0x00007ffc1b5f2000)\n" +
				"\tlibrocksdb.so.7.8 => /lib/x86_64-linux-gnu/librocksdb.so.7.8 (0x00007f)\n" +
				"\tlibc.so.6 => /lib/x86_64-linux-gnu/libc.so.6 (0x00007f)\n" +
				"\t/lib64/ld-linux-x86-64.so.2 (0x00007f)\n",
			want: []string{"/lib/x86_64-linux-gnu/librocksdb.so.7.8", "/lib/x86_64-linux-gnu/libc.so.6", "/lib64/ld-linux-x86-64.so.2"},
		},
		{
			name: "duplicates once",
			out:  "\tlibc.so.6 => /lib/libc.so.6 (0x1)\n\tlibc.so.6 => /lib/libc.so.6 (0x1)\n",
			want: []string{"/lib/libc.so.6"},
		},
		{name: "static", out: "\tstatically linked\n", want: nil},
		{
			name:    "missing",
			out:     "\tlibfoo.so.1 => not found\n\tlibc.so.6 => /lib/libc.so.6 (0x1)\n",
			wantErr: ErrMissingLibrary,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := parseLdd([]byte(tt.out))
			if !errors.Is(err, tt.wantErr) {
				t.Fatalf("err: got %v, want %v", err, tt.wantErr)
			}
			if !slices.Equal(got, tt.want) {
				t.Errorf("got %q, want %q", got, tt.want)
			}
		})
	}
}

func TestOptionsValidate(t *testing.T) {
	good := Options{Nodes: 3, Image: "meta-node:x", RunDir: "/tmp/x", Port: 7000, Args: func(string) []string { return nil }}
	tests := []struct {
		name    string
		mut     func(*Options)
		wantErr []string // substrings, all reported at once
	}{
		{name: "good", mut: func(*Options) {}},
		{name: "no nodes", mut: func(o *Options) { o.Nodes = 0 }, wantErr: []string{"Nodes = 0"}},
		{name: "too many", mut: func(o *Options) { o.Nodes = 10 }, wantErr: []string{"Nodes = 10"}},
		{name: "bad run id", mut: func(o *Options) { o.RunID = "a b" }, wantErr: []string{"RunID"}},
		{
			name:    "everything wrong",
			mut:     func(o *Options) { *o = Options{StartTimeout: -1} },
			wantErr: []string{"Nodes", "Image", "RunDir", "Port", "Args", "negative"},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			o := good
			tt.mut(&o)
			before := o
			err := o.Validate()
			if o.Nodes != before.Nodes || o.RunID != before.RunID {
				t.Errorf("Validate changed the options")
			}
			if len(tt.wantErr) == 0 {
				if err != nil {
					t.Fatalf("got %v, want nil", err)
				}
				return
			}
			if !errors.Is(err, ErrInvalidOptions) {
				t.Fatalf("got %v, want ErrInvalidOptions", err)
			}
			for _, s := range tt.wantErr {
				if !strings.Contains(err.Error(), s) {
					t.Errorf("error %q lacks %q", err, s)
				}
			}
		})
	}
}

func TestNodeNamesAndRunID(t *testing.T) {
	if got, want := NodeNames(3), []string{"n1", "n2", "n3"}; !slices.Equal(got, want) {
		t.Errorf("NodeNames(3): got %v, want %v", got, want)
	}
	id := NewRunID()
	if !validRunID(id) {
		t.Errorf("NewRunID() = %q is not a valid run id", id)
	}
	if id2 := NewRunID(); id2 == id {
		t.Errorf("two run ids are equal: %q", id)
	}
}

func TestOwnerAlive(t *testing.T) {
	me, err := ownerID()
	if err != nil {
		t.Fatal(err)
	}
	host, _ := os.Hostname()
	tests := []struct {
		owner string
		want  bool
	}{
		{me, true},
		{host + ":999999999:1", false},           // no such pid
		{host + ":1:1", false},                   // pid 1 exists but started at another tick
		{"another-host:1:1", true},               // cannot prove it dead
		{"garbage", true},                        // cannot parse: keep
		{strings.Replace(me, ":", ";", 1), true}, // cannot parse: keep
	}
	for _, tt := range tests {
		if got := ownerAlive(tt.owner); got != tt.want {
			t.Errorf("ownerAlive(%q): got %v, want %v", tt.owner, got, tt.want)
		}
	}
}

// fakeCluster builds the fault model of an n-node cluster without Docker.
func fakeCluster(n int) *Cluster {
	c := &Cluster{byName: map[string]*node{}, faults: map[dirLink]linkFault{}, queues: map[dirLink]*delayQueue{}}
	for i, name := range NodeNames(n) {
		nd := &node{name: name, index: i, ip: netip.AddrFrom4([4]byte{10, 0, 0, byte(11 + i)})}
		c.nodes = append(c.nodes, nd)
		c.byName[name] = nd
	}
	return c
}

func TestRender(t *testing.T) {
	const head = "*filter\n:INPUT ACCEPT [0:0]\n:FORWARD ACCEPT [0:0]\n:OUTPUT ACCEPT [0:0]\n"
	tests := []struct {
		name   string
		faults map[dirLink]linkFault
		node   int
		want   []string // rules after the head, before COMMIT
		delays []int
	}{
		{name: "healthy", node: 0},
		{
			name:   "one way n1 -> n2, seen from n1",
			faults: map[dirLink]linkFault{{0, 1}: {drop: true}},
			node:   0,
		},
		{
			name:   "one way n1 -> n2, seen from n2",
			faults: map[dirLink]linkFault{{0, 1}: {drop: true}},
			node:   1,
			want:   []string{"-A INPUT -s 10.0.0.11/32 -j DROP"},
		},
		{
			name:   "order: drops, loss, delay",
			faults: map[dirLink]linkFault{{2, 0}: {loss: 0.25, delay: time.Second}, {1, 0}: {drop: true}, {0, 1}: {drop: true}},
			node:   0,
			want: []string{
				"-A INPUT -s 10.0.0.12/32 -j DROP",
				"-A INPUT -s 10.0.0.13/32 -m statistic --mode random --probability 0.250000 -j DROP",
				"-A INPUT -s 10.0.0.13/32 -j NFQUEUE --queue-num 3 --queue-bypass",
			},
			delays: []int{2},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := fakeCluster(3)
			for l, f := range tt.faults {
				c.faults[l] = f
			}
			got, delays := c.render(c.nodes[tt.node])
			want := head + strings.Join(append(slices.Clone(tt.want), "COMMIT"), "\n") + "\n"
			if got != want {
				t.Errorf("rules:\ngot\n%s\nwant\n%s", got, want)
			}
			var gotDelays []int
			for p := range delays {
				gotDelays = append(gotDelays, p)
			}
			slices.Sort(gotDelays)
			if !slices.Equal(gotDelays, tt.delays) {
				t.Errorf("delayed peers: got %v, want %v", gotDelays, tt.delays)
			}
		})
	}
}

func TestFaultModel(t *testing.T) {
	ctx := context.Background()
	tests := []struct {
		name    string
		apply   func(c *Cluster) error
		want    []LinkFault
		wantErr error
	}{
		{
			name:  "isolate",
			apply: func(c *Cluster) error { return c.Isolate(ctx, "n2") },
			want: []LinkFault{
				{From: "n1", To: "n2", Drop: true}, {From: "n2", To: "n1", Drop: true},
				{From: "n2", To: "n3", Drop: true}, {From: "n3", To: "n2", Drop: true},
			},
		},
		{
			name:  "majority minority",
			apply: func(c *Cluster) error { return c.Partition(ctx, [][]string{{"n1", "n2"}, {"n3"}}) },
			want: []LinkFault{
				{From: "n1", To: "n3", Drop: true}, {From: "n2", To: "n3", Drop: true},
				{From: "n3", To: "n1", Drop: true}, {From: "n3", To: "n2", Drop: true},
			},
		},
		{
			name:  "bridge",
			apply: func(c *Cluster) error { return c.Bridge(ctx, []string{"n1"}, []string{"n3"}, "n2") },
			want:  []LinkFault{{From: "n1", To: "n3", Drop: true}, {From: "n3", To: "n1", Drop: true}},
		},
		{
			name:  "one way",
			apply: func(c *Cluster) error { return c.DropOneWay(ctx, "n3", "n1") },
			want:  []LinkFault{{From: "n3", To: "n1", Drop: true}},
		},
		{
			name: "loss and delay compose on a link",
			apply: func(c *Cluster) error {
				return errors.Join(c.LossLink(ctx, "n1", "n2", 0.5), c.Delay(ctx, "n2", "n1", time.Second, 0))
			},
			want: []LinkFault{
				{From: "n1", To: "n2", Loss: 0.5, Delay: time.Second},
				{From: "n2", To: "n1", Loss: 0.5, Delay: time.Second},
			},
		},
		{
			name: "heal partitions keeps delay",
			apply: func(c *Cluster) error {
				return errors.Join(c.Isolate(ctx, "n1"), c.Delay(ctx, "n2", "n3", time.Second, time.Second), c.HealPartitions(ctx))
			},
			want: []LinkFault{
				{From: "n2", To: "n3", Delay: time.Second, Jitter: time.Second},
				{From: "n3", To: "n2", Delay: time.Second, Jitter: time.Second},
			},
		},
		{
			name: "heal network clears all",
			apply: func(c *Cluster) error {
				return errors.Join(c.Isolate(ctx, "n1"), c.LossNode(ctx, "n2", 0.1), c.HealNetwork(ctx))
			},
		},
		{
			name:  "degrade sets delay and loss on every link of the nodes",
			apply: func(c *Cluster) error { return c.DegradeNodes(ctx, []string{"n3"}, time.Second, 0, 0.25) },
			want: []LinkFault{
				{From: "n1", To: "n3", Loss: 0.25, Delay: time.Second}, {From: "n2", To: "n3", Loss: 0.25, Delay: time.Second},
				{From: "n3", To: "n1", Loss: 0.25, Delay: time.Second}, {From: "n3", To: "n2", Loss: 0.25, Delay: time.Second},
			},
		},
		{name: "degrade loss out of range", apply: func(c *Cluster) error { return c.DegradeNodes(ctx, []string{"n1"}, time.Second, 0, 2) }, wantErr: ErrBadFault},
		{name: "partition must cover", apply: func(c *Cluster) error { return c.Partition(ctx, [][]string{{"n1"}, {"n2"}}) }, wantErr: ErrBadFault},
		{name: "groups overlap", apply: func(c *Cluster) error { return c.Partition(ctx, [][]string{{"n1", "n2"}, {"n2", "n3"}}) }, wantErr: ErrBadFault},
		{name: "unknown node", apply: func(c *Cluster) error { return c.Isolate(ctx, "n9") }, wantErr: ErrUnknownNode},
		{name: "self link", apply: func(c *Cluster) error { return c.DropOneWay(ctx, "n1", "n1") }, wantErr: ErrBadFault},
		{name: "loss out of range", apply: func(c *Cluster) error { return c.LossNode(ctx, "n1", 1.5) }, wantErr: ErrBadFault},
		{name: "jitter above delay", apply: func(c *Cluster) error { return c.Delay(ctx, "n1", "n2", time.Millisecond, time.Second) }, wantErr: ErrBadFault},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			// Nodes without containers: the model changes, nothing is synced.
			c := fakeCluster(3)
			err := tt.apply(c)
			if !errors.Is(err, tt.wantErr) {
				t.Fatalf("err: got %v, want %v", err, tt.wantErr)
			}
			if got := c.NetworkFaults(); !slices.Equal(got, tt.want) {
				t.Errorf("faults:\ngot  %+v\nwant %+v", got, tt.want)
			}
		})
	}
}

func TestBuildContextDeterministic(t *testing.T) {
	bin := standin(t)
	a, err := buildContext(context.Background(), bin)
	if err != nil {
		t.Fatal(err)
	}
	b, err := buildContext(context.Background(), bin)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(a, b) {
		t.Fatalf("two build contexts of one binary differ")
	}
	files := map[string]bool{}
	var dockerfile string
	tr := tar.NewReader(bytes.NewReader(a))
	for {
		h, err := tr.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		files[h.Name] = true
		if h.Name == "Dockerfile" {
			d, _ := io.ReadAll(tr)
			dockerfile = string(d)
		}
	}
	for _, want := range []string{"Dockerfile", "rootfs/bin/standin", "rootfs/lib64/ld-linux-x86-64.so.2", "rootfs/tmp/"} {
		if !files[want] {
			t.Errorf("build context lacks %s; has %v", want, files)
		}
	}
	var libc bool
	for f := range files {
		libc = libc || strings.Contains(f, "libc.so")
	}
	if !libc {
		t.Errorf("build context has no libc; has %v", files)
	}
	for _, want := range []string{"FROM scratch", `ENTRYPOINT ["/bin/standin"]`, "LD_LIBRARY_PATH="} {
		if !strings.Contains(dockerfile, want) {
			t.Errorf("Dockerfile lacks %q:\n%s", want, dockerfile)
		}
	}
}

// TestForbiddenImports keeps the harness independent of the server's
// internals (doc.go): not even transitively may chaos reach them.
func TestForbiddenImports(t *testing.T) {
	out, err := exec.Command("go", "list", "-deps", ".").CombinedOutput()
	if err != nil {
		t.Fatalf("go list: %v\n%s", err, out)
	}
	const mod = "github.com/metamq/meta/"
	forbidden := []string{"metanode", "sm", "rocks", "rpc/transport", "controller"}
	for _, dep := range strings.Fields(string(out)) {
		rel, ok := strings.CutPrefix(dep, mod)
		if !ok {
			continue
		}
		for _, f := range forbidden {
			if rel == f || strings.HasPrefix(rel, f+"/") {
				t.Errorf("chaos depends on %s", dep)
			}
		}
	}
}
