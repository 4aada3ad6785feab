package chaos

import (
	"cmp"
	"fmt"
	"html"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/metamq/meta/verify"
)

// writeIndex writes index.html, the page to open first: verdicts of every
// checker (verify's and chaos's), the fault timeline with the nemesis's
// notes, recovery times, log findings, the two plots, and links to every
// file of the folder.
func writeIndex(dir string, rec *runRecord, rep *RunReport) error {
	e := html.EscapeString
	var b strings.Builder
	b.WriteString(`<!doctype html><html><head><meta charset="utf-8"><title>`)
	fmt.Fprintf(&b, "chaos run seed %d — %s", rec.Seed, rec.Verdict)
	b.WriteString(`</title><style>body{font-family:sans-serif;margin:16px} td,th{border:1px solid #ccc;padding:2px 6px;text-align:left;vertical-align:top;font-size:13px} table{border-collapse:collapse;margin-bottom:14px} .ok{color:#2a7d2a;font-weight:bold} .bad{color:#c62828;font-weight:bold} .unk{color:#b26a00;font-weight:bold} code{font-size:12px}</style></head><body>`)
	fmt.Fprintf(&b, "<h2>chaos run — seed %d — %s</h2>", rec.Seed, verdictSpan(rec.Verdict))
	fmt.Fprintf(&b, "<p>started %s, took %s; %d nodes; kinds %s; workload %s</p>",
		e(rec.Started.UTC().Format(time.RFC3339)), rec.Elapsed.Round(time.Second), rec.Options.Nodes,
		e(kindList(rec.Options.Kinds)), rec.Options.Duration)
	if c := rec.Cluster; c.ReplicationFactor > 0 {
		fmt.Fprintf(&b, "<p>replication factor %d (metadata-0 %d) on %d nodes, as the cluster recorded it</p>",
			c.ReplicationFactor, c.MetadataReplicationFactor, rec.Options.Nodes)
	}
	if rec.Error != "" {
		fmt.Fprintf(&b, "<p class=bad>run not carried out completely: %s</p>", e(rec.Error))
	}
	fmt.Fprintf(&b, "<p>image <code>%s</code> (%s)", e(rec.Image.Tag), e(rec.Image.ID))
	for _, k := range sortedKeys(rec.Meta) {
		fmt.Fprintf(&b, "; %s <code>%s</code>", e(k), e(fmt.Sprint(rec.Meta[k])))
	}
	if len(rec.Options.Env) > 0 {
		fmt.Fprintf(&b, "; node env <code>%s</code>", e(fmt.Sprint(rec.Options.Env)))
	}
	b.WriteString("</p>")

	b.WriteString("<h3>Checkers</h3><table><tr><th>checker</th><th>valid</th><th>failing</th><th>details</th></tr>")
	for _, c := range rep.Checks {
		failing, more := c.FailingUpTo(15)
		fmt.Fprintf(&b, "<tr><td>%s</td><td>%s</td><td>%s%s</td><td>%s</td></tr>",
			e(c.Checker), verdictSpan(c.Verdict), e(strings.Join(failing, "; ")), e(more), e(c.Details))
	}
	b.WriteString("</table>")
	fmt.Fprintf(&b, "<p>%d ops: ok %d, fail %d, unknown %d, final reads %d. Porcupine's view of every key and partition: <a href=%q>report.html</a>.</p>",
		rep.Ops.Total, rep.Ops.OK, rep.Ops.Fail, rep.Ops.Unknown, rep.Ops.Final, verify.ReportFile)
	if len(rep.BrokerOps) > 0 {
		var parts []string
		var sum verify.Counts
		for _, k := range sortedKeys(rep.BrokerOps) {
			c := rep.BrokerOps[k]
			sum.OK, sum.Fail, sum.Unknown = sum.OK+c.OK, sum.Fail+c.Fail, sum.Unknown+c.Unknown
			parts = append(parts, fmt.Sprintf("%s %d/%d/%d", k, c.OK, c.Fail, c.Unknown))
		}
		fmt.Fprintf(&b, "<p>Broker workloads: %d ops: ok %d, fail %d, unknown %d (ok/fail/unknown by kind: %s). Controller timings: heartbeat %s, session timeout %s.</p>",
			sum.OK+sum.Fail+sum.Unknown, sum.OK, sum.Fail, sum.Unknown, e(strings.Join(parts, ", ")),
			orDefault(rec.Options.BrokerHeartbeat), orDefault(rec.Options.BrokerTimeout))
	}

	b.WriteString(`<h3>Throughput and latency</h3><p><img src="` + ThroughputPlot + `" alt="throughput"><br><img src="` + LatencyPlot + `" alt="latency"></p>`)

	b.WriteString("<h3>Faults</h3><table><tr><th>#</th><th>kind</th><th>target</th><th>nodes</th><th>params</th><th>began</th><th>ended</th><th>error</th><th>nemesis notes</th></tr>")
	for _, f := range rep.Faults {
		var params []string
		for _, k := range sortedKeys(f.Params) {
			params = append(params, k+"="+f.Params[k])
		}
		var notes []string
		for _, n := range rec.Notes {
			if n.Fault == f.ID {
				notes = append(notes, n.Text)
			}
		}
		fmt.Fprintf(&b, "<tr><td>%d</td><td>%s</td><td>%s</td><td>%s</td><td>%s</td><td>%s</td><td>%s</td><td class=bad>%s</td><td>%s</td></tr>",
			f.ID, e(string(f.Kind)), e(string(f.Target)), e(strings.Join(f.Nodes, ",")), e(strings.Join(params, " ")),
			f.Began.Round(time.Millisecond), f.Ended.Round(time.Millisecond), e(f.Err), e(strings.Join(notes, "; ")))
	}
	b.WriteString("</table>")
	var other []string
	for _, n := range rec.Notes {
		if n.Fault == 0 {
			other = append(other, n.Text)
		}
	}
	if len(other) > 0 {
		fmt.Fprintf(&b, "<p>End of schedule (heal all): %s</p>", e(strings.Join(other, "; ")))
	}

	b.WriteString("<h3>Recovery after each heal</h3><p>From the end of the heal until every group took a write; the next fault waited for it.</p><table><tr><th>after</th><th>recovered in</th><th>slowest group</th><th>groups that never served</th></tr>")
	recRow := func(name string, r *verify.Recovery) {
		if r == nil {
			fmt.Fprintf(&b, "<tr><td>%s</td><td>not probed</td><td></td><td></td></tr>", e(name))
			return
		}
		var missing []string
		for _, g := range sortedKeys(r.Missing) {
			missing = append(missing, g+": "+r.Missing[g])
		}
		fmt.Fprintf(&b, "<tr><td>%s</td><td>%s</td><td>%s</td><td>%s</td></tr>", e(name), r.Took.Round(time.Millisecond),
			e(r.Slowest), e(strings.Join(missing, "; ")))
	}
	for i := range rep.Faults {
		f := &rep.Faults[i]
		if f.Began > 0 || f.Ended > 0 {
			recRow(fmt.Sprintf("fault %d (%s)", f.ID, f.Kind), f.Recovery)
		}
	}
	recRow("final heal", rep.FinalRecovery)
	b.WriteString("</table>")
	if len(rep.Recovery) > 0 {
		b.WriteString("<table><tr><th>kind</th><th>heals</th><th>p50</th><th>p99</th><th>max</th><th>not recovered</th></tr>")
		for _, k := range sortedKeys(rep.Recovery) {
			st := rep.Recovery[k]
			fmt.Fprintf(&b, "<tr><td>%s</td><td>%d</td><td>%s</td><td>%s</td><td>%s</td><td>%d</td></tr>", e(string(k)), st.Heals,
				st.P50.Round(time.Millisecond), st.P99.Round(time.Millisecond), st.Max.Round(time.Millisecond), st.Unrecovered)
		}
		b.WriteString("</table>")
	}

	if len(rec.LogHits) > 0 {
		b.WriteString("<h3 class=bad>Node log findings</h3><table><tr><th>file</th><th>line</th><th>text</th></tr>")
		for _, h := range rec.LogHits {
			fmt.Fprintf(&b, "<tr><td><a href=%q>%s</a></td><td>%d</td><td><code>%s</code></td></tr>", LogsDir+"/"+h.File, e(h.File), h.Line, e(h.Text))
		}
		b.WriteString("</table>")
	}

	b.WriteString("<h3>Files</h3><ul>")
	files := []struct{ name, what string }{
		{verify.ReportFile, "porcupine visualization per key / partition / consumer group, faults on a row of their own"},
		{verify.SummaryFile, "verdict per checker (verify's and chaos's), op counts, ops per fault window"},
		{RunFile, "seed, options, commit, image, node flags, nemesis notes, log findings"},
		{verify.HistoryFile, "every op, one JSON object per line"},
		{verify.FaultsFile, "the fault timeline as played"},
		{verify.BrokerFile, "the broker workloads' ops (sessions, resources, simulated brokers, observer reads), one JSON object per line"},
		{verify.WatchFile, "what every watcher received, one JSON object per line"},
		{verify.SessionsReportFile, "porcupine visualization per session client id and data group"},
		{ThroughputPlot, "ops per second by outcome"},
		{LatencyPlot, "p50 / p99 / max latency"},
		{HarnessLog, "the harness's own log (debug level)"},
	}
	for _, f := range files {
		if _, err := os.Stat(filepath.Join(dir, f.name)); err == nil {
			fmt.Fprintf(&b, "<li><a href=%q>%s</a> — %s</li>", f.name, e(f.name), e(f.what))
		}
	}
	if ents, err := os.ReadDir(filepath.Join(dir, LogsDir)); err == nil {
		b.WriteString("<li>node logs (stdout and stderr, with <code># chaos</code> marker lines for every harness action):")
		for _, ent := range ents {
			fmt.Fprintf(&b, " <a href=%q>%s</a>", LogsDir+"/"+ent.Name(), e(ent.Name()))
		}
		b.WriteString("</li>")
	}
	if rec.DataKept {
		b.WriteString("<li><code>data/&lt;node&gt;/</code> — the nodes' data directories, kept (failing run or --keep-data)</li>")
	}
	b.WriteString("</ul></body></html>\n")
	return os.WriteFile(filepath.Join(dir, IndexFile), []byte(b.String()), 0o644)
}

// orDefault renders a node flag's duration, zero being metanode's default.
func orDefault(d time.Duration) string {
	if d == 0 {
		return "metanode's default"
	}
	return d.String()
}

func verdictSpan(v verify.Verdict) string {
	switch v {
	case verify.Valid:
		return `<span class=ok>valid</span>`
	case verify.Invalid:
		return `<span class=bad>INVALID</span>`
	}
	return `<span class=unk>unknown</span>`
}

// kindList is ks for a reader: comma-separated, "none" when empty.
func kindList(ks []verify.FaultKind) string {
	return cmp.Or(verify.JoinKinds(ks), "none")
}
