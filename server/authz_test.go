package server_test

import (
	"context"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"

	sarv1 "github.com/mountain-sar/sar/gen/sar/v1"
)

// TestAuthorizationBoundaries shows that each role is refused another
// jurisdiction's, agency's or incident's data, and that the refusal does
// not leak what it protects.
func TestAuthorizationBoundaries(t *testing.T) {
	e := startEnv(t)
	e.createAgency("police-north", "north", sarv1.AgencyKind_AGENCY_KIND_POLICE_STATION)
	e.createAgency("police-south", "south", sarv1.AgencyKind_AGENCY_KIND_POLICE_STATION)
	e.createAgency("fire-north", "north", sarv1.AgencyKind_AGENCY_KIND_FIRE_BRIGADE)
	opNorth, opSouth := e.operator("north"), e.operator("south")
	officer := e.rescuer("police-north", "")
	fireman := e.rescuer("fire-north", "")
	southOfficer := e.rescuer("police-south", "")

	inc := e.createIncident(opNorth, "police-north")
	other := e.createIncident(opSouth, "police-south")
	link := must[*sarv1.CreateShareLinkResponse](t, "CreateShareLink")(e.auth.CreateShareLink(e.as(opNorth), &sarv1.CreateShareLinkRequest{
		IncidentId: inc.GetId(), DisplayName: "Caller (mother)"}))
	caller := link.GetToken()
	otherLink := must[*sarv1.CreateShareLinkResponse](t, "CreateShareLink")(e.auth.CreateShareLink(e.as(opSouth), &sarv1.CreateShareLinkRequest{IncidentId: other.GetId()}))
	e.join(officer, inc.GetId(), "officer-phone")
	e.join(caller, inc.GetId(), "caller-browser")
	secrets := []string{inc.GetTitle(), "north", "police-north", inc.GetJurisdiction()}

	denied := func(name string, err error, codesOK ...codes.Code) {
		t.Helper()
		st, _ := status.FromError(err)
		for _, c := range codesOK {
			if st.Code() == c {
				if containsAny(st.Message(), secrets...) {
					t.Errorf("%s: error %q leaks protected data", name, st.Message())
				}
				return
			}
		}
		t.Errorf("%s: error = %v, want one of %v", name, err, codesOK)
	}
	nf := []codes.Code{codes.NotFound, codes.PermissionDenied}

	// Operators of another jurisdiction.
	_, err := e.inc.GetIncident(e.as(opSouth), &sarv1.GetIncidentRequest{IncidentId: inc.GetId()})
	denied("south operator GetIncident", err, codes.NotFound)
	_, err = e.inc.CloseIncident(e.as(opSouth), &sarv1.CloseIncidentRequest{IncidentId: inc.GetId(), Outcome: sarv1.IncidentOutcome_INCIDENT_OUTCOME_FALSE_ALARM})
	denied("south operator CloseIncident", err, codes.NotFound)
	_, err = e.auth.CreateShareLink(e.as(opSouth), &sarv1.CreateShareLinkRequest{IncidentId: inc.GetId()})
	denied("south operator CreateShareLink", err, codes.NotFound)
	w, err := e.inc.WatchIncident(e.as(opSouth), &sarv1.WatchIncidentRequest{IncidentId: inc.GetId()})
	if err == nil {
		_, err = w.Recv()
	}
	denied("south operator WatchIncident", err, codes.NotFound)
	list := must[*sarv1.ListIncidentsResponse](t, "ListIncidents")(e.inc.ListIncidents(e.as(opSouth), &sarv1.ListIncidentsRequest{Jurisdiction: "north"}))
	if len(list.GetIncidents()) != 0 {
		t.Errorf("south operator lists %d north incidents, want 0", len(list.GetIncidents()))
	}
	_, err = e.agency.GetAgency(e.as(opSouth), &sarv1.GetAgencyRequest{AgencyId: "police-north"})
	denied("south operator GetAgency", err, codes.NotFound)
	_, err = e.agency.CreateTeam(e.as(opSouth), &sarv1.CreateTeamRequest{Team: &sarv1.Team{Id: "x", AgencyId: "police-north", Name: "x"}})
	denied("south operator CreateTeam in north", err, codes.NotFound)
	_, err = e.auth.CreateCredential(e.as(opSouth), &sarv1.CreateCredentialRequest{Role: sarv1.Role_ROLE_RESCUER, AgencyId: "police-north", DisplayName: "x"})
	denied("south operator issues north rescuer", err, codes.NotFound)
	_, err = e.auth.CreateCredential(e.as(opNorth), &sarv1.CreateCredentialRequest{Role: sarv1.Role_ROLE_OPERATOR, Jurisdiction: "north", DisplayName: "x"})
	denied("operator issues operator", err, codes.PermissionDenied)

	// Rescuers of an agency that is not assigned, or of another jurisdiction.
	for name, tok := range map[string]string{"fireman": fireman, "south officer": southOfficer} {
		_, err = e.inc.GetIncident(e.as(tok), &sarv1.GetIncidentRequest{IncidentId: inc.GetId()})
		denied(name+" GetIncident", err, codes.NotFound)
		_, err = e.inc.JoinIncident(e.as(tok), &sarv1.JoinIncidentRequest{IncidentId: inc.GetId(), DeviceId: "x"})
		denied(name+" JoinIncident", err, codes.NotFound)
		_, err = e.inc.ListParticipants(e.as(tok), &sarv1.ListParticipantsRequest{IncidentId: inc.GetId()})
		denied(name+" ListParticipants", err, codes.NotFound)
		l := must[*sarv1.ListIncidentsResponse](t, "ListIncidents")(e.inc.ListIncidents(e.as(tok), &sarv1.ListIncidentsRequest{}))
		for _, i := range l.GetIncidents() {
			if i.GetId() == inc.GetId() {
				t.Errorf("%s lists the incident it is not assigned to", name)
			}
		}
	}
	// An assigned rescuer may not command, nor report for another's device.
	_, err = e.inc.CloseIncident(e.as(officer), &sarv1.CloseIncidentRequest{IncidentId: inc.GetId(), Outcome: sarv1.IncidentOutcome_INCIDENT_OUTCOME_FALSE_ALARM})
	denied("officer CloseIncident", err, codes.PermissionDenied)
	_, err = e.inc.CreateIncident(e.as(officer), &sarv1.CreateIncidentRequest{Title: "x"})
	denied("officer CreateIncident", err, codes.PermissionDenied)
	officer2 := e.rescuer("police-north", "")
	_, err = e.loc.ReportFixes(e.as(officer2), &sarv1.ReportFixesRequest{Batch: &sarv1.FixBatch{IncidentId: inc.GetId(), DeviceId: "officer-phone", Fixes: walk(1, 1, time.Now())}})
	denied("another officer reports for officer-phone", err, codes.PermissionDenied)
	_, err = e.loc.ReportFixes(e.as(officer), &sarv1.ReportFixesRequest{Batch: &sarv1.FixBatch{IncidentId: inc.GetId(), DeviceId: "caller-browser", Fixes: walk(1, 1, time.Now())}})
	denied("officer reports for the caller's device", err, codes.PermissionDenied)
	l := must[*sarv1.ListIncidentsResponse](t, "ListIncidents")(e.inc.ListIncidents(e.as(officer), &sarv1.ListIncidentsRequest{}))
	if len(l.GetIncidents()) != 1 || l.GetIncidents()[0].GetId() != inc.GetId() {
		t.Errorf("assigned officer lists %v, want exactly its incident", l.GetIncidents())
	}

	// The caller's link: its own incident's caller data only.
	_, err = e.inc.GetIncident(e.as(caller), &sarv1.GetIncidentRequest{IncidentId: other.GetId()})
	denied("caller GetIncident of another incident", err, codes.NotFound)
	own := must[*sarv1.GetIncidentResponse](t, "caller GetIncident")(e.inc.GetIncident(e.as(caller), &sarv1.GetIncidentRequest{IncidentId: inc.GetId()}))
	if own.GetIncident().GetTitle() != "" || len(own.GetIncident().GetAgencyIds()) != 0 || own.GetIncident().GetSubject() != nil {
		t.Errorf("caller sees incident details %v, want only its state", own.GetIncident())
	}
	parts := must[*sarv1.ListParticipantsResponse](t, "caller ListParticipants")(e.inc.ListParticipants(e.as(caller), &sarv1.ListParticipantsRequest{IncidentId: inc.GetId()}))
	if len(parts.GetParticipants()) != 1 || parts.GetParticipants()[0].GetId() != link.GetParticipant().GetId() {
		t.Errorf("caller sees participants %v, want only itself", parts.GetParticipants())
	}
	officerPart := e.join(officer, inc.GetId(), "officer-phone").GetParticipant().GetId()
	_, err = e.loc.GetTrack(e.as(caller), &sarv1.GetTrackRequest{IncidentId: inc.GetId(), ParticipantId: officerPart})
	denied("caller GetTrack of a rescuer", err, codes.NotFound)
	_, err = e.loc.ListCellVisits(e.as(caller), &sarv1.ListCellVisitsRequest{IncidentId: inc.GetId()})
	denied("caller ListCellVisits", err, nf...)
	_, err = e.inc.ListIncidents(e.as(caller), &sarv1.ListIncidentsRequest{})
	denied("caller ListIncidents", err, codes.PermissionDenied)
	_, err = e.agency.ListAgencies(e.as(caller), &sarv1.ListAgenciesRequest{})
	denied("caller ListAgencies", err, codes.PermissionDenied)
	_, err = e.inc.JoinIncident(e.as(otherLink.GetToken()), &sarv1.JoinIncidentRequest{IncidentId: inc.GetId(), DeviceId: "x"})
	denied("other incident's caller JoinIncident", err, codes.NotFound)
	ack := must[*sarv1.ReportFixesResponse](t, "caller ReportFixes")(e.loc.ReportFixes(e.as(caller), &sarv1.ReportFixesRequest{Batch: &sarv1.FixBatch{
		IncidentId: inc.GetId(), DeviceId: "caller-browser", Fixes: walk(1, 2, time.Now())}}))
	if len(ack.GetAck().GetStored()) != 2 {
		t.Errorf("caller ReportFixes stored %v, want 2", ack.GetAck().GetStored())
	}

	// Credentials: missing, malformed, unknown and revoked.
	_, err = e.inc.ListIncidents(context.Background(), &sarv1.ListIncidentsRequest{})
	denied("no credential", err, codes.Unauthenticated)
	for _, bad := range []string{"nonsense", "sar_AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA"} {
		ctx := metadata.AppendToOutgoingContext(context.Background(), "authorization", "Bearer "+bad)
		_, err = e.inc.ListIncidents(ctx, &sarv1.ListIncidentsRequest{})
		denied("bad token "+bad, err, codes.Unauthenticated)
	}
	who := must[*sarv1.WhoAmIResponse](t, "WhoAmI")(e.auth.WhoAmI(e.as(fireman), &sarv1.WhoAmIRequest{}))
	must[*sarv1.RevokeCredentialResponse](t, "RevokeCredential")(e.auth.RevokeCredential(e.as(opNorth), &sarv1.RevokeCredentialRequest{CredentialId: who.GetPrincipal().GetCredentialId()}))
	_, err = e.auth.RevokeCredential(e.as(opSouth), &sarv1.RevokeCredentialRequest{CredentialId: e.principal(officer).GetCredentialId()})
	denied("south operator revokes a north rescuer", err, codes.NotFound)
	// The revocation takes effect at once on the replica that revoked
	// (other replicas: within the credential cache time).
	_, err = e.auth.WhoAmI(e.as(fireman), &sarv1.WhoAmIRequest{})
	denied("revoked credential", err, codes.Unauthenticated)

	// An open watch stream ends when its credential is revoked.
	watcher := e.operator("north")
	ws, err := e.inc.WatchIncident(e.as(watcher), &sarv1.WatchIncidentRequest{IncidentId: inc.GetId()})
	if err != nil {
		t.Fatalf("WatchIncident: %v", err)
	}
	if m, err := ws.Recv(); err != nil || m.GetSnapshot() == nil {
		t.Fatalf("first watch message = %v, %v; want the snapshot", m, err)
	}
	must[*sarv1.RevokeCredentialResponse](t, "RevokeCredential")(e.auth.RevokeCredential(e.as(e.admin), &sarv1.RevokeCredentialRequest{CredentialId: e.principal(watcher).GetCredentialId()}))
	for {
		_, err := ws.Recv()
		if err != nil {
			denied("watch after revocation", err, codes.Unauthenticated)
			break
		}
	}
}

func (e *env) principal(token string) *sarv1.Principal {
	return must[*sarv1.WhoAmIResponse](e.t, "WhoAmI")(e.auth.WhoAmI(e.as(token), &sarv1.WhoAmIRequest{})).GetPrincipal()
}
