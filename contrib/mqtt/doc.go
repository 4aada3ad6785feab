// Package mqtt plugs the mochi-mqtt broker (github.com/mochi-mqtt/server/v2)
// into meta through its hook interface, so that brokers sharing one meta
// cluster behave as one: sessions (with expiry), subscriptions, retained
// messages and wills live in meta; a client's persistent session follows
// it to another broker; a dead broker's wills are published exactly once by
// the survivors.
//
// What lives where:
//
//   - A session is written when a client connects (connected, held by this
//     broker; return_previous answers "session present" and brings the
//     state to resume in the same call), when its subscriptions change, and
//     when it disconnects (if_broker_id: only while this broker still
//     holds it, so a late disconnect never overwrites the connection the
//     client has meanwhile made to another broker). The state is the
//     client's subscriptions and, at disconnect, its in-flight messages.
//     Session writes of all clients go through one writer that coalesces
//     them into batch calls (bounded in size and delay).
//   - Expiry is meta's: the group leader deletes a disconnected session
//     after its interval. The broker never deletes sessions on its own
//     timer.
//   - Wills are meta's too: the broker stores a client's will at connect and
//     never publishes it itself. A disconnect without DISCONNECT arms it in
//     meta (it becomes due after its delay); a clean DISCONNECT deletes it.
//     Every broker watches wills and, when one is due, tries to claim it;
//     exactly one claim wins, that broker publishes the will and completes
//     it. A periodic sweep of the due wills covers anything a watch missed.
//   - Retained messages are written to meta as they are set or cleared, and
//     read from meta when a client subscribes, so a retained message set
//     through one broker is delivered by every other.
//   - The broker registers with meta's controller and heartbeats; every
//     session it writes carries its registration epoch. When the
//     controller declares another broker down, the survivors mark that
//     broker's connected sessions disconnected, only while it still holds
//     them at the epoch it was declared down at, which arms their wills. A
//     broker that learns it was declared down itself (paused, cut off)
//     registers again and writes its clients' sessions back as connected
//     at the new epoch, which the survivors' writes cannot undo. A broker
//     fenced by a newer registration of its id (STALE_EPOCH) stops,
//     through Config.OnFenced.
//
// The package sees meta only as a broker does: it imports meta's public
// client and API (rpc/client, rpc/metapb) and nothing else of meta; nothing
// in meta imports it (ci/arch_test.go).
package mqtt
