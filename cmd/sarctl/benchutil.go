package main

import (
	"bufio"
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	sarv1 "github.com/mountain-sar/sar/gen/sar/v1"

	"github.com/mountain-sar/sar/internal/tlsutil"
)

// Helpers shared by the benches (bench ingest, bench dispatch).

// newRunID returns a fresh run id, "bench-<8 hex digits>": the bench's
// agency ids, request ids and titles start with it.
func newRunID() string {
	var rb [4]byte
	_, _ = rand.Read(rb[:])
	return "bench-" + hex.EncodeToString(rb[:])
}

// retryLimited retries a call refused by the rate limiter (refused before
// the handler ran, so retrying is safe).
func retryLimited(ctx context.Context, fn func(context.Context) error) error {
	wait := 50 * time.Millisecond
	for attempt := 0; ; attempt++ {
		cctx, cancel := context.WithTimeout(ctx, 30*time.Second)
		err := fn(cctx)
		cancel()
		if status.Code(err) != codes.ResourceExhausted || attempt == 30 {
			return err
		}
		select {
		case <-time.After(wait):
		case <-ctx.Done():
			return err
		}
		wait = min(2*wait, time.Second)
	}
}

// parallel runs fn(i) for i in [0, n) on a few workers and returns the
// first error.
func parallel(n, workers int, fn func(i int) error) error {
	var next atomic.Int64
	errs := make([]error, workers)
	var wg sync.WaitGroup
	for w := range workers {
		wg.Go(func() {
			for {
				i := int(next.Add(1) - 1)
				if i >= n || errs[w] != nil {
					return
				}
				errs[w] = fn(i)
			}
		})
	}
	wg.Wait()
	return errors.Join(errs...)
}

// closeBenchIncident closes a bench incident as a false alarm (also after
// Ctrl-C: it outlives ctx's cancellation by up to 10 s), and logs a
// failure rather than returning it.
func closeBenchIncident(ctx context.Context, incidents sarv1.IncidentServiceClient, id, runID string, log io.Writer) {
	cctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 10*time.Second)
	defer cancel()
	if err := retryLimited(cctx, func(ctx context.Context) error {
		_, err := incidents.CloseIncident(ctx, &sarv1.CloseIncidentRequest{IncidentId: id,
			Outcome: sarv1.IncidentOutcome_INCIDENT_OUTCOME_FALSE_ALARM, Note: "sarctl bench run " + runID})
		return err
	}); err != nil {
		fmt.Fprintf(log, "bench: closing incident %s: %v\n", id, err)
	}
}

// scrapeMetrics reads the named samples from a Prometheus text endpoint,
// such as sard's /metrics: a name is matched against the line up to its
// value, so a labelled series is named with its labels as the page
// prints them (client_golang sorts them). A name missing from the page is
// missing from the map. An https page is checked as the
// bench's gRPC connections are (--tls-ca-file, pins, client certificate),
// else against the system's roots.
func scrapeMetrics(ctx context.Context, tc tlsutil.Client, page string, names ...string) (map[string]float64, error) {
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, page, nil)
	if err != nil {
		return nil, err
	}
	client := http.DefaultClient
	if req.URL.Scheme == "https" {
		tc.TLS, tc.Insecure = true, false // the page's scheme says so, loopback or not, whatever --insecure says of gRPC
		cfg, err := tc.Config(req.URL.Host)
		if err != nil {
			return nil, err
		}
		client = &http.Client{Transport: &http.Transport{TLSClientConfig: cfg, Proxy: http.ProxyFromEnvironment}}
		defer client.CloseIdleConnections()
	}
	resp, err := client.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("GET %s: %s", page, resp.Status)
	}
	want := map[string]bool{}
	for _, n := range names {
		want[n] = true
	}
	out := map[string]float64{}
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		name, value, ok := strings.Cut(sc.Text(), " ")
		if !ok || !want[name] {
			continue
		}
		value, _, _ = strings.Cut(value, " ") // a timestamp may follow
		if v, err := strconv.ParseFloat(value, 64); err == nil {
			out[name] = v
		}
	}
	return out, sc.Err()
}

// progressLog is where a bench writes its setup and progress lines:
// stderr, or nowhere with --quiet.
func progressLog(quiet bool) io.Writer {
	if quiet {
		return io.Discard
	}
	return os.Stderr
}

// metricsURL is sard's Prometheus page derived from its --http-addr
// (https unless loopback, as for --addr).
func (g *Globals) metricsURL(httpAddr string) (string, error) {
	scheme, err := g.Client().Scheme(httpAddr)
	if err != nil {
		return "", fmt.Errorf("bench: --http-addr: %w", err)
	}
	return scheme + "://" + httpAddr + "/metrics", nil
}

// report writes a bench's result and fails the command if the run had
// errors.
func report(w io.Writer, asJSON bool, res interface{ write(io.Writer, bool) error }, errs int64) error {
	if err := res.write(w, asJSON); err != nil {
		return err
	}
	if errs > 0 {
		return fmt.Errorf("bench: %d errors", errs)
	}
	return nil
}

// connCount is how many connections devices share with --conns n (0, or
// more than the devices: one each).
func connCount(n, devices int) int {
	if n == 0 || n > devices {
		return devices
	}
	return n
}

// dialAll opens n connections, the i-th by dial(i). closeAll closes those
// opened; call it after an error too.
func dialAll(n int, dial func(i int) (*grpc.ClientConn, error)) ([]*grpc.ClientConn, func(), error) {
	opened := make([]*grpc.ClientConn, 0, n)
	closeAll := func() {
		for _, c := range opened {
			_ = c.Close()
		}
	}
	for i := range n {
		c, err := dial(i)
		if err != nil {
			return nil, closeAll, err
		}
		opened = append(opened, c)
	}
	return opened, closeAll, nil
}
