package sar

import (
	"crypto/rand"
	"regexp"
	"strings"
	"sync"
	"time"

	"github.com/oklog/ulid/v2"
)

// Limits that protect the server and keep keys and subjects well formed.
const (
	MaxBatchFixes = 500       // fixes in one batch
	MaxTitleLen   = 200       // incident title
	MaxTextLen    = 4000      // free text fields
	MaxNameLen    = 120       // display names
	MaxSequence   = 1<<53 - 1 // exact in a Lua (double) number
	// MaxSkip is how far past the device's acked-through sequence
	// FixBatch.skipped_through may reach (a million fixes: more than 11
	// days at one a second), so a wrong value cannot push the device out
	// of the sequences it can still use.
	MaxSkip         = 1_000_000
	MaxAccuracyM    = 100_000 // 100 km: anything coarser says nothing
	MaxAltitudeM    = 12_000
	MinAltitudeM    = -1_000
	MaxSpeedMPS     = 350 // a helicopter, generously
	MaxRequestIDLen = 64
)

// slugRE is the alphabet of agency, team and jurisdiction ids: they appear
// in Redis keys and NATS subject tokens, so no dots, wildcards or spaces.
var slugRE = regexp.MustCompile(`^[a-z0-9][a-z0-9_-]{0,62}$`)

// deviceRE is the alphabet of device ids, chosen by devices.
var deviceRE = regexp.MustCompile(`^[A-Za-z0-9_-]{1,64}$`)

// idRE matches server-made ids (lowercase ULIDs).
var idRE = regexp.MustCompile(`^[0-9a-hjkmnp-tv-z]{26}$`)

// ValidSlug reports whether s is a valid agency, team or jurisdiction id.
func ValidSlug(s string) bool { return slugRE.MatchString(s) }

// ValidDeviceID reports whether s is a valid device id.
func ValidDeviceID(s string) bool { return deviceRE.MatchString(s) }

// ValidID reports whether s looks like a server-made id (incident,
// participant, event). Checking it first keeps junk out of Redis keys.
func ValidID(s string) bool { return idRE.MatchString(s) }

var (
	idMu      sync.Mutex
	idEntropy = ulid.Monotonic(rand.Reader, 0)
)

// NewID returns a new lowercase ULID: unique, 26 characters of Crockford
// base32 (safe in keys and subjects), and strictly increasing within this
// process, so that ids order events even within one millisecond.
func NewID() string {
	idMu.Lock()
	defer idMu.Unlock()
	return strings.ToLower(ulid.MustNew(ulid.Timestamp(time.Now()), idEntropy).String())
}
