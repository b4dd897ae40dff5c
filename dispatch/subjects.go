// Package dispatch is the one place that speaks NATS: the subject scheme,
// publishing incident events (live positions on core NATS, lifecycle
// events on JetStream with deduplication), the outbox relay that makes sure
// no acknowledged state change is lost between Redis and NATS, and the
// subscriptions that feed watchers.
//
// # Subject scheme (version 1)
//
// Every payload is a binary protobuf sar.v1.Event; the Nats-Msg-Id header
// holds Event.id.
//
//	sar.v1.inc.<incident>.pos.<agency>.<team>.<participant>   live positions (core NATS, not persisted)
//	sar.v1.inc.<incident>.evt.incident                        incident opened, assigned, closed (JetStream)
//	sar.v1.inc.<incident>.evt.participant.<agency>.<team>     participant joined (JetStream)
//	sar.v1.inc.<incident>.evt.grid                            search grid changed materially (JetStream)
//	sar.v1.inc.<incident>.evt.task.<agency>.<team>            a team's task changed (JetStream)
//	sar.v1.inc.<incident>.evt.notice.<agency>                 a notice to every team of an assigned agency (JetStream)
//
// Task events (TaskChangedEvent) go to the team the task is with after the
// change: offered, accepted, declined, in progress, progress reported,
// completed, cancelled, reassigned (the team that lost it learns from the
// incident's events and its task feed). Notices to all teams (a message,
// the incident closed) are published once per agency assigned to the
// incident, each copy with its own event id, so that an agency confined
// to its own subjects still hears them.
//
// Search grid events (SearchGridChangedEvent) announce a seeding, a
// collapse to a caller's live fix, an operator's adjustment, a clue, and
// segments cut or assigned, each written to the outbox with the change;
// and, throttled per incident across replicas, coverage from rescuers'
// tracks that moved the probability of success by at least one percentage
// point since the previous event, at most one every 5 s, with a trailing
// event for a smaller change once 5 s have passed. Consumers fetch the
// changed cells with GetSearchGrid(since_version).
//
// Callers (share links) use agency "_caller" and team "_"; rescuers without
// a team use team "_". Agency, team and jurisdiction ids never start with
// "_", and no id contains ".", "*", ">" or white space, so every id is one
// subject token. An agency's system is confined with NATS permissions to
// its own subjects: "sar.v1.inc.*.evt.task.<agency>.>",
// "sar.v1.inc.*.evt.notice.<agency>", "sar.v1.inc.*.pos.<agency>.>" and
// "sar.v1.inc.*.evt.participant.<agency>.>", with durable consumers of its
// own (natsauth.go, `sarctl nats-auth`); a console follows one incident
// with "sar.v1.inc.<incident>.>".
//
// The JetStream stream SAR_EVENTS captures "sar.v1.inc.*.evt.>".
package dispatch

import (
	sarv1 "github.com/mountain-sar/sar/gen/sar/v1"
)

// Names of the scheme.
const (
	SubjectPrefix = "sar.v1.inc."
	StreamName    = "SAR_EVENTS"
	StreamSubject = "sar.v1.inc.*.evt.>"
	CallerAgency  = "_caller"
	NoTeam        = "_"
)

// TaskSubjects are the wildcards of one incident's task changes and
// notices; with an agency, only those of its team (and the agency's
// notices).
func TaskSubjects(incidentID, agency, team string) []string {
	if agency == "" {
		return []string{SubjectPrefix + incidentID + ".evt.task.>", SubjectPrefix + incidentID + ".evt.notice.>"}
	}
	return []string{SubjectPrefix + incidentID + ".evt.task." + token(agency) + "." + token(team), SubjectPrefix + incidentID + ".evt.notice." + agency}
}

// IncidentSubjects is the wildcard of everything about one incident.
func IncidentSubjects(incidentID string) string { return SubjectPrefix + incidentID + ".>" }

func token(s string) string {
	if s == "" {
		return NoTeam
	}
	return s
}

func partyTokens(kind sarv1.ParticipantKind, agency, team string) (string, string) {
	if kind == sarv1.ParticipantKind_PARTICIPANT_KIND_CALLER {
		return CallerAgency, NoTeam
	}
	return token(agency), token(team)
}

// Subject returns the subject an event is published on, and whether it is
// durable (JetStream) rather than live (core NATS).
func Subject(ev *sarv1.Event) (subject string, durable bool) {
	base := SubjectPrefix + ev.GetIncidentId()
	switch p := ev.GetPayload().(type) {
	case *sarv1.Event_Positions:
		a, t := partyTokens(p.Positions.GetKind(), p.Positions.GetAgencyId(), p.Positions.GetTeamId())
		return base + ".pos." + a + "." + t + "." + p.Positions.GetParticipantId(), false
	case *sarv1.Event_SearchGridChanged:
		return base + ".evt.grid", true
	case *sarv1.Event_TaskChanged:
		tc := p.TaskChanged
		if tc.GetNoticeAgency() != "" {
			return base + ".evt.notice." + tc.GetNoticeAgency(), true
		}
		if from := tc.GetTakenFrom(); from != nil {
			return base + ".evt.task." + token(from.GetAgencyId()) + "." + token(from.GetTeamId()), true
		}
		return base + ".evt.task." + token(tc.GetTask().GetTeam().GetAgencyId()) + "." + token(tc.GetTask().GetTeam().GetTeamId()), true
	case *sarv1.Event_ParticipantJoined:
		pt := p.ParticipantJoined.GetParticipant()
		a, t := partyTokens(pt.GetKind(), pt.GetAgencyId(), pt.GetTeamId())
		return base + ".evt.participant." + a + "." + t, true
	default:
		return base + ".evt.incident", true
	}
}
