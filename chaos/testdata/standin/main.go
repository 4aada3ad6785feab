// Command standin is the stand-in node the chaos tests run in containers
// instead of metanode. It serves one port number on TCP and UDP:
//
//   - TCP, HTTP: the host's control channel (clients are never partitioned).
//     GET  /health            -> "ok <name>"
//     PUT  /data/<key>        store the body in <data dir>/<key>, fsynced
//     GET  /data/<key>        the stored body, 404 if absent
//     POST /blast?round=R&to=n2,n3&dur=1s&every=20ms
//     send a datagram "blast R <name>" to each peer's UDP port every
//     `every` for `dur`, then answer with the number sent
//     GET  /seen?round=R      JSON list of peers whose blast datagrams of
//     round R arrived (one-way reachability, sorted)
//     GET  /rtt?to=n2&count=20&every=10ms&wait=1s
//     send `count` UDP pings to the peer, one per `every`, collect pongs
//     until `wait` after the last ping; answer JSON {sent, received,
//     rtts_ms}
//     GET  /bytes?n=N         N bytes of payload
//     GET  /fetch?to=n2&n=N   fetch /bytes?n=N from the peer over TCP (a new
//     connection); answer JSON {bytes, ms}
//   - UDP: "ping <id>" is answered with "pong <id>" to the sender;
//     "blast <round> <name>" is recorded for /seen.
//
// Built with -tags rocks, it also opens a RocksDB in <data dir>/rocks at
// start, counts its starts there and logs "standin <name> rocksdb starts=N",
// which proves the image carries librocksdb and its dependencies.
//
// It logs "standin <name> started" on start and "standin <name> stopping"
// on SIGTERM, then exits 0.
package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"log"
	"net"
	"net/http"
	"os"
	"os/signal"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"
)

func main() {
	name := flag.String("name", "", "node name")
	port := flag.Int("port", 7000, "TCP and UDP port")
	dataDir := flag.String("data", "/data", "data directory")
	flag.Parse()
	log.SetFlags(log.LstdFlags | log.Lmicroseconds)

	s := &server{name: *name, port: *port, dataDir: *dataDir, seen: map[string]map[string]bool{}}
	udp, err := net.ListenUDP("udp", &net.UDPAddr{Port: *port})
	if err != nil {
		log.Fatalf("standin %s: listen udp: %v", *name, err)
	}
	s.udp = udp
	go s.serveUDP()

	mux := http.NewServeMux()
	mux.HandleFunc("GET /health", func(w http.ResponseWriter, _ *http.Request) { fmt.Fprintf(w, "ok %s\n", s.name) })
	mux.HandleFunc("PUT /data/{key}", s.put)
	mux.HandleFunc("GET /data/{key}", s.get)
	mux.HandleFunc("POST /blast", s.blast)
	mux.HandleFunc("GET /seen", s.seenHandler)
	mux.HandleFunc("GET /rtt", s.rtt)
	mux.HandleFunc("GET /bytes", s.bytes)
	mux.HandleFunc("GET /fetch", s.fetch)
	srv := &http.Server{Addr: fmt.Sprintf(":%d", *port), Handler: mux}

	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
	defer stop()
	go func() {
		<-ctx.Done()
		log.Printf("standin %s stopping", s.name)
		shut, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		defer cancel()
		_ = srv.Shutdown(shut)
	}()
	for _, hook := range startHooks {
		if err := hook(s.name, s.dataDir); err != nil {
			log.Fatalf("standin %s: %v", s.name, err)
		}
	}
	log.Printf("standin %s started pid=%d", s.name, os.Getpid())
	if err := srv.ListenAndServe(); err != nil && !errors.Is(err, http.ErrServerClosed) {
		log.Fatalf("standin %s: %v", s.name, err)
	}
}

// startHooks run before the server reports itself started; rocks.go (build
// tag rocks) adds one that proves RocksDB loads in a scratch image.
var startHooks []func(name, dataDir string) error

type server struct {
	name    string
	port    int
	dataDir string
	udp     *net.UDPConn

	mu   sync.Mutex
	seen map[string]map[string]bool // round -> sender set
}

func (s *server) serveUDP() {
	buf := make([]byte, 1500)
	for {
		n, from, err := s.udp.ReadFromUDP(buf)
		if err != nil {
			log.Printf("standin %s: udp: %v", s.name, err)
			return
		}
		f := strings.Fields(string(buf[:n]))
		switch {
		case len(f) == 2 && f[0] == "ping":
			_, _ = s.udp.WriteToUDP([]byte("pong "+f[1]), from)
		case len(f) == 3 && f[0] == "blast":
			s.mu.Lock()
			if s.seen[f[1]] == nil {
				s.seen[f[1]] = map[string]bool{}
			}
			s.seen[f[1]][f[2]] = true
			s.mu.Unlock()
		}
	}
}

func (s *server) put(w http.ResponseWriter, r *http.Request) {
	key := filepath.Base(r.PathValue("key"))
	b, err := io.ReadAll(r.Body)
	if err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	f, err := os.Create(filepath.Join(s.dataDir, key))
	if err == nil {
		_, err = f.Write(b)
		if err == nil {
			err = f.Sync()
		}
		if cerr := f.Close(); err == nil {
			err = cerr
		}
	}
	if err != nil {
		http.Error(w, err.Error(), http.StatusInternalServerError)
		return
	}
	fmt.Fprintln(w, "stored")
}

func (s *server) get(w http.ResponseWriter, r *http.Request) {
	b, err := os.ReadFile(filepath.Join(s.dataDir, filepath.Base(r.PathValue("key"))))
	if err != nil {
		http.Error(w, err.Error(), http.StatusNotFound)
		return
	}
	_, _ = w.Write(b)
}

func (s *server) blast(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	round := q.Get("round")
	dur, err1 := time.ParseDuration(q.Get("dur"))
	every, err2 := time.ParseDuration(q.Get("every"))
	if round == "" || err1 != nil || err2 != nil || every <= 0 {
		http.Error(w, "bad round, dur or every", http.StatusBadRequest)
		return
	}
	var peers []*net.UDPAddr
	for _, p := range strings.Split(q.Get("to"), ",") {
		if p == "" {
			continue
		}
		a, err := net.ResolveUDPAddr("udp", net.JoinHostPort(p, strconv.Itoa(s.port)))
		if err != nil {
			http.Error(w, err.Error(), http.StatusBadGateway)
			return
		}
		peers = append(peers, a)
	}
	msg := []byte(fmt.Sprintf("blast %s %s", round, s.name))
	sent := 0
	tick := time.NewTicker(every)
	defer tick.Stop()
	end := time.After(dur)
	for {
		for _, p := range peers {
			if _, err := s.udp.WriteToUDP(msg, p); err == nil {
				sent++
			}
		}
		select {
		case <-tick.C:
		case <-end:
			fmt.Fprintln(w, sent)
			return
		case <-r.Context().Done():
			return
		}
	}
}

func (s *server) seenHandler(w http.ResponseWriter, r *http.Request) {
	round := r.URL.Query().Get("round")
	s.mu.Lock()
	var from []string
	for p := range s.seen[round] {
		from = append(from, p)
	}
	s.mu.Unlock()
	slices.Sort(from)
	w.Header().Set("Content-Type", "application/json")
	_ = json.NewEncoder(w).Encode(from)
}

type rttResult struct {
	Sent     int       `json:"sent"`
	Received int       `json:"received"`
	RTTsMS   []float64 `json:"rtts_ms"`
}

func (s *server) rtt(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	count, err1 := strconv.Atoi(q.Get("count"))
	every, err2 := time.ParseDuration(q.Get("every"))
	wait, err3 := time.ParseDuration(q.Get("wait"))
	if err1 != nil || err2 != nil || err3 != nil || count <= 0 {
		http.Error(w, "bad count, every or wait", http.StatusBadRequest)
		return
	}
	peer, err := net.ResolveUDPAddr("udp", net.JoinHostPort(q.Get("to"), strconv.Itoa(s.port)))
	if err != nil {
		http.Error(w, err.Error(), http.StatusBadGateway)
		return
	}
	// A socket of its own, so pongs for this request are not mixed with
	// other traffic on the server socket.
	c, err := net.DialUDP("udp", nil, peer)
	if err != nil {
		http.Error(w, err.Error(), http.StatusBadGateway)
		return
	}
	defer c.Close()

	var mu sync.Mutex
	sentAt := make(map[string]time.Time, count)
	res := rttResult{}
	done := make(chan struct{})
	go func() {
		defer close(done)
		buf := make([]byte, 1500)
		for {
			n, err := c.Read(buf)
			if err != nil {
				return // deadline reached or socket closed
			}
			now := time.Now()
			f := strings.Fields(string(buf[:n]))
			if len(f) != 2 || f[0] != "pong" {
				continue
			}
			mu.Lock()
			if t, ok := sentAt[f[1]]; ok {
				res.Received++
				res.RTTsMS = append(res.RTTsMS, float64(now.Sub(t).Microseconds())/1000)
				delete(sentAt, f[1])
			}
			mu.Unlock()
		}
	}()
	for i := range count {
		id := strconv.Itoa(i)
		mu.Lock()
		sentAt[id] = time.Now()
		res.Sent++
		mu.Unlock()
		_, _ = c.Write([]byte("ping " + id))
		if i < count-1 {
			time.Sleep(every)
		}
	}
	_ = c.SetReadDeadline(time.Now().Add(wait))
	<-done
	mu.Lock()
	defer mu.Unlock()
	w.Header().Set("Content-Type", "application/json")
	_ = json.NewEncoder(w).Encode(res)
}

func (s *server) bytes(w http.ResponseWriter, r *http.Request) {
	n, err := strconv.Atoi(r.URL.Query().Get("n"))
	if err != nil || n < 0 {
		http.Error(w, "bad n", http.StatusBadRequest)
		return
	}
	w.Header().Set("Content-Length", strconv.Itoa(n))
	chunk := make([]byte, 32<<10)
	for n > 0 {
		k := min(n, len(chunk))
		if _, err := w.Write(chunk[:k]); err != nil {
			return
		}
		n -= k
	}
}

func (s *server) fetch(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	url := fmt.Sprintf("http://%s/bytes?n=%s", net.JoinHostPort(q.Get("to"), strconv.Itoa(s.port)), q.Get("n"))
	hc := &http.Client{Transport: &http.Transport{DisableKeepAlives: true}, Timeout: 60 * time.Second}
	start := time.Now()
	resp, err := hc.Get(url)
	if err != nil {
		http.Error(w, err.Error(), http.StatusBadGateway)
		return
	}
	defer resp.Body.Close()
	n, err := io.Copy(io.Discard, resp.Body)
	if err != nil {
		http.Error(w, err.Error(), http.StatusBadGateway)
		return
	}
	w.Header().Set("Content-Type", "application/json")
	_ = json.NewEncoder(w).Encode(map[string]any{"bytes": n, "ms": float64(time.Since(start).Microseconds()) / 1000})
}
