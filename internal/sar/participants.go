package sar

import (
	"errors"

	sarv1 "github.com/mountain-sar/sar/gen/sar/v1"
)

// JoinArgs says who joins an incident with which device.
type JoinArgs struct {
	IncidentID   string
	DeviceID     string
	CredentialID string             // rescuer: finds or creates its participant
	CallerPartID string             // caller: its existing participant
	New          *sarv1.Participant // rescuer: the participant to create if none
	// Opened is a caller's record with its link opened, stored (with
	// Event) only if the device was not bound to it before.
	Opened       *sarv1.Participant
	Event        *sarv1.Event // announces New if it is created, or Opened if stored
	RebindFrom   string       // participant the device may be taken from
	SearcherType string       // rescuer: recorded when set (kept otherwise)
	// NewSearcherType is recorded for a participant created by the join
	// when SearcherType is empty.
	NewSearcherType string
}

// JoinResult is what a join found or made.
type JoinResult struct {
	Participant  *sarv1.Participant
	Created      bool // the event was queued: New created, or Opened stored
	AckedThrough uint64
}

// ErrDeviceTaken says a device is bound to another participant.
var ErrDeviceTaken = errors.New("store: device bound to another participant")
