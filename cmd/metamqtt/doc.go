// Command metamqtt is an MQTT broker (mochi-mqtt) that keeps its sessions,
// subscriptions, retained messages and wills in a meta cluster
// (contrib/mqtt), so that several metamqtt brokers on one cluster behave as
// one. With --store memory it keeps them in mochi's default in-memory
// store instead (for comparison).
//
// Exit status is 0 after SIGINT/SIGTERM, 1 on a start-up error, 2 when the
// broker was fenced by another registration of its --broker-id.
package main
