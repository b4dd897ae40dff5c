package server

import (
	"context"
	"fmt"
	"strings"

	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoreflect"

	sarv1 "github.com/mountain-sar/sar/gen/sar/v1"
)

// perFix is the message whose fields are checked one fix at a time by the
// domain (an invalid fix is rejected in the ack, not the whole batch).
var perFix = (&sarv1.LocationFix{}).ProtoReflect().Descriptor().FullName()

// undeclaredEnum reports whether an enum field of m (at any depth, in
// lists and map values) holds a number its enum does not declare, and the
// path below m of the first one (".a.b[2].c"). Enum numbers are checked
// against the generated descriptors, so values added to an enum pass
// without a change here. The path is built only for a bad value: this
// runs on every message, and a batch's fixes are a list.
func undeclaredEnum(m protoreflect.Message) (path string, bad bool) {
	if m.Descriptor().FullName() == perFix {
		return "", false
	}
	m.Range(func(fd protoreflect.FieldDescriptor, v protoreflect.Value) bool {
		switch {
		case fd.Message() != nil && fd.Message().FullName() == perFix: // a batch's fixes
		case fd.IsList():
			l := v.List()
			for i := 0; i < l.Len() && !bad; i++ {
				if sub, ok := undeclaredValue(fd, l.Get(i)); ok {
					path, bad = fmt.Sprintf(".%s[%d]%s", fd.Name(), i, sub), true
				}
			}
		case fd.IsMap():
			v.Map().Range(func(k protoreflect.MapKey, mv protoreflect.Value) bool {
				if sub, ok := undeclaredValue(fd.MapValue(), mv); ok {
					path, bad = fmt.Sprintf(".%s[%v]%s", fd.Name(), k.Interface(), sub), true
				}
				return !bad
			})
		default:
			if sub, ok := undeclaredValue(fd, v); ok {
				path, bad = "."+string(fd.Name())+sub, true
			}
		}
		return !bad
	})
	return path, bad
}

// undeclaredValue is undeclaredEnum for one value of field fd.
func undeclaredValue(fd protoreflect.FieldDescriptor, v protoreflect.Value) (string, bool) {
	switch fd.Kind() {
	case protoreflect.EnumKind:
		return "", fd.Enum().Values().ByNumber(v.Enum()) == nil
	case protoreflect.MessageKind, protoreflect.GroupKind:
		return undeclaredEnum(v.Message())
	}
	return "", false
}

// checkEnums refuses a request holding an enum number its enum does not
// declare: INVALID_ARGUMENT naming the field, before any handler runs.
func checkEnums(req any) error {
	m, ok := req.(proto.Message)
	if !ok {
		return nil
	}
	path, bad := undeclaredEnum(m.ProtoReflect())
	if !bad {
		return nil
	}
	path = strings.TrimPrefix(path, ".")
	st := status.New(codes.InvalidArgument, "unknown enum value in "+path)
	if d, err := st.WithDetails(&errdetails.BadRequest{FieldViolations: []*errdetails.BadRequest_FieldViolation{{
		Field: path, Reason: "UNKNOWN_VALUE", Description: "not a value of its enum"}}}); err == nil {
		st = d
	}
	return st.Err()
}

func (s *Server) unaryEnums(ctx context.Context, req any, _ *grpc.UnaryServerInfo, handler grpc.UnaryHandler) (any, error) {
	if err := checkEnums(req); err != nil {
		return nil, err
	}
	return handler(ctx, req)
}

func (s *Server) streamEnums(srv any, ss grpc.ServerStream, _ *grpc.StreamServerInfo, handler grpc.StreamHandler) error {
	return handler(srv, enumStream{ss})
}

type enumStream struct{ grpc.ServerStream }

func (e enumStream) RecvMsg(m any) error {
	if err := e.ServerStream.RecvMsg(m); err != nil {
		return err
	}
	return checkEnums(m)
}
