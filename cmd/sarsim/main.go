// Command sarsim replays rescuers and a lost person's phone against a
// running sard, for drills, demos and load: `sarsim drill` sets up
// agencies, teams and an incident, has the lost person's share page report
// over the JSON gateway, has each rescuer's phone stream over gRPC while its
// team sweeps the segments the search plan assigns it, and prints what the
// server made of it.
package main

import (
	"context"
	"fmt"
	"io"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/alecthomas/kong"

	"github.com/mountain-sar/sar/internal/tlsutil"
)

// version is stamped at build time with -ldflags "-X main.version=...".
var version = "dev"

// Globals are the flags every command shares (the same names and
// environment as sarctl's).
type Globals struct {
	Addr     string        `name:"addr" env:"SAR_GRPC_ADDR" default:"127.0.0.1:50051" help:"gRPC address of sard (TLS unless it is loopback: see --tls, --insecure)."`
	HTTPAddr string        `name:"http-addr" env:"SAR_HTTP_ADDR" default:"127.0.0.1:8080" help:"HTTP address of sard's JSON gateway (the share page reports there)."`
	Token    string        `name:"token" env:"SAR_TOKEN" help:"An admin token: the one embedded sard prints at start ('admin token'), or the --admin-token sard was given."`
	Timeout  time.Duration `name:"timeout" env:"SAR_TIMEOUT" default:"10s" help:"Deadline of each unary call."`

	tlsutil.Flags // for both addresses
}

// CLI is sarsim's command line.
type CLI struct {
	Globals

	Drill drillCmd `cmd:"" help:"Play a search: agencies and teams, an incident with a search plan, a lost person's share page, rescuers sweeping their assigned segments; then print a summary."`

	Version kong.VersionFlag `help:"Print the version and exit."`
}

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	var cli CLI
	kctx := kong.Parse(&cli, kong.Name("sarsim"),
		kong.Description("Simulator of sard's users for drills, demos and load: rescuers' phones and a lost person's share page."),
		kong.Vars{"version": version}, kong.UsageOnError(),
		kong.BindTo(ctx, (*context.Context)(nil)),
		kong.BindTo(io.Writer(os.Stdout), (*io.Writer)(nil)))
	if err := kctx.Run(&cli.Globals); err != nil {
		fmt.Fprintln(os.Stderr, "sarsim:", err)
		if usedTLS, _ := cli.Client().UsesTLS(cli.Addr); tlsutil.Hint(err, usedTLS) != "" {
			fmt.Fprintln(os.Stderr, "sarsim:", tlsutil.Hint(err, usedTLS))
		}
		stop()
		os.Exit(1)
	}
}
