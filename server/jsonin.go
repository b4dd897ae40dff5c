package server

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"math"
	"reflect"
	"strings"

	"github.com/grpc-ecosystem/grpc-gateway/v2/runtime"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoreflect"
)

// jsonIn is the gateway's marshaler: grpc-gateway's default (protojson,
// unpopulated fields emitted, unknown fields dropped) with two rules for
// request bodies, so that the JSON door agrees with the gRPC door:
//
//   - An enum value given by a name the enum does not declare is refused
//     (protojson's DiscardUnknown would store it as 0, UNSPECIFIED, where
//     gRPC refuses the unknown number). Numbers pass as they do on gRPC
//     and are checked by the domain.
//   - A position (a message with double fields lat and lng: LatLng,
//     LocationFix) whose lat or lng is missing or null gets NaN there, so
//     the domain refuses it as missing coordinates instead of storing 0.
type jsonIn struct{ *runtime.HTTPBodyMarshaler }

func newJSONIn() jsonIn {
	return jsonIn{&runtime.HTTPBodyMarshaler{Marshaler: &runtime.JSONPb{
		MarshalOptions:   protojson.MarshalOptions{EmitUnpopulated: true},
		UnmarshalOptions: protojson.UnmarshalOptions{DiscardUnknown: true},
	}}}
}

func (j jsonIn) Unmarshal(data []byte, v any) error {
	if err := j.HTTPBodyMarshaler.Unmarshal(data, v); err != nil {
		return err
	}
	return checkIn(data, v)
}

func (j jsonIn) NewDecoder(r io.Reader) runtime.Decoder {
	d := json.NewDecoder(r)
	return runtime.DecoderFunc(func(v any) error {
		var raw json.RawMessage
		if err := d.Decode(&raw); err != nil {
			return err // io.EOF for an empty body, as the default decoder
		}
		return j.Unmarshal(raw, v)
	})
}

// checkIn applies the two rules to the decoded message v (a message or a
// pointer to one) and its JSON.
func checkIn(data []byte, v any) error {
	m, ok := v.(proto.Message)
	if !ok {
		rv := reflect.ValueOf(v)
		if rv.Kind() != reflect.Pointer || rv.IsNil() {
			return nil
		}
		if m, ok = rv.Elem().Interface().(proto.Message); !ok || rv.Elem().IsNil() {
			return nil
		}
	}
	d := json.NewDecoder(bytes.NewReader(data))
	d.UseNumber()
	var tree any
	if err := d.Decode(&tree); err != nil {
		return nil // protojson accepted it: nothing more to say
	}
	return walkIn(tree, m.ProtoReflect().Descriptor(), m.ProtoReflect(), "")
}

// walkIn checks a JSON value against message descriptor md; m is the
// decoded message at that place (nil where it is not followed: map values).
func walkIn(val any, md protoreflect.MessageDescriptor, m protoreflect.Message, path string) error {
	obj, ok := val.(map[string]any)
	if !ok || strings.HasPrefix(string(md.FullName()), "google.protobuf.") {
		return nil // well-known types have their own JSON forms
	}
	fields := md.Fields()
	if m != nil {
		missingCoordinates(obj, fields, m)
	}
	for key, v := range obj {
		fd := fields.ByJSONName(key)
		if fd == nil {
			fd = fields.ByName(protoreflect.Name(key))
		}
		if fd == nil || v == nil {
			continue // unknown fields are dropped; null is unset
		}
		p := key
		if path != "" {
			p = path + "." + key
		}
		switch {
		case fd.IsMap():
			entries, _ := v.(map[string]any)
			for k, ev := range entries {
				if err := walkValue(ev, fd.MapValue(), nil, fmt.Sprintf("%s[%q]", p, k)); err != nil {
					return err
				}
			}
		case fd.IsList():
			items, _ := v.([]any)
			for i, ev := range items {
				var em protoreflect.Message
				if m != nil && fd.Message() != nil && i < m.Get(fd).List().Len() {
					em = m.Get(fd).List().Get(i).Message()
				}
				if err := walkValue(ev, fd, em, fmt.Sprintf("%s[%d]", p, i)); err != nil {
					return err
				}
			}
		default:
			var em protoreflect.Message
			if m != nil && fd.Message() != nil && m.Has(fd) {
				em = m.Mutable(fd).Message()
			}
			if err := walkValue(v, fd, em, p); err != nil {
				return err
			}
		}
	}
	return nil
}

func walkValue(v any, fd protoreflect.FieldDescriptor, m protoreflect.Message, path string) error {
	switch fd.Kind() {
	case protoreflect.EnumKind:
		s, ok := v.(string)
		if ok && fd.Enum().FullName() != "google.protobuf.NullValue" && fd.Enum().Values().ByName(protoreflect.Name(s)) == nil {
			return fmt.Errorf("%s: %q is not a value of %s", path, s, fd.Enum().FullName())
		}
	case protoreflect.MessageKind, protoreflect.GroupKind:
		return walkIn(v, fd.Message(), m, path)
	}
	return nil
}

// missingCoordinates sets NaN in a position's lat or lng that the JSON
// left out or set to null.
func missingCoordinates(obj map[string]any, fields protoreflect.FieldDescriptors, m protoreflect.Message) {
	lat, lng := fields.ByName("lat"), fields.ByName("lng")
	if lat == nil || lng == nil || lat.Kind() != protoreflect.DoubleKind || lng.Kind() != protoreflect.DoubleKind {
		return
	}
	for _, fd := range []protoreflect.FieldDescriptor{lat, lng} {
		if v, ok := obj[fd.JSONName()]; ok && v != nil {
			continue
		}
		if v, ok := obj[string(fd.Name())]; ok && v != nil {
			continue
		}
		m.Set(fd, protoreflect.ValueOfFloat64(math.NaN()))
	}
}
