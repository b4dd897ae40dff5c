package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"

	"google.golang.org/grpc"
	"google.golang.org/protobuf/proto"

	sarv1 "github.com/mountain-sar/sar/gen/sar/v1"
)

type searchCmd struct {
	Plan     searchPlanCmd     `cmd:"" help:"Seed (or re-seed) an incident's search grid from its initial planning point and subject, or from a point."`
	Settings searchSettingsCmd `cmd:"" help:"Change the plan's settings (sweep widths, speeds, following caller fixes) without re-seeding the grid."`
	Grid     searchGridCmd     `cmd:"" help:"Print an incident's search grid: every cell, the cells changed since a version, or one segment's cells."`
	Adjust   searchAdjustCmd   `cmd:"" help:"Scale the POA of chosen cells (local knowledge: a gorge, a river, a trap trail)."`
	Clue     searchClueCmd     `cmd:"" help:"Record a clue: re-weight the grid around where it was found."`
	Segments searchSegmentsCmd `cmd:"" help:"List the incident's segments, densest first, with their assignments."`
	Suggest  searchSuggestCmd  `cmd:"" help:"Suggest the next segment for a team (and assign it with --assign)."`
	Assign   searchAssignCmd   `cmd:"" help:"Assign a segment to a team, or free it (no --team)."`
	Export   searchExportCmd   `cmd:"" help:"Write the grid (and segments) as GeoJSON or KML for map tools."`
}

// latLng turns optional --lat/--lng flags into a point.
func latLng(lat, lng *float64) (*sarv1.LatLng, error) {
	if (lat == nil) != (lng == nil) {
		return nil, errors.New("give both --lat and --lng, or neither")
	}
	if lat == nil {
		return nil, nil
	}
	return &sarv1.LatLng{Lat: *lat, Lng: *lng}, nil
}

type searchPlanCmd struct {
	ID            string             `arg:"" help:"Incident id."`
	Lat           *float64           `help:"Seed from this latitude instead of the initial planning point."`
	Lng           *float64           `help:"Seed from this longitude."`
	Accuracy      float64            `help:"With --lat/--lng: accuracy in metres (68 %); seeds the accuracy disk of a fix instead of the lost-person distance rings."`
	Cut           float64            `help:"Share of the distance distribution in cells (0 < cut <= 0.95; default 0.95)."`
	SweepWidth    map[string]float64 `name:"sweep-width" help:"Sweep width in metres per searcher type, e.g. --sweep-width foot=20 --sweep-width dog=60."`
	ResetCoverage bool               `name:"reset-coverage" help:"Forget the coverage recorded so far."`
}

func (c *searchPlanCmd) Run(ctx context.Context, g *Globals, w io.Writer) error {
	p, err := latLng(c.Lat, c.Lng)
	if err != nil {
		return err
	}
	return g.call(ctx, w, func(ctx context.Context, cc *grpc.ClientConn) (proto.Message, error) {
		return sarv1.NewSearchServiceClient(cc).SetSearchPlan(ctx, &sarv1.SetSearchPlanRequest{IncidentId: c.ID, Point: p,
			AccuracyM: c.Accuracy, Cut: c.Cut, SweepWidthsM: c.SweepWidth, ResetCoverage: c.ResetCoverage})
	})
}

type searchSettingsCmd struct {
	ID           string             `arg:"" help:"Incident id."`
	SweepWidth   map[string]float64 `name:"sweep-width" help:"Sweep width in metres per searcher type, e.g. --sweep-width dog=60."`
	MaxSpeed     map[string]float64 `name:"max-speed" help:"Fastest credible speed in m/s per searcher type for the track filter, e.g. --max-speed drone=20 (3 m/s otherwise)."`
	Replace      bool               `help:"Replace the tables instead of merging (the foot width is kept unless given)."`
	FollowCaller *bool              `name:"follow-caller" negatable:"" help:"Whether the caller's live fixes collapse the grid (unset: unchanged)."`
}

func (c *searchSettingsCmd) Run(ctx context.Context, g *Globals, w io.Writer) error {
	return g.call(ctx, w, func(ctx context.Context, cc *grpc.ClientConn) (proto.Message, error) {
		return sarv1.NewSearchServiceClient(cc).UpdateSearchSettings(ctx, &sarv1.UpdateSearchSettingsRequest{IncidentId: c.ID,
			SweepWidthsM: c.SweepWidth, MaxSpeedsMS: c.MaxSpeed, Replace: c.Replace, FollowCallerFixes: c.FollowCaller})
	})
}

type searchGridCmd struct {
	ID      string `arg:"" help:"Incident id."`
	Since   int64  `help:"Only cells changed after this grid version."`
	Segment int32  `help:"Only this segment's cells."`
}

func (c *searchGridCmd) Run(ctx context.Context, g *Globals, w io.Writer) error {
	return g.call(ctx, w, func(ctx context.Context, cc *grpc.ClientConn) (proto.Message, error) {
		return sarv1.NewSearchServiceClient(cc).GetSearchGrid(ctx, &sarv1.GetSearchGridRequest{IncidentId: c.ID,
			SinceVersion: c.Since, SegmentId: c.Segment})
	})
}

type searchAdjustCmd struct {
	ID     string   `arg:"" help:"Incident id."`
	Cell   []string `required:"" help:"H3 cell (hexadecimal) to scale; repeat or separate with commas."`
	Factor float64  `required:"" help:"Factor for the cells' POA (0 rules them out, 2 doubles it); the rest is renormalised."`
}

func (c *searchAdjustCmd) Run(ctx context.Context, g *Globals, w io.Writer) error {
	return g.call(ctx, w, func(ctx context.Context, cc *grpc.ClientConn) (proto.Message, error) {
		return sarv1.NewSearchServiceClient(cc).AdjustCells(ctx, &sarv1.AdjustCellsRequest{IncidentId: c.ID,
			ScaleCells: c.Cell, ScaleFactor: c.Factor})
	})
}

type searchClueCmd struct {
	ID          string  `arg:"" help:"Incident id."`
	Lat         float64 `required:"" help:"Latitude where the clue was found."`
	Lng         float64 `required:"" help:"Longitude where the clue was found."`
	Radius      float64 `default:"500" help:"How far from the clue the subject likely is now (σ, metres)."`
	Weight      float64 `default:"5" help:"Likelihood ratio at the clue (>1 draws probability to it, <1 pushes it away)."`
	Description string  `help:"What was found."`
}

func (c *searchClueCmd) Run(ctx context.Context, g *Globals, w io.Writer) error {
	return g.call(ctx, w, func(ctx context.Context, cc *grpc.ClientConn) (proto.Message, error) {
		return sarv1.NewSearchServiceClient(cc).RecordClue(ctx, &sarv1.RecordClueRequest{IncidentId: c.ID,
			Position: &sarv1.LatLng{Lat: c.Lat, Lng: c.Lng}, RadiusM: c.Radius, Weight: c.Weight, Description: c.Description})
	})
}

type searchSegmentsCmd struct {
	ID        string  `arg:"" help:"Incident id."`
	Area      float64 `help:"Target segment area in square metres when segments are cut (default 500000)."`
	Resegment bool    `help:"Cut the unassigned part anew."`
}

func (c *searchSegmentsCmd) Run(ctx context.Context, g *Globals, w io.Writer) error {
	return g.call(ctx, w, func(ctx context.Context, cc *grpc.ClientConn) (proto.Message, error) {
		return sarv1.NewSearchServiceClient(cc).ListSegments(ctx, &sarv1.ListSegmentsRequest{IncidentId: c.ID,
			TargetAreaM2: c.Area, Resegment: c.Resegment})
	})
}

// teamRef parses "agency" or "agency/team".
func teamRef(s string) *sarv1.TeamRef {
	if s == "" {
		return nil
	}
	a, t, _ := strings.Cut(s, "/")
	return &sarv1.TeamRef{AgencyId: a, TeamId: t}
}

type searchSuggestCmd struct {
	ID           string   `arg:"" help:"Incident id."`
	Team         string   `help:"Team as agency/team (or agency alone); a rescuer's own by default."`
	Lat          *float64 `help:"Where the team is (default: its newest position in the incident)."`
	Lng          *float64 `help:"Where the team is."`
	Searchers    int32    `help:"Searchers abreast (default: the team's participants)."`
	SearcherType string   `name:"searcher-type" help:"Searcher type, for the sweep width (default foot)."`
	Coverage     float64  `help:"Coverage to give the segment (default 1: POD 63 %)."`
	Assign       bool     `help:"Assign the suggested segment to the team."`
}

func (c *searchSuggestCmd) Run(ctx context.Context, g *Globals, w io.Writer) error {
	p, err := latLng(c.Lat, c.Lng)
	if err != nil {
		return err
	}
	return g.call(ctx, w, func(ctx context.Context, cc *grpc.ClientConn) (proto.Message, error) {
		return sarv1.NewSearchServiceClient(cc).SuggestNextTask(ctx, &sarv1.SuggestNextTaskRequest{IncidentId: c.ID,
			Team: teamRef(c.Team), Position: p, Searchers: c.Searchers, SearcherType: c.SearcherType, Coverage: c.Coverage, Assign: c.Assign})
	})
}

type searchAssignCmd struct {
	ID       string `arg:"" help:"Incident id."`
	Segment  int32  `arg:"" help:"Segment id."`
	Team     string `help:"Team as agency/team (or agency alone); empty frees the segment."`
	Reassign bool   `help:"Move a segment another team holds."`
}

func (c *searchAssignCmd) Run(ctx context.Context, g *Globals, w io.Writer) error {
	return g.call(ctx, w, func(ctx context.Context, cc *grpc.ClientConn) (proto.Message, error) {
		return sarv1.NewSearchServiceClient(cc).AssignSegment(ctx, &sarv1.AssignSegmentRequest{IncidentId: c.ID,
			SegmentId: c.Segment, Team: teamRef(c.Team), Reassign: c.Reassign})
	})
}

type searchExportCmd struct {
	ID       string  `arg:"" help:"Incident id."`
	Format   string  `default:"geojson" enum:"geojson,kml" help:"Map format: ${enum}."`
	Segments float64 `help:"Include the segments (cut at this many square metres if none were cut yet)."`
	Out      string  `short:"o" help:"File to write (default: stdout)."`
}

func (c *searchExportCmd) Run(ctx context.Context, g *Globals, w io.Writer) error {
	cc, err := dial(g.Client(), g.Addr)
	if err != nil {
		return err
	}
	defer cc.Close()
	ctx, cancel := context.WithTimeout(withToken(ctx, g.Token), g.Timeout)
	defer cancel()
	res, err := sarv1.NewSearchServiceClient(cc).ExportSearchGrid(ctx, &sarv1.ExportSearchGridRequest{IncidentId: c.ID,
		Format: sarv1.ExportFormat(enumValue(sarv1.ExportFormat_value, "EXPORT_FORMAT_", c.Format)), SegmentAreaM2: c.Segments})
	if err != nil {
		return err
	}
	if c.Out == "" {
		_, err = w.Write(res.GetContent())
		return err
	}
	if err := os.WriteFile(c.Out, res.GetContent(), 0o644); err != nil {
		return err
	}
	_, err = fmt.Fprintf(os.Stderr, "wrote %s (%s, grid version %d)\n", c.Out, res.GetContentType(), res.GetVersion())
	return err
}
