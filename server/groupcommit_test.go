package server_test

import (
	"fmt"
	"sync"
	"testing"
	"time"

	sarv1 "github.com/mountain-sar/sar/gen/sar/v1"
)

// Concurrent devices' batches share pipelines to Redis (store's group
// commit); each batch still gets its own outcome: 12 rescuers send 8
// batches of 10 at once, each resends one batch, and every fix is stored
// once, in order, with the resent ones answered as duplicates.
func TestGroupCommittedIngest(t *testing.T) {
	e := startEnv(t)
	op, _, inc := e.officerOnIncident()
	const devices, batches, per = 12, 8, 10
	tokens := make([]string, devices)
	for i := range tokens {
		tokens[i] = e.rescuer("police-north", "")
		e.join(tokens[i], inc.GetId(), fmt.Sprintf("phone-%d", i))
	}
	end := time.Now()
	var wg sync.WaitGroup
	for i := range devices {
		wg.Go(func() {
			dev := fmt.Sprintf("phone-%d", i)
			s, err := e.loc.StreamFixes(e.as(tokens[i]))
			if err != nil {
				t.Errorf("%s: StreamFixes: %v", dev, err)
				return
			}
			defer func() { _ = s.CloseSend() }()
			send := func(b int) *sarv1.FixAck {
				first := uint64(b*per + 1)
				fixes := walk(first, per, end.Add(-time.Duration(batches*per-int(first)-per+1)*10*time.Second))
				if err := s.Send(&sarv1.StreamFixesRequest{Batch: &sarv1.FixBatch{IncidentId: inc.GetId(), DeviceId: dev,
					Fixes: fixes, BatchId: uint64(b + 1)}}); err != nil {
					t.Errorf("%s: Send: %v", dev, err)
					return nil
				}
				r, err := s.Recv()
				if err != nil {
					t.Errorf("%s: Recv: %v", dev, err)
					return nil
				}
				return r.GetAck()
			}
			for b := range batches {
				ack := send(b)
				if ack == nil {
					return
				}
				if len(ack.GetStored()) != per || ack.GetAckedThrough() != uint64((b+1)*per) || len(ack.GetDuplicates()) != 0 {
					t.Errorf("%s batch %d: stored %v, acked through %d, duplicates %v", dev, b, ack.GetStored(), ack.GetAckedThrough(), ack.GetDuplicates())
				}
			}
			if ack := send(batches / 2); ack != nil && (len(ack.GetDuplicates()) != per || len(ack.GetStored()) != 0) {
				t.Errorf("%s: resent batch: stored %v, duplicates %v; want all %d duplicates", dev, ack.GetStored(), ack.GetDuplicates(), per)
			}
		})
	}
	wg.Wait()
	for i := range devices {
		pid := e.participantOf(inc.GetId(), fmt.Sprintf("phone-%d", i))
		fx := e.track(op, inc.GetId(), pid)
		if len(fx) != batches*per {
			t.Errorf("phone-%d: %d fixes in the track, want %d", i, len(fx), batches*per)
			continue
		}
		for k, f := range fx {
			if f.GetSequence() != uint64(k+1) {
				t.Errorf("phone-%d: fix %d has sequence %d", i, k, f.GetSequence())
				break
			}
		}
	}
	if n := e.metric("sar_fixes_stored_total"); n != devices*batches*per {
		t.Errorf("sar_fixes_stored_total = %v, want %d", n, devices*batches*per)
	}
	// Every batch, the resent ones too, went to Redis in a group. (The
	// test cannot make groups of more than one happen on time: the
	// store's test does, with a held pipeline.)
	if n := e.metric("sar_redis_ingest_group_batches_sum"); n != devices*(batches+1) {
		t.Errorf("sar_redis_ingest_group_batches_sum = %v, want %d", n, devices*(batches+1))
	}
}
