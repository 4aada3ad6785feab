// Command metachaos runs the chaos suite: real metanode processes in
// Docker containers, faults injected on a seeded schedule, every history
// checked, one readable folder per run.
//
//	metachaos run --nodes 3 --nemesis kill,pause,partition,bridge,member --time 60s --seed S --runs N
//	metachaos smoke                 every supported fault kind at least once (make chaos-smoke)
//	metachaos run --bug localreads  a planted bug the suite must catch
//	metachaos sweep                 remove what dead runs left behind
//
// Exit status: 0 when every run passed, 1 when a run failed or could not
// decide, 2 on a usage or set-up error. It owns flags, the binary to use
// (building tagged variants for --bug and --race), progress and the final
// table; the runs themselves are chaos.Run's. See chaos/README.md.
package main
