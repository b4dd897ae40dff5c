// Package tlsutil holds sard's transport security helpers: the server's
// certificate, reloaded from its files without a restart; a self-signed
// certificate for an embedded LAN demo; certificate fingerprints; and the
// client side that sarctl and sarsim share (TLS by default to any address
// that is not loopback, a CA bundle or a pinned certificate, plaintext to a
// remote address only when asked).
package tlsutil
