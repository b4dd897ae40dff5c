package auth

import (
	"strings"
	"testing"

	sarv1 "github.com/mountain-sar/sar/gen/sar/v1"
)

func TestNewToken(t *testing.T) {
	seen := map[string]bool{}
	for i := 0; i < 100; i++ {
		tok, hash, id := NewToken()
		if !WellFormed(tok) {
			t.Fatalf("WellFormed(%q) = false, want true", tok)
		}
		if h, i2 := HashToken(tok); h != hash || i2 != id || !strings.HasPrefix(hash, id) || len(id) != 24 {
			t.Fatalf("HashToken(%q) = %s,%s; want %s,%s with id a 24-digit prefix", tok, h, i2, hash, id)
		}
		if strings.Contains(hash, tok) || seen[tok] {
			t.Fatalf("token %q repeated or contained in its hash", tok)
		}
		seen[tok] = true
	}
	for _, bad := range []string{"", "sar_", "Bearer x", "sar_" + strings.Repeat("!", 43), strings.Repeat("a", 47)} {
		if WellFormed(bad) {
			t.Errorf("WellFormed(%q) = true, want false", bad)
		}
	}
}

func TestPolicy(t *testing.T) {
	inc := &sarv1.Incident{Id: "inc1", Jurisdiction: "north", AgencyIds: []string{"police-a"}, TeamRefs: []string{"volunteers/t1"}}
	admin := &sarv1.Principal{Role: sarv1.Role_ROLE_ADMIN}
	opNorth := &sarv1.Principal{Role: sarv1.Role_ROLE_OPERATOR, Jurisdiction: "north"}
	opSouth := &sarv1.Principal{Role: sarv1.Role_ROLE_OPERATOR, Jurisdiction: "south"}
	police := &sarv1.Principal{Role: sarv1.Role_ROLE_RESCUER, AgencyId: "police-a", Jurisdiction: "north"}
	volT1 := &sarv1.Principal{Role: sarv1.Role_ROLE_RESCUER, AgencyId: "volunteers", TeamId: "t1"}
	volT2 := &sarv1.Principal{Role: sarv1.Role_ROLE_RESCUER, AgencyId: "volunteers", TeamId: "t2"}
	volNoTeam := &sarv1.Principal{Role: sarv1.Role_ROLE_RESCUER, AgencyId: "volunteers"}
	fire := &sarv1.Principal{Role: sarv1.Role_ROLE_RESCUER, AgencyId: "fire", Jurisdiction: "north"}
	caller := &sarv1.Principal{Role: sarv1.Role_ROLE_CALLER, IncidentId: "inc1", ParticipantId: "p-caller"}
	otherCaller := &sarv1.Principal{Role: sarv1.Role_ROLE_CALLER, IncidentId: "inc2", ParticipantId: "p-x"}
	none := &sarv1.Principal{}

	for _, tc := range []struct {
		name                 string
		p                    *sarv1.Principal
		see, command, others bool // others: positions of another participant
	}{
		{"admin", admin, true, true, true},
		{"operator of the jurisdiction", opNorth, true, true, true},
		{"operator elsewhere", opSouth, false, false, false},
		{"assigned agency", police, true, false, true},
		{"assigned team", volT1, true, false, true},
		{"other team of that agency", volT2, false, false, false},
		{"agency without team", volNoTeam, false, false, false},
		{"unassigned agency", fire, false, false, false},
		{"its caller", caller, true, false, false},
		{"another incident's caller", otherCaller, false, false, false},
		{"no role", none, false, false, false},
	} {
		if got := CanSeeIncident(tc.p, inc); got != tc.see {
			t.Errorf("CanSeeIncident(%s) = %v, want %v", tc.name, got, tc.see)
		}
		if got := CanCommandIncident(tc.p, inc); got != tc.command {
			t.Errorf("CanCommandIncident(%s) = %v, want %v", tc.name, got, tc.command)
		}
		if got := CanReadPositions(tc.p, inc, "p-rescuer"); got != tc.others {
			t.Errorf("CanReadPositions(%s, another participant) = %v, want %v", tc.name, got, tc.others)
		}
	}
	if !CanReadPositions(caller, inc, "p-caller") {
		t.Errorf("CanReadPositions(caller, own participant) = false, want true")
	}
	agency := &sarv1.Agency{Id: "police-a", Jurisdiction: "north"}
	if !CanSeeAgency(police, agency) || CanSeeAgency(fire, agency) || CanSeeAgency(opSouth, agency) || CanSeeAgency(caller, agency) {
		t.Errorf("CanSeeAgency: own rescuer must see, other agency, other jurisdiction and callers must not")
	}
	if !CanManageAgency(opNorth, agency) || CanManageAgency(police, agency) || CanManageAgency(opSouth, agency) {
		t.Errorf("CanManageAgency: only admins and operators of the jurisdiction")
	}
}
