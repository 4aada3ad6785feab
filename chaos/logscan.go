package chaos

import (
	"bufio"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"github.com/metamq/meta/verify"
)

// LogPatterns are the substrings that, found in a node's log, fail the
// "nodes" checker: a Go panic, a fatal runtime error (including a
// concurrent map write), a report of the race detector (for binaries built
// with -race), and the signals a crash in C code (RocksDB) dies of.
var LogPatterns = []string{
	"panic:",
	"fatal error:",
	"WARNING: DATA RACE",
	"SIGSEGV",
	"SIGABRT",
}

// LogHit is one log line that matched a LogPattern.
type LogHit struct {
	File    string `json:"file"`
	Line    int    `json:"line"`
	Pattern string `json:"pattern"`
	Text    string `json:"text"`
}

// maxLogHits bounds what a run records: the first hits say enough.
const maxLogHits = 50

// ScanLogs reads the node logs and returns the lines that match a
// LogPattern, at most maxLogHits of them. Harness marker lines ("# chaos
// ...") are skipped. Files that do not exist are skipped.
func ScanLogs(paths []string) ([]LogHit, error) {
	var hits []LogHit
	for _, p := range paths {
		f, err := os.Open(p)
		if os.IsNotExist(err) {
			continue
		}
		if err != nil {
			return hits, fmt.Errorf("chaos: scan log: %w", err)
		}
		sc := bufio.NewScanner(f)
		sc.Buffer(make([]byte, 64<<10), 4<<20)
		for n := 1; sc.Scan(); n++ {
			line := sc.Text()
			if strings.HasPrefix(line, "# chaos ") {
				continue
			}
			for _, pat := range LogPatterns {
				if strings.Contains(line, pat) && len(hits) < maxLogHits {
					text := line
					if len(text) > 300 {
						text = text[:300] + "…"
					}
					hits = append(hits, LogHit{File: filepath.Base(p), Line: n, Pattern: pat, Text: text})
					break
				}
			}
		}
		err = sc.Err()
		f.Close()
		if err != nil {
			return hits, fmt.Errorf("chaos: scan log %s: %w", p, err)
		}
	}
	return hits, nil
}

// CheckerNodes is the checker chaos adds to verify's in summary.json: no
// node log holds a panic, a fatal runtime error or a data race report,
// and no node went down or left the membership without a fault doing it.
const CheckerNodes = "nodes"

// CheckNodes judges the node logs and the nemesis's problem notes (a node
// down without a fault, a member list that did not end as it began).
// scanErr, if not nil, makes the verdict unknown unless something already
// failed.
func CheckNodes(hits []LogHit, notes []Note, logs int, scanErr error) verify.CheckResult {
	res := verify.CheckResult{Checker: CheckerNodes, Verdict: verify.Valid, Recorded: true, Ops: logs}
	for _, h := range hits {
		res.Failing = append(res.Failing, fmt.Sprintf("%s:%d: %s", h.File, h.Line, h.Text))
	}
	problems := 0
	for _, n := range notes {
		if n.Problem {
			problems++
			res.Failing = append(res.Failing, n.Text)
		}
	}
	switch {
	case len(res.Failing) > 0:
		res.Verdict = verify.Invalid
	case scanErr != nil:
		res.Verdict = verify.Unknown
	}
	res.Details = fmt.Sprintf("%d node logs scanned for %q: %d matching lines; %d nemesis problems",
		logs, LogPatterns, len(hits), problems)
	if scanErr != nil {
		res.Details += "; scan error: " + scanErr.Error()
	}
	return res
}
