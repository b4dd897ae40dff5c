package server

import (
	"context"
	"errors"
	"log/slog"

	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/mountain-sar/sar/internal/sar"
)

// codeOf is the one table from domain error kinds to gRPC codes.
var codeOf = map[sar.Kind]codes.Code{
	sar.KindInternal:           codes.Internal,
	sar.KindInvalid:            codes.InvalidArgument,
	sar.KindNotFound:           codes.NotFound,
	sar.KindPermissionDenied:   codes.PermissionDenied,
	sar.KindUnauthenticated:    codes.Unauthenticated,
	sar.KindFailedPrecondition: codes.FailedPrecondition,
	sar.KindAlreadyExists:      codes.AlreadyExists,
	sar.KindUnavailable:        codes.Unavailable,
	sar.KindResourceExhausted:  codes.ResourceExhausted,
	sar.KindAborted:            codes.Aborted,
	sar.KindOutOfRange:         codes.OutOfRange,
}

// Code returns the gRPC code of a domain error.
func Code(err error) codes.Code {
	if errors.Is(err, context.Canceled) {
		return codes.Canceled
	}
	if errors.Is(err, context.DeadlineExceeded) {
		return codes.DeadlineExceeded
	}
	return codeOf[sar.KindOf(err)]
}

// toStatus turns a domain error into a gRPC status error with field
// details. Internal causes are logged, never sent.
func toStatus(log *slog.Logger, method string, err error) error {
	if err == nil {
		return nil
	}
	if _, ok := status.FromError(err); ok {
		return err
	}
	code := Code(err)
	var e *sar.Error
	if !errors.As(err, &e) {
		log.Error("internal error", "method", method, "err", err)
		return status.Error(codes.Internal, "internal error")
	}
	if e.Err != nil || code == codes.Internal || code == codes.Unavailable {
		log.Warn("request failed", "method", method, "code", code.String(), "err", err)
	}
	msg := e.Message
	if code == codes.Internal {
		msg = "internal error"
	}
	st := status.New(code, msg)
	if len(e.Fields) > 0 {
		br := &errdetails.BadRequest{}
		for _, f := range e.Fields {
			br.FieldViolations = append(br.FieldViolations, &errdetails.BadRequest_FieldViolation{
				Field: f.Field, Description: f.Description, Reason: f.Reason})
		}
		if d, err := st.WithDetails(br); err == nil {
			st = d
		}
	}
	if e.Reason != "" {
		if d, err := st.WithDetails(&errdetails.ErrorInfo{Reason: e.Reason, Domain: sar.ErrorDomain}); err == nil {
			st = d
		}
	}
	return st.Err()
}
