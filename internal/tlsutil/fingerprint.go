package tlsutil

import (
	"crypto/sha256"
	"crypto/x509"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"strings"
)

// Fingerprint is the SHA-256 of a certificate's DER encoding, as
// uppercase hex pairs joined by colons: what
// `openssl x509 -noout -fingerprint -sha256` prints, and what clients pin.
func Fingerprint(c *x509.Certificate) string {
	sum := sha256.Sum256(c.Raw)
	return formatHex(sum[:])
}

// SPKIHash is the base64 SHA-256 of a certificate's public key
// (SubjectPublicKeyInfo): what Chromium's --ignore-certificate-errors-spki-list
// and HTTP public key pinning name.
func SPKIHash(c *x509.Certificate) string {
	sum := sha256.Sum256(c.RawSubjectPublicKeyInfo)
	return base64.StdEncoding.EncodeToString(sum[:])
}

func formatHex(b []byte) string {
	s := strings.ToUpper(hex.EncodeToString(b))
	var out strings.Builder
	for i := 0; i < len(s); i += 2 {
		if i > 0 {
			out.WriteByte(':')
		}
		out.WriteString(s[i : i+2])
	}
	return out.String()
}

// ParseFingerprint reads a SHA-256 fingerprint written as 64 hex digits,
// with or without colons, in either case, optionally prefixed "sha256:".
func ParseFingerprint(s string) ([]byte, error) {
	s = strings.TrimSpace(s)
	if len(s) > 7 && strings.EqualFold(s[:7], "sha256:") {
		s = s[7:]
	}
	b, err := hex.DecodeString(strings.ReplaceAll(s, ":", ""))
	if err != nil || len(b) != sha256.Size {
		return nil, errors.New("a certificate fingerprint is the SHA-256 of the certificate: 64 hex digits (colons allowed)")
	}
	return b, nil
}

// ParseSPKIPin reads the SHA-256 of a public key (SubjectPublicKeyInfo),
// written in base64 as SPKIHash returns it (optionally prefixed "sha256/",
// as in HTTP public key pinning) or as 64 hex digits (colons allowed).
func ParseSPKIPin(s string) ([]byte, error) {
	s = strings.TrimSpace(s)
	if len(s) > 7 && strings.EqualFold(s[:7], "sha256/") {
		s = s[7:]
	}
	if b, err := base64.StdEncoding.DecodeString(s); err == nil && len(b) == sha256.Size {
		return b, nil
	}
	if b, err := hex.DecodeString(strings.ReplaceAll(s, ":", "")); err == nil && len(b) == sha256.Size {
		return b, nil
	}
	return nil, errors.New("a public key pin is the SHA-256 of the certificate's SubjectPublicKeyInfo: 44 base64 characters or 64 hex digits")
}
