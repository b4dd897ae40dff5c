// Package auth holds credentials and the authorization policy: who may see
// and change which incident, agency and participant. It is pure: storage of
// credentials is the caller's job, through the Store interface it defines.
package auth

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base64"
	"encoding/hex"
	"strings"

	sarv1 "github.com/mountain-sar/sar/gen/sar/v1"
	"github.com/mountain-sar/sar/internal/sar"
)

// tokenPrefix marks our tokens so that leaked ones are easy to find by
// secret scanners.
const tokenPrefix = "sar_"

// NewToken returns a fresh bearer token (256 random bits), the hex SHA-256
// of it (what is stored) and its credential id (the first 24 hex digits of
// the hash: public, used to look it up and revoke it).
func NewToken() (token, hash, id string) {
	var b [32]byte
	if _, err := rand.Read(b[:]); err != nil {
		panic("auth: no randomness: " + err.Error()) // crypto/rand never fails on Linux
	}
	token = tokenPrefix + base64.RawURLEncoding.EncodeToString(b[:])
	hash, id = HashToken(token)
	return token, hash, id
}

// HashToken returns the stored hash of a token and its credential id.
func HashToken(token string) (hash, id string) {
	sum := sha256.Sum256([]byte(token))
	hash = hex.EncodeToString(sum[:])
	return hash, hash[:24]
}

// EqualHash compares two hex hashes in constant time.
func EqualHash(a, b string) bool { return subtle.ConstantTimeCompare([]byte(a), []byte(b)) == 1 }

// WellFormed reports whether a token has our shape, so that junk never
// reaches the store.
func WellFormed(token string) bool {
	if !strings.HasPrefix(token, tokenPrefix) || len(token) != len(tokenPrefix)+43 {
		return false
	}
	_, err := base64.RawURLEncoding.DecodeString(token[len(tokenPrefix):])
	return err == nil
}

type ctxKey struct{}

// WithPrincipal returns a context carrying p.
func WithPrincipal(ctx context.Context, p *sarv1.Principal) context.Context {
	return context.WithValue(ctx, ctxKey{}, p)
}

// FromContext returns the principal of the call, or nil.
func FromContext(ctx context.Context) *sarv1.Principal {
	p, _ := ctx.Value(ctxKey{}).(*sarv1.Principal)
	return p
}

// Require returns the call's principal if its role is one of roles,
// else Unauthenticated (no principal) or PermissionDenied.
func Require(ctx context.Context, roles ...sarv1.Role) (*sarv1.Principal, error) {
	p := FromContext(ctx)
	if p == nil {
		return nil, sar.Errorf(sar.KindUnauthenticated, "missing credential")
	}
	for _, r := range roles {
		if p.GetRole() == r {
			return p, nil
		}
	}
	return nil, sar.Errorf(sar.KindPermissionDenied, "a %s credential may not do this", roleName(p.GetRole()))
}

func roleName(r sarv1.Role) string {
	return strings.ToLower(strings.TrimPrefix(r.String(), "ROLE_"))
}

// TeamRef is the "agency/team" form used in Incident.team_refs.
func TeamRef(agency, team string) string { return agency + "/" + team }

// CanSeeIncident reports whether p may read inc at all: admins always,
// operators in their jurisdiction, rescuers whose agency or team is
// assigned, callers their own incident.
func CanSeeIncident(p *sarv1.Principal, inc *sarv1.Incident) bool {
	switch p.GetRole() {
	case sarv1.Role_ROLE_ADMIN:
		return true
	case sarv1.Role_ROLE_OPERATOR:
		return p.GetJurisdiction() == inc.GetJurisdiction()
	case sarv1.Role_ROLE_RESCUER:
		return RescuerAssigned(p, inc)
	case sarv1.Role_ROLE_CALLER:
		return p.GetIncidentId() == inc.GetId()
	}
	return false
}

// RescuerAssigned reports whether the rescuer's agency, or its team, takes
// part in inc.
func RescuerAssigned(p *sarv1.Principal, inc *sarv1.Incident) bool {
	if p.GetRole() != sarv1.Role_ROLE_RESCUER || p.GetAgencyId() == "" {
		return false
	}
	for _, a := range inc.GetAgencyIds() {
		if a == p.GetAgencyId() {
			return true
		}
	}
	if p.GetTeamId() == "" {
		return false
	}
	ref := TeamRef(p.GetAgencyId(), p.GetTeamId())
	for _, t := range inc.GetTeamRefs() {
		if t == ref {
			return true
		}
	}
	return false
}

// CanCommandIncident reports whether p may change inc and watch it:
// admins, and operators of its jurisdiction.
func CanCommandIncident(p *sarv1.Principal, inc *sarv1.Incident) bool {
	switch p.GetRole() {
	case sarv1.Role_ROLE_ADMIN:
		return true
	case sarv1.Role_ROLE_OPERATOR:
		return p.GetJurisdiction() == inc.GetJurisdiction()
	}
	return false
}

// CanReadPositions reports whether p may read the positions and tracks of
// inc's participants: everyone who commands it, and the rescuers assigned
// to it (they must find the caller). A caller may read only its own.
func CanReadPositions(p *sarv1.Principal, inc *sarv1.Incident, participantID string) bool {
	if CanCommandIncident(p, inc) || RescuerAssigned(p, inc) {
		return true
	}
	return p.GetRole() == sarv1.Role_ROLE_CALLER && p.GetIncidentId() == inc.GetId() &&
		p.GetParticipantId() == participantID
}

// CanSeeAgency reports whether p may read agency a.
func CanSeeAgency(p *sarv1.Principal, a *sarv1.Agency) bool {
	switch p.GetRole() {
	case sarv1.Role_ROLE_ADMIN:
		return true
	case sarv1.Role_ROLE_OPERATOR:
		return p.GetJurisdiction() == a.GetJurisdiction()
	case sarv1.Role_ROLE_RESCUER:
		return p.GetAgencyId() == a.GetId()
	}
	return false
}

// CanManageAgency reports whether p may add teams and issue rescuer
// credentials for agency a: admins, and operators of its jurisdiction.
func CanManageAgency(p *sarv1.Principal, a *sarv1.Agency) bool {
	switch p.GetRole() {
	case sarv1.Role_ROLE_ADMIN:
		return true
	case sarv1.Role_ROLE_OPERATOR:
		return p.GetJurisdiction() == a.GetJurisdiction()
	}
	return false
}
