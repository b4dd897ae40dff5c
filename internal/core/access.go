package core

import (
	"context"
	"errors"
	"strings"
	"time"

	"google.golang.org/protobuf/types/known/timestamppb"

	sarv1 "github.com/mountain-sar/sar/gen/sar/v1"
	"github.com/mountain-sar/sar/internal/auth"
	"github.com/mountain-sar/sar/internal/sar"
)

func timeMs(ms int64) time.Time { return time.UnixMilli(ms) }

// Authenticate resolves a bearer token to its principal. Looked-up
// credentials are trusted for Config.CredentialCache, so a revocation takes
// effect within that time on every replica.
func (s *Service) Authenticate(ctx context.Context, token string) (*sarv1.Principal, error) {
	if !auth.WellFormed(token) {
		return nil, Unauthenticated(sar.CredentialInvalid)
	}
	hash, id := auth.HashToken(token)
	if p, ok := s.creds.get(hash); ok {
		if p.GetExpireTime().AsTime().After(s.now()) {
			return p, nil
		}
		s.creds.del(hash)
		return nil, Unauthenticated(sar.CredentialExpired)
	}
	stored, p, err := s.st.Credential(ctx, id)
	if err != nil && sar.KindOf(err) != sar.KindNotFound {
		return nil, err
	}
	// Unknown, or someone else's id with a forged secret: they learn
	// nothing about the credential. Only the holder of the secret hears
	// whether it was revoked or has expired.
	switch {
	case stored == "" || !auth.EqualHash(stored, hash):
		return nil, Unauthenticated(sar.CredentialInvalid)
	case errors.Is(err, sar.ErrCredentialRevoked):
		return nil, Unauthenticated(sar.CredentialRevoked)
	case errors.Is(err, sar.ErrCredentialExpired):
		return nil, Unauthenticated(sar.CredentialExpired)
	case err != nil:
		return nil, Unauthenticated(sar.CredentialInvalid)
	}
	s.creds.put(hash, p)
	return p, nil
}

// Unauthenticated is the error of a refused credential, with its reason
// (sar.CredentialInvalid, …) as ErrorInfo and a message that says it.
func Unauthenticated(reason string) error {
	msg := "invalid credential"
	switch reason {
	case sar.CredentialExpired:
		msg = "credential expired"
	case sar.CredentialRevoked:
		msg = "credential revoked"
	case sar.CredentialRequired:
		msg = "missing credential: send \"authorization: Bearer <token>\""
	}
	return &sar.Error{Kind: sar.KindUnauthenticated, Message: msg, Reason: reason}
}

// IssueCredential stores a new credential for p and returns its token.
func (s *Service) IssueCredential(ctx context.Context, p *sarv1.Principal, ttl time.Duration) (string, *sarv1.Principal, error) {
	token, hash, id := auth.NewToken()
	now := s.now()
	p.CredentialId, p.CreateTime, p.ExpireTime = id, timestamppb.New(now), timestamppb.New(now.Add(ttl))
	if err := s.st.PutCredential(ctx, hash, p); err != nil {
		return "", nil, err
	}
	return token, p, nil
}

func ttlOf(fv *[]sar.FieldViolation, d interface {
	AsDuration() time.Duration
	CheckValid() error
}, isSet bool, def, max time.Duration) time.Duration {
	if !isSet {
		return def
	}
	if d.CheckValid() != nil || d.AsDuration() < time.Minute || d.AsDuration() > max {
		*fv = append(*fv, sar.Field("ttl", "OUT_OF_RANGE", "ttl must be from 1 minute to %s", max))
		return 0
	}
	return d.AsDuration()
}

// CreateCredential issues an admin, operator or rescuer credential.
func (s *Service) CreateCredential(ctx context.Context, req *sarv1.CreateCredentialRequest) (string, *sarv1.Principal, error) {
	p, err := auth.Require(ctx, sarv1.Role_ROLE_ADMIN, sarv1.Role_ROLE_OPERATOR)
	if err != nil {
		return "", nil, err
	}
	var fv []sar.FieldViolation
	text(&fv, "display_name", req.GetDisplayName(), sar.MaxNameLen, true)
	year := 365 * 24 * time.Hour
	def := 30 * 24 * time.Hour
	if req.GetRole() == sarv1.Role_ROLE_ADMIN {
		def = year
	}
	ttl := ttlOf(&fv, req.GetTtl(), req.Ttl != nil, def, year)
	np := &sarv1.Principal{Role: req.GetRole(), DisplayName: strings.TrimSpace(req.GetDisplayName())}
	switch req.GetRole() {
	case sarv1.Role_ROLE_ADMIN:
		if p.GetRole() != sarv1.Role_ROLE_ADMIN {
			return "", nil, sar.Errorf(sar.KindPermissionDenied, "only admins issue admin credentials")
		}
	case sarv1.Role_ROLE_OPERATOR:
		if p.GetRole() != sarv1.Role_ROLE_ADMIN {
			return "", nil, sar.Errorf(sar.KindPermissionDenied, "only admins issue operator credentials")
		}
		if !sar.ValidSlug(req.GetJurisdiction()) {
			fv = append(fv, sar.Field("jurisdiction", "INVALID", "jurisdiction is required: 1-63 characters of a-z, 0-9, '-' and '_'"))
		}
		np.Jurisdiction = req.GetJurisdiction()
		if req.GetAgencyId() != "" {
			a, err := s.st.Agency(ctx, req.GetAgencyId())
			if err != nil {
				return "", nil, err
			}
			np.AgencyId = a.GetId()
		}
	case sarv1.Role_ROLE_RESCUER:
		a, err := s.st.Agency(ctx, req.GetAgencyId())
		if sar.KindOf(err) == sar.KindNotFound || (err == nil && !auth.CanManageAgency(p, a)) {
			return "", nil, sar.NotFound("agency")
		}
		if err != nil {
			return "", nil, err
		}
		np.AgencyId, np.Jurisdiction = a.GetId(), a.GetJurisdiction()
		if t := req.GetTeamId(); t != "" {
			ok, err := s.st.TeamExists(ctx, a.GetId(), t)
			if err != nil {
				return "", nil, err
			}
			if !sar.ValidSlug(t) || !ok {
				fv = append(fv, sar.Field("team_id", "NOT_FOUND", "the agency has no team %q", t))
			}
			np.TeamId = t
		}
	default:
		fv = append(fv, sar.Field("role", "INVALID", "role must be ROLE_ADMIN, ROLE_OPERATOR or ROLE_RESCUER (callers get share links)"))
	}
	if len(fv) > 0 {
		return "", nil, sar.Invalid("invalid credential", fv...)
	}
	token, np, err := s.IssueCredential(ctx, np, ttl)
	if err == nil {
		s.log.Info("credential issued", "credential", np.GetCredentialId(), "role", np.GetRole().String(), "by", p.GetCredentialId())
	}
	return token, np, err
}

// CreateShareLink makes a caller participant and its share-link credential.
func (s *Service) CreateShareLink(ctx context.Context, req *sarv1.CreateShareLinkRequest) (*sarv1.CreateShareLinkResponse, error) {
	p, inc, err := s.commandedIncident(ctx, req.GetIncidentId())
	if err != nil {
		return nil, err
	}
	var fv []sar.FieldViolation
	text(&fv, "display_name", req.GetDisplayName(), sar.MaxNameLen, false)
	ttl := ttlOf(&fv, req.GetTtl(), req.Ttl != nil, 72*time.Hour, 14*24*time.Hour)
	if len(fv) > 0 {
		return nil, sar.Invalid("invalid share link", fv...)
	}
	if !active(inc) {
		return nil, errNotActive()
	}
	name := strings.TrimSpace(req.GetDisplayName())
	if name == "" {
		name = "Caller"
	}
	part := &sarv1.Participant{Id: sar.NewID(), IncidentId: inc.GetId(), Kind: sarv1.ParticipantKind_PARTICIPANT_KIND_CALLER,
		DisplayName: name, JoinTime: timestamppb.New(s.now()), LinkState: sarv1.CallerLinkState_CALLER_LINK_STATE_CREATED}
	ev := s.newEvent(inc.GetId())
	ev.Payload = &sarv1.Event_ParticipantJoined{ParticipantJoined: &sarv1.ParticipantJoinedEvent{Participant: part,
		Change: sarv1.ParticipantChange_PARTICIPANT_CHANGE_LINK_CREATED}}
	if err := s.st.AddParticipant(ctx, part, ev); err != nil {
		return nil, err
	}
	s.deliver(ctx, ev)
	token, cp, err := s.IssueCredential(ctx, &sarv1.Principal{Role: sarv1.Role_ROLE_CALLER, Jurisdiction: inc.GetJurisdiction(),
		IncidentId: inc.GetId(), ParticipantId: part.GetId(), DisplayName: name}, ttl)
	if err != nil {
		return nil, err
	}
	s.log.Info("share link created", "incident", inc.GetId(), "credential", cp.GetCredentialId(), "by", p.GetCredentialId())
	path := s.cfg.ShareBasePath + "#" + token
	url := strings.TrimSuffix(s.cfg.PublicURL, "/") + path
	qr, err := qrSVG(url)
	if err != nil { // a URL of a few hundred bytes always fits a QR code
		return nil, sar.Wrap(sar.KindInternal, err, "share link QR code")
	}
	return &sarv1.CreateShareLinkResponse{Token: token, UrlPath: path, Principal: cp, Participant: part,
		Url: url, Texts: shareTexts(url, ttl), QrSvg: qr}, nil
}

// RevokeCredential revokes a credential the caller could have issued.
func (s *Service) RevokeCredential(ctx context.Context, id string) error {
	p, err := auth.Require(ctx, sarv1.Role_ROLE_ADMIN, sarv1.Role_ROLE_OPERATOR)
	if err != nil {
		return err
	}
	if len(id) != 24 || strings.Trim(id, "0123456789abcdef") != "" {
		return sar.Invalid("invalid credential id", sar.Field("credential_id", "INVALID", "credential_id is 24 hex digits"))
	}
	_, target, err := s.st.Credential(ctx, id)
	if err != nil {
		return err
	}
	allowed := p.GetRole() == sarv1.Role_ROLE_ADMIN ||
		(target.GetRole() != sarv1.Role_ROLE_ADMIN && target.GetRole() != sarv1.Role_ROLE_OPERATOR &&
			target.GetJurisdiction() == p.GetJurisdiction())
	if !allowed {
		return sar.NotFound("credential")
	}
	if err := s.st.DeleteCredential(ctx, id); err != nil {
		return err
	}
	s.forgetCredential(id)
	s.log.Info("credential revoked", "credential", id, "by", p.GetCredentialId())
	return nil
}

// forgetCredential drops a revoked credential from this replica's cache.
func (s *Service) forgetCredential(id string) {
	s.creds.mu.Lock()
	defer s.creds.mu.Unlock()
	for k, e := range s.creds.m {
		if e.v.GetCredentialId() == id {
			delete(s.creds.m, k)
		}
	}
}
