// Command metanode runs one Meta Node.
//
//	metanode --id n1 --data-dir D --listen ADDR --initial-cluster n1=A1,n2=A2,n3=A3
//	metanode --id n4 --data-dir D --listen ADDR4 --join A1      (after `metactl member add n4 ADDR4`)
//
//	metanode --config node.yaml [flags]                        (YAML keyed by flag names; flags win)
//
//	metanode restore --from FILE --id n1 --data-dir D --initial-cluster n1=A1,n2=A2,n3=A3
//	                                                           (a new cluster from a backup of
//	                                                           `metactl snapshot save`: run on every
//	                                                           member, same file and list, then start
//	                                                           each with --id and --data-dir)
//
//	metanode recover --id n1 --data-dir D [--dry-run] [--recreate-lost-groups]
//	                                                           (after losing a majority for good: this
//	                                                           stopped survivor becomes the only member;
//	                                                           then start it, and add nodes)
//
// --metrics-listen ADDR serves /metrics, /livez and /readyz over HTTP.
// SIGTERM or SIGINT shuts the node down in order within --shutdown-timeout.
package main
