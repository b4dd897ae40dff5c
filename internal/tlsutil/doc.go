// Package tlsutil holds sard's transport security helpers: the server's
// certificate and the client CA bundle of mutual TLS, each reloaded from
// its file without a restart; a self-signed certificate for an embedded
// LAN demo; certificate and public-key fingerprints; and the client side
// that sarctl, sarsim and mobileclient share (TLS by default to any
// address that is not loopback, a CA bundle or a pinned certificate or
// public key, plaintext to a remote address only when asked).
package tlsutil
