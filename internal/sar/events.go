package sar

import sarv1 "github.com/mountain-sar/sar/gen/sar/v1"

// A BusEvent is an event as a watcher read it from the bus: decoded, and
// the bytes it came in (its protobuf encoding, not to be modified), so
// that a stream passes it on without encoding it again for every watcher.
type BusEvent struct {
	Event *sarv1.Event
	Wire  []byte
}
