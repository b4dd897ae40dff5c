package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"
	"time"

	qrcode "github.com/skip2/go-qrcode"
	"google.golang.org/grpc"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/durationpb"

	sarv1 "github.com/mountain-sar/sar/gen/sar/v1"
)

// enumValue maps a CLI spelling ("police-station") to a proto enum value
// (AGENCY_KIND_POLICE_STATION); kong's enum tags have checked the spelling.
func enumValue(values map[string]int32, prefix, s string) int32 {
	return values[prefix+strings.ToUpper(strings.ReplaceAll(s, "-", "_"))]
}

func durationOrNil(d time.Duration) *durationpb.Duration {
	if d == 0 {
		return nil
	}
	return durationpb.New(d)
}

type whoamiCmd struct{}

func (whoamiCmd) Run(ctx context.Context, g *Globals, w io.Writer) error {
	return g.call(ctx, w, func(ctx context.Context, cc *grpc.ClientConn) (proto.Message, error) {
		return sarv1.NewAuthServiceClient(cc).WhoAmI(ctx, &sarv1.WhoAmIRequest{})
	})
}

type agencyCmd struct {
	Create agencyCreateCmd `cmd:"" help:"Register an agency (admin)."`
	List   agencyListCmd   `cmd:"" help:"List the agencies the credential may see."`
}

type agencyCreateCmd struct {
	ID           string `name:"id" required:"" help:"Agency id: 1-63 characters of a-z, 0-9, '-' and '_' (it appears in NATS subjects)."`
	Name         string `required:"" help:"Display name."`
	Kind         string `required:"" enum:"police-station,volunteer-rescue,fire-brigade,township-command,villagers,other" help:"What the agency is: ${enum}."`
	Jurisdiction string `required:"" help:"Jurisdiction the agency belongs to (same alphabet as --id)."`
}

func (c *agencyCreateCmd) Run(ctx context.Context, g *Globals, w io.Writer) error {
	return g.call(ctx, w, func(ctx context.Context, cc *grpc.ClientConn) (proto.Message, error) {
		return sarv1.NewAgencyServiceClient(cc).CreateAgency(ctx, &sarv1.CreateAgencyRequest{Agency: &sarv1.Agency{
			Id: c.ID, Name: c.Name, Jurisdiction: c.Jurisdiction,
			Kind: sarv1.AgencyKind(enumValue(sarv1.AgencyKind_value, "AGENCY_KIND_", c.Kind))}})
	})
}

type agencyListCmd struct {
	Jurisdiction string `help:"Only agencies of this jurisdiction."`
}

func (c *agencyListCmd) Run(ctx context.Context, g *Globals, w io.Writer) error {
	return g.call(ctx, w, func(ctx context.Context, cc *grpc.ClientConn) (proto.Message, error) {
		return sarv1.NewAgencyServiceClient(cc).ListAgencies(ctx, &sarv1.ListAgenciesRequest{Jurisdiction: c.Jurisdiction})
	})
}

type teamCmd struct {
	Create teamCreateCmd `cmd:"" help:"Add a team to an agency (admins, operators of the agency's jurisdiction)."`
}

type teamCreateCmd struct {
	Agency string `required:"" help:"Agency id."`
	ID     string `name:"id" required:"" help:"Team id, unique within the agency (same alphabet as agency ids)."`
	Name   string `required:"" help:"Display name."`
}

func (c *teamCreateCmd) Run(ctx context.Context, g *Globals, w io.Writer) error {
	return g.call(ctx, w, func(ctx context.Context, cc *grpc.ClientConn) (proto.Message, error) {
		return sarv1.NewAgencyServiceClient(cc).CreateTeam(ctx, &sarv1.CreateTeamRequest{Team: &sarv1.Team{
			Id: c.ID, AgencyId: c.Agency, Name: c.Name}})
	})
}

type credentialCmd struct {
	Create credentialCreateCmd `cmd:"" help:"Issue a credential; the token is printed once (the server keeps only its hash)."`
}

type credentialCreateCmd struct {
	Role         string        `required:"" enum:"admin,operator,rescuer" help:"Role: ${enum}. Admins issue any; operators issue rescuers of their jurisdiction's agencies."`
	Agency       string        `help:"Rescuer: its agency (required). Operator: optionally its own agency."`
	Team         string        `help:"Rescuer: optionally its team within --agency."`
	Jurisdiction string        `help:"Operator: the jurisdiction it commands (required). Rescuers take their agency's."`
	Name         string        `required:"" help:"Name of the person or system the credential is for."`
	TTL          time.Duration `name:"ttl" help:"Lifetime (1m to 8760h); default 30 days (operators, rescuers) or 1 year (admins)."`
}

func (c *credentialCreateCmd) Run(ctx context.Context, g *Globals, w io.Writer) error {
	return g.call(ctx, w, func(ctx context.Context, cc *grpc.ClientConn) (proto.Message, error) {
		return sarv1.NewAuthServiceClient(cc).CreateCredential(ctx, &sarv1.CreateCredentialRequest{
			Role:     sarv1.Role(enumValue(sarv1.Role_value, "ROLE_", c.Role)),
			AgencyId: c.Agency, TeamId: c.Team, Jurisdiction: c.Jurisdiction, DisplayName: c.Name, Ttl: durationOrNil(c.TTL)})
	})
}

type incidentCmd struct {
	Create incidentCreateCmd `cmd:"" help:"Open an incident (operators in their jurisdiction, admins)."`
	List   incidentListCmd   `cmd:"" help:"List the incidents the credential may see, newest first."`
	Get    incidentGetCmd    `cmd:"" help:"Show one incident."`
	Close  incidentCloseCmd  `cmd:"" help:"Close an open incident; its precise positions then expire after the server's retention."`
}

type incidentCreateCmd struct {
	Title        string   `required:"" help:"Title (at most 200 characters)."`
	Jurisdiction string   `help:"Jurisdiction; required for admins, an operator's own by default."`
	Lat          *float64 `help:"Initial planning point latitude (where the subject was last seen), degrees WGS84."`
	Lng          *float64 `help:"Initial planning point longitude, degrees WGS84."`
	Accuracy     float64  `help:"Accuracy radius of the initial planning point, metres."`
	Agency       []string `help:"Agency to assign at once (repeat the flag or separate with commas)."`
	Category     string   `default:"unspecified" enum:"unspecified,hiker,child,dementia,hunter,climber,mountain-biker,skier,gatherer,runner,despondent,other" help:"Lost-person category of the subject: ${enum}."`
	People       int32    `default:"1" help:"Number of people lost."`
	Resolution   int32    `help:"H3 resolution of search cells (5-12); 0 for the server default."`
	RequestID    string   `name:"request-id" help:"Idempotency key: retries with the same key return the same incident."`
}

func (c *incidentCreateCmd) Run(ctx context.Context, g *Globals, w io.Writer) error {
	req := &sarv1.CreateIncidentRequest{Title: c.Title, Jurisdiction: c.Jurisdiction, AgencyIds: c.Agency,
		SearchResolution: c.Resolution, RequestId: c.RequestID,
		Subject: &sarv1.SubjectProfile{NumberOfPeople: c.People,
			Category: sarv1.SubjectCategory(enumValue(sarv1.SubjectCategory_value, "SUBJECT_CATEGORY_", c.Category))}}
	if (c.Lat == nil) != (c.Lng == nil) {
		return errors.New("give both --lat and --lng, or neither")
	}
	if c.Lat != nil {
		req.InitialPlanningPoint = &sarv1.PlanningPoint{Position: &sarv1.LatLng{Lat: *c.Lat, Lng: *c.Lng}, AccuracyM: c.Accuracy}
	}
	return g.call(ctx, w, func(ctx context.Context, cc *grpc.ClientConn) (proto.Message, error) {
		return sarv1.NewIncidentServiceClient(cc).CreateIncident(ctx, req)
	})
}

type incidentListCmd struct {
	State        string `default:"all" enum:"all,open,closed" help:"Only incidents in this state: ${enum}."`
	Jurisdiction string `help:"Admins: only this jurisdiction."`
	PageSize     int32  `default:"50" help:"At most this many (1-500)."`
	PageToken    string `help:"next_page_token of a previous answer."`
}

func (c *incidentListCmd) Run(ctx context.Context, g *Globals, w io.Writer) error {
	var st sarv1.IncidentState
	if c.State != "all" {
		st = sarv1.IncidentState(enumValue(sarv1.IncidentState_value, "INCIDENT_STATE_", c.State))
	}
	return g.call(ctx, w, func(ctx context.Context, cc *grpc.ClientConn) (proto.Message, error) {
		return sarv1.NewIncidentServiceClient(cc).ListIncidents(ctx, &sarv1.ListIncidentsRequest{
			State: st, Jurisdiction: c.Jurisdiction, PageSize: c.PageSize, PageToken: c.PageToken})
	})
}

type incidentGetCmd struct {
	ID string `arg:"" help:"Incident id."`
}

func (c *incidentGetCmd) Run(ctx context.Context, g *Globals, w io.Writer) error {
	return g.call(ctx, w, func(ctx context.Context, cc *grpc.ClientConn) (proto.Message, error) {
		return sarv1.NewIncidentServiceClient(cc).GetIncident(ctx, &sarv1.GetIncidentRequest{IncidentId: c.ID})
	})
}

type incidentCloseCmd struct {
	ID      string `arg:"" help:"Incident id."`
	Outcome string `required:"" enum:"found-alive,found-deceased,self-rescued,suspended,false-alarm" help:"How it ended: ${enum}."`
	Note    string `help:"Closing remark."`
}

func (c *incidentCloseCmd) Run(ctx context.Context, g *Globals, w io.Writer) error {
	return g.call(ctx, w, func(ctx context.Context, cc *grpc.ClientConn) (proto.Message, error) {
		return sarv1.NewIncidentServiceClient(cc).CloseIncident(ctx, &sarv1.CloseIncidentRequest{IncidentId: c.ID,
			Outcome: sarv1.IncidentOutcome(enumValue(sarv1.IncidentOutcome_value, "INCIDENT_OUTCOME_", c.Outcome)), Note: c.Note})
	})
}

type linkCmd struct {
	Create linkCreateCmd `cmd:"" help:"Make a location-share link for the lost person of an incident: prints the link, the text to send by SMS (Chinese and English) and a QR code to scan from the screen."`
	Revoke linkRevokeCmd `cmd:"" help:"Switch a share link off (its page then says so)."`
}

type linkCreateCmd struct {
	ID   string        `arg:"" help:"Incident id."`
	Name string        `help:"Name to show for the caller, e.g. \"Caller (mother)\"."`
	TTL  time.Duration `name:"ttl" help:"How long the link works (1m to 336h); default 72h."`
	SVG  string        `name:"svg" type:"path" help:"Also write the QR code as an SVG file here."`
	JSON bool          `name:"json" help:"Print the whole response as JSON (token, participant, texts, QR SVG) instead."`
}

func (c *linkCreateCmd) Run(ctx context.Context, g *Globals, w io.Writer) error {
	cc, err := dial(g.Client(), g.Addr)
	if err != nil {
		return err
	}
	defer cc.Close()
	ctx, cancel := context.WithTimeout(withToken(ctx, g.Token), g.Timeout)
	defer cancel()
	res, err := sarv1.NewAuthServiceClient(cc).CreateShareLink(ctx, &sarv1.CreateShareLinkRequest{
		IncidentId: c.ID, DisplayName: c.Name, Ttl: durationOrNil(c.TTL)})
	if err != nil {
		return err
	}
	if c.SVG != "" {
		if err := os.WriteFile(c.SVG, []byte(res.GetQrSvg()), 0o600); err != nil {
			return err
		}
	}
	if c.JSON {
		b, err := protojson.MarshalOptions{Multiline: true, Indent: "  "}.Marshal(res)
		if err != nil {
			return err
		}
		_, err = fmt.Fprintf(w, "%s\n", b)
		return err
	}
	return printLink(w, res)
}

// printLink shows a share link the way an officer on the phone needs it:
// the link, the texts to paste into an SMS, and a QR code that a phone
// held to the screen can scan.
func printLink(w io.Writer, res *sarv1.CreateShareLinkResponse) error {
	var b strings.Builder
	fmt.Fprintf(&b, "Share link for %s (participant %s, credential %s, valid until %s):\n\n  %s\n\n",
		res.GetParticipant().GetDisplayName(), res.GetParticipant().GetId(), res.GetPrincipal().GetCredentialId(),
		res.GetPrincipal().GetExpireTime().AsTime().Local().Format("2006-01-02 15:04 MST"), res.GetUrl())
	for _, t := range res.GetTexts() {
		fmt.Fprintf(&b, "SMS (%s):\n%s\n\n", t.GetLanguage(), t.GetText())
	}
	q, err := qrcode.New(res.GetUrl(), qrcode.Medium)
	if err != nil {
		return err
	}
	b.WriteString(q.ToSmallString(false))
	fmt.Fprintf(&b, "\nRevoke with: sarctl link revoke %s\n", res.GetPrincipal().GetCredentialId())
	_, err = io.WriteString(w, b.String())
	return err
}

type linkRevokeCmd struct {
	CredentialID string `arg:"" name:"credential-id" help:"The link's credential id (printed by 'link create')."`
}

func (c *linkRevokeCmd) Run(ctx context.Context, g *Globals, w io.Writer) error {
	return g.call(ctx, w, func(ctx context.Context, cc *grpc.ClientConn) (proto.Message, error) {
		return sarv1.NewAuthServiceClient(cc).RevokeCredential(ctx, &sarv1.RevokeCredentialRequest{CredentialId: c.CredentialID})
	})
}

type watchCmd struct {
	ID  string        `arg:"" help:"Incident id."`
	For time.Duration `name:"for" default:"24h" help:"Stop watching after this long (sard needs a deadline on the stream)."`
}

// Run prints the snapshot and then every event as one JSON line, until
// Ctrl-C or the server ends the stream.
func (c *watchCmd) Run(ctx context.Context, g *Globals, w io.Writer) error {
	cc, err := dial(g.Client(), g.Addr)
	if err != nil {
		return err
	}
	defer cc.Close()
	// A deadline is required: sard (dispatch.Bus.Watch) flushes its NATS
	// subscription with the stream's context, which fails without one.
	ctx, cancel := context.WithTimeout(ctx, c.For)
	defer cancel()
	stream, err := sarv1.NewIncidentServiceClient(cc).WatchIncident(withToken(ctx, g.Token), &sarv1.WatchIncidentRequest{IncidentId: c.ID})
	if err != nil {
		return err
	}
	for {
		m, err := stream.Recv()
		if ctx.Err() != nil {
			return nil // Ctrl-C or --for elapsed
		}
		if err != nil {
			return err
		}
		b, err := protojson.Marshal(m)
		if err != nil {
			return err
		}
		if _, err := fmt.Fprintf(w, "%s\n", b); err != nil {
			return err
		}
	}
}
