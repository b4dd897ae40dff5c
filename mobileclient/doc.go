// Package mobileclient is the Go core of the rescuer phone app: the part
// that talks to sard, written once in Go and bound to Android and iOS
// with gomobile. Its surface keeps to what gomobile binds (strings, byte
// slices, bools, numbers, structs and their methods) and it pulls in no
// cgo.
//
// What is here is its connection: New dials sard over gRPC with TLS by
// default (plaintext only to this device's loopback, or to a remote
// address when Config.Insecure says so), trusting the system's roots, a
// CA bundle given as PEM bytes, or a pinned public key; sends the
// rescuer's bearer token with every call (never in plaintext off the
// device); and keeps the connection with keepalive and reconnect backoff
// suited to a phone on a weak mobile network. The connection is lazy: a
// phone without signal still gets a Client, and calls connect when there
// is a network.
//
// What comes next, on top of it: the fix queue (a location outbox that
// survives offline hours and restarts, numbered per incident, drained
// from acked_through), sending it a batch at a time with ReportFixes (a
// held StreamFixes stream costs the server about 40 % more memory per
// phone: docs/bench.md), and the task feed
// (StreamTasks from the device's cursor, with accepting and declining).
package mobileclient
