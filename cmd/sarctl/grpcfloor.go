package main

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"strings"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/protobuf/types/known/timestamppb"

	sarv1 "github.com/mountain-sar/sar/gen/sar/v1"
)

// The gRPC floor: the same devices, walks, batches and pacing as a bench
// run, sent to a bare gRPC server in a child process that decodes each
// batch and acknowledges every fix as stored (no authorization,
// validation, H3, Redis or NATS). Its CPU per fix is what gRPC and
// protobuf alone cost on this machine for that load; sard's
// cpu_us_per_fix cannot go below it. The child is this executable
// ("sarctl bench grpc-floor-server"), so that its CPU is its own: the
// figure is its user+system time from the operating system when it
// exits (its start, a few milliseconds, included).

// grpcFloorServerCmd serves the bare LocationService until its standard
// input ends. It prints its address on the first line of standard output.
type grpcFloorServerCmd struct {
	Listen string `default:"127.0.0.1:0" help:"Address to listen on (plaintext)."`
}

func (c *grpcFloorServerCmd) Run(w io.Writer) error {
	lis, err := net.Listen("tcp", c.Listen)
	if err != nil {
		return err
	}
	s := grpc.NewServer()
	sarv1.RegisterLocationServiceServer(s, floorLocation{})
	if _, err := fmt.Fprintln(w, lis.Addr()); err != nil {
		return err
	}
	served := make(chan error, 1)
	go func() { served <- s.Serve(lis) }()
	_, _ = io.Copy(io.Discard, os.Stdin) // the parent closes it (or dies)
	s.Stop()
	if err := <-served; err != nil && !errors.Is(err, grpc.ErrServerStopped) {
		return err
	}
	return nil
}

// floorLocation acknowledges every fix of a batch as stored.
type floorLocation struct {
	sarv1.UnimplementedLocationServiceServer
}

func floorAck(b *sarv1.FixBatch) *sarv1.FixAck {
	ack := &sarv1.FixAck{IncidentId: b.GetIncidentId(), DeviceId: b.GetDeviceId(), BatchId: b.GetBatchId(),
		Stored: make([]uint64, 0, len(b.GetFixes())), ServerTime: timestamppb.Now()}
	for _, f := range b.GetFixes() {
		ack.Stored = append(ack.Stored, f.GetSequence())
		ack.AckedThrough = max(ack.AckedThrough, f.GetSequence())
	}
	return ack
}

func (floorLocation) StreamFixes(st sarv1.LocationService_StreamFixesServer) error {
	for {
		req, err := st.Recv()
		if errors.Is(err, io.EOF) {
			return nil
		}
		if err != nil {
			return err
		}
		if err := st.Send(&sarv1.StreamFixesResponse{Ack: floorAck(req.GetBatch())}); err != nil {
			return err
		}
	}
}

func (floorLocation) ReportFixes(_ context.Context, req *sarv1.ReportFixesRequest) (*sarv1.ReportFixesResponse, error) {
	return &sarv1.ReportFixesResponse{Ack: floorAck(req.GetBatch())}, nil
}

// grpcFloor is one run against the bare server.
type grpcFloor struct {
	FixesPerS   float64
	CPUUsPerFix float64
}

// floorServerTimeout bounds the child's start and its exit.
const floorServerTimeout = 10 * time.Second

// runGRPCFloor drives o's devices (o.Rate: 0 unpaced) against a bare
// server started as o.FloorCommand (default: this executable).
func runGRPCFloor(ctx context.Context, o benchOptions) (grpcFloor, error) {
	argv := o.FloorCommand
	if len(argv) == 0 {
		exe, err := os.Executable()
		if err != nil {
			return grpcFloor{}, err
		}
		argv = []string{exe}
	}
	cmd := exec.Command(argv[0], append(argv[1:], "bench", "grpc-floor-server")...)
	cmd.Env = append(os.Environ(), o.FloorEnv...)
	cmd.Stderr = o.Log
	stdin, err := cmd.StdinPipe()
	if err != nil {
		return grpcFloor{}, err
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		return grpcFloor{}, err
	}
	if err := cmd.Start(); err != nil {
		return grpcFloor{}, fmt.Errorf("start the floor server: %w", err)
	}
	exited := false
	defer func() {
		if !exited { // an error before the run ended: do not leave it behind
			_ = cmd.Process.Kill()
			_ = cmd.Wait()
		}
	}()
	line := make(chan string, 1)
	go func() {
		s, _ := bufio.NewReader(stdout).ReadString('\n')
		line <- strings.TrimSpace(s)
		_, _ = io.Copy(io.Discard, stdout)
	}()
	var addr string
	select {
	case addr = <-line:
	case <-time.After(floorServerTimeout):
	case <-ctx.Done():
		return grpcFloor{}, ctx.Err()
	}
	if _, _, err := net.SplitHostPort(addr); err != nil {
		return grpcFloor{}, fmt.Errorf("the floor server did not give its address (got %q)", addr)
	}

	r := newBenchRun(o)
	r.incident = "grpc-floor"
	conns, closeConns, err := dialAll(connCount(o.Conns, o.Devices), func(int) (*grpc.ClientConn, error) {
		return grpc.NewClient(addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	})
	defer closeConns()
	if err != nil {
		return grpcFloor{}, err
	}
	r.addDevices("floor", conns)
	r.start = time.Now()
	elapsed := r.drive(ctx)

	_ = stdin.Close()
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	select {
	case err = <-done:
	case <-time.After(floorServerTimeout):
		_ = cmd.Process.Kill()
		err = <-done
	}
	exited = true
	if err != nil {
		return grpcFloor{}, fmt.Errorf("the floor server: %w", err)
	}
	if n := r.failures.Load() + r.unacked.Load() + r.problems.Load(); n > 0 {
		return grpcFloor{}, fmt.Errorf("%d errors against the floor server: %q", n, r.errSamples)
	}
	stored := r.stored.Load()
	if stored == 0 {
		return grpcFloor{}, errors.New("the floor server stored nothing")
	}
	cpu := cmd.ProcessState.UserTime() + cmd.ProcessState.SystemTime()
	return grpcFloor{FixesPerS: round3(float64(stored) / elapsed.Seconds()),
		CPUUsPerFix: round3(float64(cpu.Microseconds()) / float64(stored))}, nil
}
