// Package sar holds the domain vocabulary shared by the server's packages:
// error kinds, identifiers, limits, and the data the domain (internal/core)
// exchanges with its stores through the interfaces it owns (grid writes and
// snapshots, ingest batches and results, joins, segmentations). It depends
// only on the standard library and the generated messages, so that every
// layer can speak it: core, and internal/store beneath it, import it
// without importing each other.
package sar

import (
	"errors"
	"fmt"
	"strings"
)

// Kind classifies an error the way a client must react to it. The server
// maps each kind to one gRPC status code in a single table.
type Kind int

// Error kinds.
const (
	KindInternal           Kind = iota // a bug or an unexpected failure
	KindInvalid                        // the request is malformed; do not retry as is
	KindNotFound                       // the object does not exist or is not visible
	KindPermissionDenied               // the credential may not do this
	KindUnauthenticated                // no valid credential
	KindFailedPrecondition             // the object is not in a state that allows this
	KindAlreadyExists                  // the object exists already
	KindUnavailable                    // a backend is down; retry with backoff
	KindResourceExhausted              // a size or rate limit was hit
	KindAborted                        // a concurrent change won; retry the whole read-modify-write
	KindOutOfRange                     // past the end (or before the start) of what can be read; start again
)

var kindNames = map[Kind]string{
	KindInternal: "internal", KindInvalid: "invalid", KindNotFound: "not found",
	KindPermissionDenied: "permission denied", KindUnauthenticated: "unauthenticated",
	KindFailedPrecondition: "failed precondition", KindAlreadyExists: "already exists",
	KindUnavailable: "unavailable", KindResourceExhausted: "resource exhausted", KindAborted: "aborted",
	KindOutOfRange: "out of range",
}

func (k Kind) String() string { return kindNames[k] }

// FieldViolation names one refused field.
type FieldViolation struct {
	Field       string // path, e.g. "batch.fixes[2].lat"
	Description string // human readable
	Reason      string // machine readable, e.g. "OUT_OF_RANGE"
}

// Error is a domain error: a kind, a message safe to show to the client,
// optional field violations, and an optional wrapped cause that is logged
// but never shown.
type Error struct {
	Kind    Kind
	Message string
	Fields  []FieldViolation
	Err     error
	// Reason, when set, is a machine-readable cause that the client may
	// act on (sent as google.rpc.ErrorInfo), e.g. "CREDENTIAL_EXPIRED".
	Reason string
}

func (e *Error) Error() string {
	var b strings.Builder
	b.WriteString("sar: ")
	b.WriteString(e.Message)
	for _, f := range e.Fields {
		fmt.Fprintf(&b, "; %s: %s", f.Field, f.Description)
	}
	if e.Err != nil {
		b.WriteString(": ")
		b.WriteString(e.Err.Error())
	}
	return b.String()
}

func (e *Error) Unwrap() error { return e.Err }

// Errorf makes an Error of kind k with a formatted client-safe message.
func Errorf(k Kind, format string, args ...any) *Error {
	return &Error{Kind: k, Message: fmt.Sprintf(format, args...)}
}

// Wrap makes an Error of kind k that carries cause for the logs only.
func Wrap(k Kind, cause error, message string) *Error {
	return &Error{Kind: k, Message: message, Err: cause}
}

// Invalid makes a KindInvalid error with field violations.
func Invalid(message string, fields ...FieldViolation) *Error {
	return &Error{Kind: KindInvalid, Message: message, Fields: fields}
}

// Field is shorthand for a FieldViolation.
func Field(field, reason, format string, args ...any) FieldViolation {
	return FieldViolation{Field: field, Reason: reason, Description: fmt.Sprintf(format, args...)}
}

// KindOf returns the kind of err: that of the first *Error in its chain,
// else KindInternal.
func KindOf(err error) Kind {
	var e *Error
	if errors.As(err, &e) {
		return e.Kind
	}
	return KindInternal
}

// NotFound is the one message for an object that does not exist or that the
// caller may not see: the two must be indistinguishable.
func NotFound(what string) *Error { return Errorf(KindNotFound, "%s not found", what) }

// A credential that existed and no longer works: the store wraps these in
// a KindNotFound error, so that only a caller that checked the secret can
// tell its holder which it was.
var (
	ErrCredentialExpired = errors.New("credential expired")
	ErrCredentialRevoked = errors.New("credential revoked")
)

// Reasons sent with UNAUTHENTICATED (google.rpc.ErrorInfo, domain
// ErrorDomain) so that a share page can tell a lost person why their link
// stopped working. A token that never existed, a malformed one and one
// whose secret does not match all get CredentialInvalid.
const (
	ErrorDomain        = "sar.v1"
	CredentialInvalid  = "CREDENTIAL_INVALID"
	CredentialExpired  = "CREDENTIAL_EXPIRED"
	CredentialRevoked  = "CREDENTIAL_REVOKED"
	CredentialRequired = "CREDENTIAL_REQUIRED"
	// IncidentClosed comes with FAILED_PRECONDITION when the incident is
	// closed: a share page stops for it, and for nothing else.
	IncidentClosed = "INCIDENT_CLOSED"
)
