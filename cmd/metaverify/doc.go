// Command metaverify re-checks saved verification runs offline and prints
// fault schedules for a seed.
//
//	metaverify check DIR            re-check DIR (history.jsonl, faults.jsonl,
//	                                summary.json), print a verdict per checker,
//	                                write DIR/report.html; exit 1 unless valid
//	metaverify schedule --seed S    print the fault schedule a seed gives
//
// It owns flag parsing and printing only; the checking is verify's. Like
// verify, it must not import server internals (metanode, sm, rocks,
// rpc/transport).
package main
