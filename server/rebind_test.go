package server_test

import (
	"context"
	"testing"
	"time"

	"google.golang.org/grpc/codes"

	sarv1 "github.com/mountain-sar/sar/gen/sar/v1"
)

// TestDeviceRebinding: a phone whose rescuer credential was re-issued
// mid-incident rejoins under the new credential and goes on from its last
// acknowledged sequence; a colleague with a working credential cannot take
// the phone.
func TestDeviceRebinding(t *testing.T) {
	e := startEnv(t)
	e.createAgency("police-north", "north", sarv1.AgencyKind_AGENCY_KIND_POLICE_STATION)
	e.createAgency("fire-north", "north", sarv1.AgencyKind_AGENCY_KIND_FIRE_BRIGADE)
	op := e.operator("north")
	oldCred := e.rescuer("police-north", "")
	colleague := e.rescuer("police-north", "")
	inc := e.createIncident(op, "police-north", "fire-north")
	first := e.join(oldCred, inc.GetId(), "phone")
	ack := e.openDevice(oldCred, inc.GetId(), "phone").send(walk(1, 3, time.Now())...)
	if ack.GetAckedThrough() != 3 {
		t.Fatalf("ack = %v, want through 3", ack)
	}

	_, err := e.inc.JoinIncident(e.as(colleague), &sarv1.JoinIncidentRequest{IncidentId: inc.GetId(), DeviceId: "phone"})
	wantCode(t, "colleague takes a working phone", err, codes.FailedPrecondition)

	must[*sarv1.RevokeCredentialResponse](t, "RevokeCredential")(e.auth.RevokeCredential(e.as(op), &sarv1.RevokeCredentialRequest{
		CredentialId: e.principalOf(first)}))
	fireman := e.rescuer("fire-north", "")
	_, err = e.inc.JoinIncident(e.as(fireman), &sarv1.JoinIncidentRequest{IncidentId: inc.GetId(), DeviceId: "phone"})
	wantCode(t, "another agency takes a revoked colleague's phone", err, codes.FailedPrecondition)

	newCred := e.rescuer("police-north", "")
	again := e.join(newCred, inc.GetId(), "phone")
	if again.GetAckedThrough() != 3 || again.GetParticipant().GetId() == first.GetParticipant().GetId() {
		t.Fatalf("rejoin = %v, want a new participant resuming after sequence 3", again)
	}
	ack = e.openDevice(newCred, inc.GetId(), "phone").send(walk(4, 2, time.Now())...)
	if !equalSeqs(ack.GetStored(), seqs(4, 5)) {
		t.Fatalf("after rejoin ack = %v, want 4 and 5 stored", ack)
	}
}

// principalOf returns the credential id a participant joined with.
func (e *env) principalOf(j *sarv1.JoinIncidentResponse) string {
	e.t.Helper()
	m, err := e.rdb.HGetAll(context.Background(), "sar:{"+j.GetParticipant().GetIncidentId()+"}:pcred").Result()
	if err != nil {
		e.t.Fatalf("pcred: %v", err)
	}
	for cred, pid := range m {
		if pid == j.GetParticipant().GetId() {
			return cred
		}
	}
	e.t.Fatalf("no credential for participant %s", j.GetParticipant().GetId())
	return ""
}
