package server

import (
	"context"
	"fmt"

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

// undeclaredEnum returns the path of the first enum field of m (at any
// depth, in lists and map values) holding a number its enum does not
// declare, or "". Enum numbers are checked against the generated
// descriptors, so values added to an enum pass without a change here.
func undeclaredEnum(m protoreflect.Message, path string) string {
	if m.Descriptor().FullName() == perFix {
		return ""
	}
	bad := ""
	m.Range(func(fd protoreflect.FieldDescriptor, v protoreflect.Value) bool {
		p := string(fd.Name())
		if path != "" {
			p = path + "." + p
		}
		switch {
		case fd.IsList():
			l := v.List()
			for i := 0; i < l.Len() && bad == ""; i++ {
				bad = undeclaredValue(fd, l.Get(i), fmt.Sprintf("%s[%d]", p, i))
			}
		case fd.IsMap():
			v.Map().Range(func(k protoreflect.MapKey, mv protoreflect.Value) bool {
				bad = undeclaredValue(fd.MapValue(), mv, fmt.Sprintf("%s[%v]", p, k.Interface()))
				return bad == ""
			})
		default:
			bad = undeclaredValue(fd, v, p)
		}
		return bad == ""
	})
	return bad
}

func undeclaredValue(fd protoreflect.FieldDescriptor, v protoreflect.Value, path string) string {
	switch fd.Kind() {
	case protoreflect.EnumKind:
		if fd.Enum().Values().ByNumber(v.Enum()) == nil {
			return path
		}
	case protoreflect.MessageKind, protoreflect.GroupKind:
		return undeclaredEnum(v.Message(), path)
	}
	return ""
}

// checkEnums refuses a request holding an enum number its enum does not
// declare: INVALID_ARGUMENT naming the field, before any handler runs.
func checkEnums(req any) error {
	m, ok := req.(proto.Message)
	if !ok {
		return nil
	}
	path := undeclaredEnum(m.ProtoReflect(), "")
	if path == "" {
		return nil
	}
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
