// Package store is the one place that speaks Redis: the key layout, the Lua
// scripts and the (de)serialisation of the live state.
//
// The scripts are the files lua/*.lua, embedded (scripts.go); each names
// its KEYS, ARGV, reply and error codes in its header. Replies are read
// with checks (reply.go) and error codes are matched exactly against one
// table (errors.go). The detection model (coverage to remaining
// probability) is not in Lua: Go computes it with the geo package and the
// scripts store what Go computed (coverage is added atomically and the
// change of the grid's total applied in a second run; seeds and rebases
// are compare-and-set; see grid.go). The search work a batch makes is
// queued by the ingest script and done after the ack (searchwork.go).
//
// Every key of one incident carries the incident id as its hash tag
// ("sar:{<incident>}:..."), and a script receives every key it touches in
// KEYS, so that each multi-key script touches one slot and runs unchanged
// on a single server and on Redis Cluster. The few
// cross-incident keys are named here and are only read or written one key
// per command.
package store

import "github.com/mountain-sar/sar/internal/sar"

// Per-incident keys.
func kInc(id string) string           { return "sar:{" + id + "}:inc" }         // hash: pb, state, ver
func kOutbox(id string) string        { return "sar:{" + id + "}:outbox" }      // hash: event id -> Event pb
func kSeq(id string) string           { return "sar:{" + id + "}:seq" }         // hash: device -> acked-through sequence
func kDev(id string) string           { return "sar:{" + id + "}:dev" }         // hash: device -> participant id
func kParts(id string) string         { return "sar:{" + id + "}:parts" }       // hash: participant id -> Participant pb
func kPartCred(id string) string      { return "sar:{" + id + "}:pcred" }       // hash: credential id -> participant id
func kLast(id string) string          { return "sar:{" + id + "}:last" }        // hash: participant id -> "<ms>|<LocationFix pb>"
func kCells(id string) string         { return "sar:{" + id + "}:cells" }       // hash: cell -> fix count
func kCellTime(id string) string      { return "sar:{" + id + "}:cellt" }       // zset: cell scored by newest fix ms
func kTrack(id, part string) string   { return "sar:{" + id + "}:trk:" + part } // zset: fix pb scored by fix ms
func kGrid(id string) string          { return "sar:{" + id + "}:grid" }        // hash: search grid meta (see grid.go)
func kGridPrior(id string) string     { return "sar:{" + id + "}:gpri" }        // hash: cell hex -> prior weight
func kGridCov(id string) string       { return "sar:{" + id + "}:gcov" }        // hash: cell hex -> cumulative coverage
func kGridVer(id string) string       { return "sar:{" + id + "}:gver" }        // zset: cell hex scored by version of last change
func kGridTrk(id string) string       { return "sar:{" + id + "}:gtrk" }        // hash: participant -> tracker state JSON
func kSearcher(id string) string      { return "sar:{" + id + "}:stype" }       // hash: participant -> searcher type
func kGridThrough(id string) string   { return "sar:{" + id + "}:gthr" }        // hash: participant -> fix ms its track is credited through
func kWork(id string) string          { return "sar:{" + id + "}:work" }        // hash: search work "<kind>:<participant>" -> generation
func kWorkTime(id string) string      { return "sar:{" + id + "}:workt" }       // zset: search work scored by oldest unfinished ms
func kTasks(id string) string         { return "sar:{" + id + "}:tasks" }       // hash: task id -> Task pb
func kTaskVer(id string) string       { return "sar:{" + id + "}:tver" }        // hash: task id -> version
func kTaskReq(id string) string       { return "sar:{" + id + "}:treq" }        // hash: request id -> task id
func kTaskFeed(id string) string      { return "sar:{" + id + "}:feed" }        // stream: task changes and notices
func kTaskDeadlines(id string) string { return "sar:{" + id + "}:tdl" }         // zset: task id by answer deadline ms
func kSegs(id string) string          { return "sar:{" + id + "}:segs" }        // hash: "ver", "json" (see segments.go)

// Staging keys of one grid write (PutGrid), expiring by themselves.
func kGridStage(id, token string) string    { return "sar:{" + id + "}:gstage:" + token }  // hash: cell hex -> weight
func kGridStageVer(id, token string) string { return "sar:{" + id + "}:gstagev:" + token } // zset: cell hex scored 1

// Cross-incident keys (each used alone in a command).
const (
	kIdxAll      = "sar:idx:inc"    // zset (lex, score 0): all incident ids
	kIdxOpen     = "sar:idx:open"   // set: ids of open incidents
	kIdxOutbox   = "sar:idx:outbox" // set: ids of incidents that may hold unpublished events
	kIdxAgencies = "sar:idx:agencies"
)

func kIdxJur(j string) string      { return "sar:idx:jur:" + j }    // zset (lex): incidents of a jurisdiction
func kIdxAgency(a string) string   { return "sar:idx:agency:" + a } // zset (lex): incidents an agency is assigned to
func kIdxTeam(ref string) string   { return "sar:idx:team:" + ref } // zset (lex): incidents a team is assigned to
func kReqID(j, r string) string    { return "sar:req:{" + j + "}:" + r }
func kAgency(a string) string      { return "sar:agency:{" + a + "}" }
func kAgencyTeams(a string) string { return "sar:agency:{" + a + "}:teams" }
func kCred(id string) string       { return "sar:cred:{" + id + "}" }
func kTeamCell(c uint64) string    { return "sar:idx:teamcell:" + sar.CellHex(c) } // set: "<agency>/<team>" placed in an index cell
