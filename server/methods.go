package server

import (
	"context"
	"net/http"
	"strings"

	"github.com/grpc-ecosystem/grpc-gateway/v2/runtime"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// gatewayMethods are the HTTP methods the gateway's routes may use.
var gatewayMethods = []string{http.MethodGet, http.MethodPost, http.MethodPut, http.MethodPatch, http.MethodDelete}

type matchedKey struct{}

// methodRouting answers a path the gateway knows but not for the request's
// method with 405 Method Not Allowed and an Allow header naming the
// methods it takes (grpc-gateway alone answers 501 without one). The
// methods are found by asking probe, a second mux with the same routes
// whose handlers only note that they matched.
func methodRouting(register func(*runtime.ServeMux)) runtime.ServeMuxOption {
	probe := runtime.NewServeMux(
		runtime.WithDisablePathLengthFallback(),
		runtime.WithMiddlewares(func(runtime.HandlerFunc) runtime.HandlerFunc {
			return func(_ http.ResponseWriter, r *http.Request, _ map[string]string) {
				if m, ok := r.Context().Value(matchedKey{}).(*bool); ok {
					*m = true
				}
			}
		}),
		runtime.WithRoutingErrorHandler(func(context.Context, *runtime.ServeMux, runtime.Marshaler, http.ResponseWriter, *http.Request, int) {}),
	)
	register(probe)
	allowed := func(r *http.Request) []string {
		var out []string
		for _, m := range gatewayMethods {
			matched := false
			pr := r.Clone(context.WithValue(r.Context(), matchedKey{}, &matched))
			pr.Method, pr.Body = m, http.NoBody
			probe.ServeHTTP(discardWriter{}, pr)
			if matched {
				out = append(out, m)
			}
		}
		return out
	}
	return runtime.WithRoutingErrorHandler(func(ctx context.Context, mux *runtime.ServeMux, m runtime.Marshaler, w http.ResponseWriter, r *http.Request, code int) {
		if code != http.StatusMethodNotAllowed {
			runtime.DefaultRoutingErrorHandler(ctx, mux, m, w, r, code)
			return
		}
		allow := allowed(r)
		w.Header().Set("Allow", strings.Join(allow, ", "))
		runtime.DefaultHTTPErrorHandler(ctx, mux, m, w, r, &runtime.HTTPStatusError{HTTPStatus: http.StatusMethodNotAllowed,
			Err: status.Errorf(codes.Unimplemented, "method %s not allowed on %s; allowed: %s", r.Method, r.URL.Path, strings.Join(allow, ", "))})
	})
}

type discardWriter struct{}

func (discardWriter) Header() http.Header         { return http.Header{} }
func (discardWriter) Write(b []byte) (int, error) { return len(b), nil }
func (discardWriter) WriteHeader(int)             {}
