// Command sarctl is the operator and benchmark CLI of the search-and-rescue
// server (sard): it makes admin tokens, calls the admin RPCs and prints
// their answers as protojson, follows an incident's live events, and load
// tests location ingest with simulated rescuer devices (bench ingest) and
// task delivery and escalation (bench dispatch).
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
	"google.golang.org/grpc"
	"google.golang.org/grpc/metadata"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"

	"github.com/mountain-sar/sar/internal/auth"
	"github.com/mountain-sar/sar/internal/tlsutil"
)

// version is stamped at build time with -ldflags "-X main.version=...".
var version = "dev"

// Globals are the flags every command shares.
type Globals struct {
	Addr    string        `name:"addr" env:"SAR_GRPC_ADDR" default:"127.0.0.1:50051" help:"gRPC address of sard (TLS unless it is loopback: see --tls, --insecure)."`
	Token   string        `name:"token" env:"SAR_TOKEN" help:"Bearer token to call with: an admin token (from 'sarctl token', given to 'sard --admin-token') or an operator credential. Not needed by 'sarctl token'."`
	Timeout time.Duration `name:"timeout" env:"SAR_TIMEOUT" default:"10s" help:"Deadline of each unary call."`

	tlsutil.Flags
}

// CLI is sarctl's command line.
type CLI struct {
	Globals

	NewToken   tokenCmd      `cmd:"" name:"token" help:"Print a fresh, well-formed admin token (256 random bits) for 'sard --admin-token'."`
	WhoAmI     whoamiCmd     `cmd:"" name:"whoami" help:"Describe the credential of --token."`
	Agency     agencyCmd     `cmd:"" help:"Manage agencies (admin)."`
	Team       teamCmd       `cmd:"" help:"Manage teams of an agency."`
	Credential credentialCmd `cmd:"" help:"Issue credentials."`
	Incident   incidentCmd   `cmd:"" help:"Open, list, read and close incidents."`
	Link       linkCmd       `cmd:"" help:"Location-share links for a lost person: create (link, SMS text, QR code) and revoke."`
	Watch      watchCmd      `cmd:"" help:"Follow an incident's live events: one JSON line per message until Ctrl-C."`
	Search     searchCmd     `cmd:"" help:"An incident's search plan: grid, clues, segments and task suggestions."`
	Bench      benchCmd      `cmd:"" help:"Load tests against a running sard."`
	NATSAuth   natsAuthCmd   `cmd:"" name:"nats-auth" help:"Write the NATS users of the registered agencies (nkeys; admin): a nats-server authorization include file, and a seed file per agency and for sard."`

	Version kong.VersionFlag `help:"Print the version and exit."`
}

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	var cli CLI
	kctx := kong.Parse(&cli, kong.Name("sarctl"),
		kong.Description("Operator and benchmark CLI of sard, the search-and-rescue coordination server. "+
			"Commands that call the server print its answers as protojson on stdout."),
		kong.Vars{"version": version}, kong.UsageOnError(),
		kong.BindTo(ctx, (*context.Context)(nil)),
		kong.BindTo(io.Writer(os.Stdout), (*io.Writer)(nil)))
	if err := kctx.Run(&cli.Globals); err != nil {
		fmt.Fprintln(os.Stderr, "sarctl:", err)
		if usedTLS, _ := cli.Client().UsesTLS(cli.Addr); tlsutil.Hint(err, usedTLS) != "" {
			fmt.Fprintln(os.Stderr, "sarctl:", tlsutil.Hint(err, usedTLS))
		}
		stop()
		os.Exit(1)
	}
}

type tokenCmd struct{}

func (tokenCmd) Run(w io.Writer) error {
	token, _, _ := auth.NewToken()
	_, err := fmt.Fprintln(w, token)
	return err
}

// dial opens a (lazy) gRPC connection, secured as c says.
func dial(c tlsutil.Client, addr string) (*grpc.ClientConn, error) {
	creds, err := c.GRPCDialOption(addr)
	if err != nil {
		return nil, err
	}
	cc, err := grpc.NewClient(addr, creds)
	if err != nil {
		return nil, fmt.Errorf("dial %s: %w", addr, err)
	}
	return cc, nil
}

// withToken returns ctx carrying the bearer token as call metadata.
func withToken(ctx context.Context, token string) context.Context {
	if token == "" { // a client certificate, or a refusal that says a token is missing
		return ctx
	}
	return metadata.AppendToOutgoingContext(ctx, "authorization", "Bearer "+token)
}

// call dials the server, makes one unary call with the token and a
// deadline, and prints the answer as indented protojson.
func (g *Globals) call(ctx context.Context, w io.Writer, fn func(context.Context, *grpc.ClientConn) (proto.Message, error)) error {
	cc, err := dial(g.Client(), g.Addr)
	if err != nil {
		return err
	}
	defer cc.Close()
	ctx, cancel := context.WithTimeout(withToken(ctx, g.Token), g.Timeout)
	defer cancel()
	m, err := fn(ctx, cc)
	if err != nil {
		return err
	}
	b, err := protojson.MarshalOptions{Multiline: true, Indent: "  "}.Marshal(m)
	if err != nil {
		return err
	}
	_, err = fmt.Fprintf(w, "%s\n", b)
	return err
}
