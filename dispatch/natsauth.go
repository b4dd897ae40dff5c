package dispatch

import (
	"bytes"
	"fmt"
	"strconv"

	"github.com/nats-io/nkeys"

	"github.com/mountain-sar/sar/internal/sar"
)

// NATS users of the subject scheme.
//
// An agency's user may subscribe to its own subjects only: the tasks given
// to its teams, the notices to the agency, its teams' positions and
// participants, and replies on its own inbox prefix. It publishes nothing on
// sar.v1.>, and of the JetStream API it may only use two durable consumers
// of SAR_EVENTS named after it, each filtered to its own subjects:
//
//	<agency>-tasks    filter sar.v1.inc.*.evt.task.<agency>.>   (or a narrower one)
//	<agency>-notices  filter sar.v1.inc.*.evt.notice.<agency>    (or one incident's)
//
// The filter is part of the create subject
// ($JS.API.CONSUMER.CREATE.<stream>.<consumer>.<filter>, nats-server 2.9+),
// and the server refuses a request whose configured filter differs from it
// or that has several filters, so the permission confines what the consumer
// reads. Unfiltered or legacy creates ($JS.API.CONSUMER.CREATE.<stream>,
// ...CREATE.<stream>.<consumer>, ...DURABLE.CREATE...), stream reads
// (STREAM.INFO, STREAM.MSG.GET, DIRECT.GET) and other agencies' consumers
// are not allowed. The consumer names are fixed per agency so that one
// agency cannot update (and so take over) another's consumer by its name.
// Agency ids never contain "." and the suffixes end differently, so two
// agencies never share a consumer name.

// Permissions are the subjects a NATS user may publish and subscribe to. A
// nil Publish list means the user may publish nothing.
type Permissions struct {
	Publish   []string
	Subscribe []string
}

// Consumer name suffixes, inbox prefix and the JetStream API subjects.
const (
	TaskConsumerSuffix   = "-tasks"
	NoticeConsumerSuffix = "-notices"
	AgencyInboxPrefix    = "_INBOX_" // + agency; nats.CustomInboxPrefix
	// ServiceSeedFile is the name of sard's seed file that `sarctl
	// nats-auth` writes next to the authorization file (agency ids never
	// start with "_", so it never collides with <agency>.nk).
	ServiceSeedFile = "_sard.nk"
	jsAPI           = "$JS.API."
	jsAck           = "$JS.ACK."
)

// TaskFilter is the subject filter of all tasks given to an agency's teams.
func TaskFilter(agency string) string { return SubjectPrefix + "*.evt.task." + agency + ".>" }

// NoticeFilter is the subject filter of all notices to an agency.
func NoticeFilter(agency string) string { return SubjectPrefix + "*.evt.notice." + agency }

// TaskConsumer is the name of the durable consumer an agency may create on
// SAR_EVENTS for its tasks.
func TaskConsumer(agency string) string { return agency + TaskConsumerSuffix }

// NoticeConsumer is the name of the durable consumer an agency may create
// on SAR_EVENTS for its notices.
func NoticeConsumer(agency string) string { return agency + NoticeConsumerSuffix }

// InboxPrefix is the inbox prefix an agency's client must use
// (nats.CustomInboxPrefix, `nats --inbox-prefix`): replies to other
// prefixes never reach it, and other agencies cannot read its replies.
func InboxPrefix(agency string) string { return AgencyInboxPrefix + agency }

// AgencyPermissions returns the permissions of an agency's NATS user.
func AgencyPermissions(agency string) (Permissions, error) {
	if !sar.ValidSlug(agency) {
		return Permissions{}, fmt.Errorf("dispatch: agency id %q is not a valid slug", agency)
	}
	p := Permissions{
		Publish: []string{jsAPI + "INFO", jsAPI + "STREAM.NAMES"},
		Subscribe: []string{
			TaskFilter(agency),
			NoticeFilter(agency),
			SubjectPrefix + "*.pos." + agency + ".>",
			SubjectPrefix + "*.evt.participant." + agency + ".>",
			InboxPrefix(agency) + ".>",
		},
	}
	for _, c := range []struct{ name, filter string }{
		{TaskConsumer(agency), TaskFilter(agency)},
		{NoticeConsumer(agency), NoticeFilter(agency)},
	} {
		p.Publish = append(p.Publish,
			jsAPI+"CONSUMER.CREATE."+StreamName+"."+c.name+"."+c.filter,
			jsAPI+"CONSUMER.INFO."+StreamName+"."+c.name,
			jsAPI+"CONSUMER.DELETE."+StreamName+"."+c.name,
			jsAPI+"CONSUMER.MSG.NEXT."+StreamName+"."+c.name,
			// Acks: $JS.ACK.<stream>.<consumer>.… (v1, the default) and
			// $JS.ACK.<domain>.<account hash>.<stream>.<consumer>.… (v2).
			jsAck+StreamName+"."+c.name+".>",
			jsAck+"*.*."+StreamName+"."+c.name+".>",
		)
	}
	return p, nil
}

// ServicePermissions returns the permissions of sard's own NATS user:
// publish and subscribe on the whole scheme, create, update and inspect
// SAR_EVENTS, and replies on the default inbox prefix.
func ServicePermissions() Permissions {
	return Permissions{
		Publish: []string{"sar.v1.>", jsAPI + "INFO",
			jsAPI + "STREAM.CREATE." + StreamName, jsAPI + "STREAM.UPDATE." + StreamName, jsAPI + "STREAM.INFO." + StreamName},
		Subscribe: []string{"sar.v1.>", "_INBOX.>"},
	}
}

// ConsolePermissions returns the permissions of a read-only console: live
// subscriptions to every incident's subjects, and no publishing at all (so
// no JetStream either).
func ConsolePermissions() Permissions {
	return Permissions{Subscribe: []string{SubjectPrefix + ">"}}
}

// NkeyUser is a NATS user who authenticates with an nkey.
type NkeyUser struct {
	Comment     string // written above the user, e.g. "agency valley-rescue"; one line
	PublicKey   string // "U…"
	Permissions Permissions
}

// AuthorizationConfig renders a nats-server configuration include file with
// an authorization block of these users. Only public keys are written.
func AuthorizationConfig(header string, users []NkeyUser) ([]byte, error) {
	var b bytes.Buffer
	for _, l := range bytes.Split([]byte(header), []byte("\n")) {
		fmt.Fprintf(&b, "# %s\n", bytes.TrimSpace(l))
	}
	b.WriteString("authorization {\n  users = [\n")
	seen := map[string]bool{}
	for _, u := range users {
		if !nkeys.IsValidPublicUserKey(u.PublicKey) {
			return nil, fmt.Errorf("dispatch: %q is not an nkey user public key", u.PublicKey)
		}
		if seen[u.PublicKey] {
			return nil, fmt.Errorf("dispatch: nkey %s appears twice", u.PublicKey)
		}
		seen[u.PublicKey] = true
		if bytes.ContainsAny([]byte(u.Comment), "\r\n") {
			return nil, fmt.Errorf("dispatch: comment %q spans lines", u.Comment)
		}
		if u.Comment != "" {
			fmt.Fprintf(&b, "    # %s\n", u.Comment)
		}
		fmt.Fprintf(&b, "    {\n      nkey: %s\n      permissions: {\n", strconv.Quote(u.PublicKey))
		if u.Permissions.Publish == nil {
			b.WriteString("        publish: { deny: [\">\"] }\n")
		} else {
			fmt.Fprintf(&b, "        publish: { allow: %s }\n", list(u.Permissions.Publish))
		}
		if u.Permissions.Subscribe == nil {
			b.WriteString("        subscribe: { deny: [\">\"] }\n")
		} else {
			fmt.Fprintf(&b, "        subscribe: { allow: %s }\n", list(u.Permissions.Subscribe))
		}
		b.WriteString("      }\n    }\n")
	}
	b.WriteString("  ]\n}\n")
	return b.Bytes(), nil
}

// list renders subjects as a configuration array. Subjects are quoted: an
// unquoted $JS… would be read as a variable.
func list(subjects []string) string {
	var b bytes.Buffer
	b.WriteString("[")
	for i, s := range subjects {
		if i > 0 {
			b.WriteString(", ")
		}
		b.WriteString(strconv.Quote(s))
	}
	b.WriteString("]")
	return b.String()
}
