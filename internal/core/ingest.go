package core

import (
	"cmp"
	"context"
	"fmt"
	"slices"
	"time"

	"google.golang.org/protobuf/encoding/protowire"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"

	sarv1 "github.com/mountain-sar/sar/gen/sar/v1"
	"github.com/mountain-sar/sar/geo"
	"github.com/mountain-sar/sar/internal/auth"
	"github.com/mountain-sar/sar/internal/sar"
)

// checkBatchShape refuses a batch that cannot be processed at all.
func checkBatchShape(b *sarv1.FixBatch) error {
	var fv []sar.FieldViolation
	if b == nil {
		return sar.Invalid("batch is required", sar.Field("batch", "REQUIRED", "batch is required"))
	}
	if !sar.ValidID(b.GetIncidentId()) {
		fv = append(fv, sar.Field("batch.incident_id", "INVALID", "incident_id must be an incident id"))
	}
	if !sar.ValidDeviceID(b.GetDeviceId()) {
		fv = append(fv, sar.Field("batch.device_id", "INVALID", "device_id must be 1-64 characters of A-Z, a-z, 0-9, '-' and '_'"))
	}
	if n := len(b.GetFixes()); n > sar.MaxBatchFixes {
		return &sar.Error{Kind: sar.KindResourceExhausted, Message: fmt.Sprintf("batch has %d fixes, at most %d are allowed", n, sar.MaxBatchFixes),
			Fields: []sar.FieldViolation{sar.Field("batch.fixes", "TOO_MANY", "at most %d fixes per batch", sar.MaxBatchFixes)}}
	}
	if len(fv) > 0 {
		return sar.Invalid("invalid batch", fv...)
	}
	return nil
}

// incident returns an incident for the hot path, from a cache of a few
// seconds: the fields ingest needs (resolution, times, assignments) change
// rarely, and the state that matters (open or closed) is checked again
// inside the atomic store step.
func (s *Service) incident(ctx context.Context, id string) (*sarv1.Incident, error) {
	if inc, ok := s.incs.get(id); ok {
		return inc, nil
	}
	inc, _, err := s.st.GetIncident(ctx, id)
	if err != nil {
		return nil, err
	}
	s.incs.put(id, inc)
	return inc, nil
}

// owns checks that the principal may report for the device: the device is
// bound to the principal's own participant. Bindings never change, so a
// positive answer is cached.
func (s *Service) owns(ctx context.Context, p *sarv1.Principal, incidentID, deviceID string) (string, error) {
	key := incidentID + "\x00" + deviceID + "\x00" + p.GetCredentialId()
	if pid, ok := s.owner.get(key); ok {
		return pid, nil
	}
	devPart, credPart, err := s.st.DeviceOwner(ctx, incidentID, deviceID, p.GetCredentialId())
	if err != nil {
		return "", err
	}
	if devPart == "" {
		return "", sar.Errorf(sar.KindFailedPrecondition, "device has not joined the incident (call JoinIncident)")
	}
	mine := credPart
	if p.GetRole() == sarv1.Role_ROLE_CALLER {
		mine = p.GetParticipantId()
	}
	if devPart != mine {
		return "", sar.Errorf(sar.KindPermissionDenied, "device belongs to another participant")
	}
	s.owner.put(key, devPart)
	return devPart, nil
}

// A DeviceStream is what the ingest of one device's stream keeps from
// batch to batch: the cell of its last fix (a phone's next batch is most
// often in it, and is then placed without H3). The zero value is ready;
// it is not safe for concurrent use.
type DeviceStream struct {
	cells geo.CellFinder
}

// Ingest validates, authorizes and stores one batch, then publishes the
// positions event. It returns the acknowledgement, or an error for a batch
// that was refused whole (nothing of it is stored then).
func (s *Service) Ingest(ctx context.Context, p *sarv1.Principal, b *sarv1.FixBatch) (ack *sarv1.FixAck, err error) {
	return s.IngestOn(ctx, &DeviceStream{}, p, b)
}

// IngestOn is Ingest for a batch of a device's stream st.
func (s *Service) IngestOn(ctx context.Context, st *DeviceStream, p *sarv1.Principal, b *sarv1.FixBatch) (ack *sarv1.FixAck, err error) {
	start := time.Now()
	defer func() {
		outcome := "ok"
		if err != nil {
			outcome = sar.KindOf(err).String()
		}
		s.met.Batches.WithLabelValues(outcome).Inc()
		s.met.IngestSeconds.Observe(time.Since(start).Seconds())
	}()
	if p.GetRole() != sarv1.Role_ROLE_RESCUER && p.GetRole() != sarv1.Role_ROLE_CALLER {
		return nil, sar.Errorf(sar.KindPermissionDenied, "only rescuer and caller credentials report fixes")
	}
	if err := checkBatchShape(b); err != nil {
		return nil, err
	}
	inc, err := s.incident(ctx, b.GetIncidentId())
	if err != nil {
		return nil, err
	}
	if !auth.CanSeeIncident(p, inc) {
		return nil, sar.NotFound("incident")
	}
	pid, err := s.owns(ctx, p, inc.GetId(), b.GetDeviceId())
	if err != nil {
		return nil, err
	}
	chk := checkFixes(b.GetFixes(), s.window(inc), int(inc.GetSearchResolution()), &st.cells)
	if skip := b.GetSkippedThrough(); skip > sar.MaxSequence {
		return nil, sar.Invalid("invalid batch", sar.Field("batch.skipped_through", "OUT_OF_RANGE",
			"skipped_through must be at most 2^53-1 (sequences are at most that)"))
	}
	if skip := b.GetSkippedThrough(); skip > 0 && len(chk.entries) > 0 && skip >= chk.entries[0].Sequence {
		return nil, sar.Invalid("invalid batch", sar.Field("batch.skipped_through", "NOT_BELOW_BATCH",
			"skipped_through must be below the batch's first sequence %d", chk.entries[0].Sequence))
	}
	queue := sar.WorkCoverage // the search work the batch makes, queued with it (searchwork.go)
	if p.GetRole() == sarv1.Role_ROLE_CALLER {
		queue = sar.WorkFollow
	}
	res, err := s.st.Ingest(ctx, sar.IngestArgs{
		IncidentID: inc.GetId(), ParticipantID: pid, DeviceID: b.GetDeviceId(),
		SkippedThrough: b.GetSkippedThrough(), Fixes: chk.entries, Queue: queue, NowMs: s.now().UnixMilli(),
	})
	if err != nil {
		if sar.KindOf(err) == sar.KindFailedPrecondition {
			s.incs.del(inc.GetId()) // closed: drop the cached copy
		}
		if res.Queued { // stored but not confirmed (replicas): the device resends, the work is queued
			s.work.kick(inc.GetId())
		}
		return nil, err
	}
	ack = &sarv1.FixAck{IncidentId: inc.GetId(), DeviceId: b.GetDeviceId(), BatchId: b.GetBatchId(),
		AckedThrough: res.AckedThrough, ServerTime: timestamppb.New(s.now())}
	// Each fix of the batch is named exactly once.
	stored := make([]*sarv1.LocationFix, 0, len(chk.entries))
	storedPb := make([][]byte, 0, len(chk.entries))
	ack.Stored = make([]uint64, 0, len(chk.entries))
	for _, en := range chk.entries {
		switch seq := en.Sequence; {
		case seq <= res.AckedBefore:
			ack.Duplicates = append(ack.Duplicates, seq)
		case seq > res.AckedThrough:
			ack.Rejected = append(ack.Rejected, reject(seq, sarv1.RejectReason_REJECT_REASON_SEQUENCE_GAP, "batch.fixes", "GAP",
				"sequence %d follows a gap: resend from %d", seq, res.AckedThrough+1))
		case en.Fix == nil:
			ack.Rejected = append(ack.Rejected, chk.refused[seq])
		default:
			ack.Stored = append(ack.Stored, seq)
			ack.Cell = en.Fix.GetCell() // entries are in sequence order: the highest wins
			stored = append(stored, en.Fix)
			storedPb = append(storedPb, en.Pb)
		}
	}
	ack.Duplicates = append(ack.Duplicates, chk.repeats...)
	ack.Rejected = append(ack.Rejected, chk.badSeq...)
	slices.Sort(ack.Duplicates)
	slices.SortStableFunc(ack.Rejected, func(a, b *sarv1.FixRejection) int { return cmp.Compare(a.GetSequence(), b.GetSequence()) })
	s.met.FixesStored.Add(float64(len(ack.Stored)))
	s.met.FixesDuplicate.Add(float64(len(ack.Duplicates)))
	for _, r := range ack.Rejected {
		s.met.FixesRejected.WithLabelValues(r.GetReason().String()).Inc()
	}
	if res.Queued {
		s.work.kick(inc.GetId()) // after the ack: the device does not wait for the search work
	}
	if len(stored) > 0 {
		if err := s.publishPositions(s.newEvent(inc.GetId()), s.positions(p, pid, b, nil, res), stored, storedPb); err != nil {
			s.met.PublishErrors.Inc()
			s.log.Warn("positions event not published", "incident", inc.GetId(), "err", err)
		}
	}
	return ack, nil
}

func (s *Service) positions(p *sarv1.Principal, pid string, b *sarv1.FixBatch, stored []*sarv1.LocationFix, res sar.IngestResult) *sarv1.PositionsEvent {
	pe := &sarv1.PositionsEvent{ParticipantId: pid, DeviceId: b.GetDeviceId(), Fixes: stored,
		LastFix: res.Last, LastFixChanged: res.LastChanged, BatchId: b.GetBatchId()}
	if p.GetRole() == sarv1.Role_ROLE_CALLER {
		pe.Kind = sarv1.ParticipantKind_PARTICIPANT_KIND_CALLER
	} else {
		pe.Kind = sarv1.ParticipantKind_PARTICIPANT_KIND_RESCUER
		pe.AgencyId, pe.TeamId = p.GetAgencyId(), p.GetTeamId()
	}
	return pe
}

// encodedPublisher is a Publisher that can publish a live event already
// encoded (dispatch.Bus): the positions event reuses the bytes of its
// fixes made once for the track instead of encoding every fix again.
type encodedPublisher interface {
	PublishLiveEncoded(ev *sarv1.Event, data []byte) error
}

var (
	eventPositionsField = (&sarv1.Event{}).ProtoReflect().Descriptor().Fields().ByName("positions").Number()
	positionsFixesField = (&sarv1.PositionsEvent{}).ProtoReflect().Descriptor().Fields().ByName("fixes").Number()
)

// publishPositions sets pe's fixes to stored and publishes ev carrying pe.
// pbs[i] is stored[i]'s wire encoding (or empty); when all are there and
// the bus takes encoded events, the event's bytes are put together from
// them (encodePositions) rather than encoding each fix a second time.
func (s *Service) publishPositions(ev *sarv1.Event, pe *sarv1.PositionsEvent, stored []*sarv1.LocationFix, pbs [][]byte) error {
	ep, ok := s.bus.(encodedPublisher)
	var data []byte
	if ok && !slices.ContainsFunc(pbs, func(b []byte) bool { return len(b) == 0 }) {
		var err error
		if data, err = encodePositions(ev, pe, pbs); err != nil {
			data = nil // encode the whole event the ordinary way below
		}
	}
	pe.Fixes = stored
	ev.Payload = &sarv1.Event_Positions{Positions: pe}
	if data == nil {
		return s.bus.PublishLive(ev)
	}
	return ep.PublishLiveEncoded(ev, data)
}

// encodePositions is the wire encoding of ev with the payload pe holding
// the fixes whose encodings are fixPbs, built from those bytes: ev and pe
// (both without fixes or payload yet) are encoded, and the positions
// field and each fixes field appended by hand. Fields out of number order
// and a message's fields split are valid protobuf: any reader decodes
// the same event as from proto.Marshal of the whole.
func encodePositions(ev *sarv1.Event, pe *sarv1.PositionsEvent, fixPbs [][]byte) ([]byte, error) {
	if ev.GetPayload() != nil || len(pe.GetFixes()) > 0 {
		return nil, fmt.Errorf("encodePositions: event already has a payload or fixes")
	}
	peLen := proto.Size(pe)
	for _, b := range fixPbs {
		peLen += protowire.SizeTag(positionsFixesField) + protowire.SizeBytes(len(b))
	}
	head := proto.Size(ev)
	out := make([]byte, 0, head+protowire.SizeTag(eventPositionsField)+protowire.SizeBytes(peLen))
	out, err := proto.MarshalOptions{UseCachedSize: true}.MarshalAppend(out, ev)
	if err != nil {
		return nil, err
	}
	out = protowire.AppendTag(out, eventPositionsField, protowire.BytesType)
	out = protowire.AppendVarint(out, uint64(peLen))
	if out, err = (proto.MarshalOptions{UseCachedSize: true}).MarshalAppend(out, pe); err != nil {
		return nil, err
	}
	for _, b := range fixPbs {
		out = protowire.AppendTag(out, positionsFixesField, protowire.BytesType)
		out = protowire.AppendBytes(out, b)
	}
	if len(out) != cap(out) { // the sizes above and the encoding disagree: never publish a garbled event
		return nil, fmt.Errorf("encodePositions: %d bytes, %d expected", len(out), cap(out))
	}
	return out, nil
}
