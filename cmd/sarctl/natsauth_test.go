package main

import (
	"bytes"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	natsserver "github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nkeys"

	"github.com/mountain-sar/sar/dispatch"
	sarv1 "github.com/mountain-sar/sar/gen/sar/v1"
)

// readAuth parses the written file as nats-server does and returns its
// users' public keys and their subscribe permissions.
func readAuth(t *testing.T, path string) map[string][]string {
	t.Helper()
	o, err := natsserver.ProcessConfigFile(path)
	if err != nil {
		b, _ := os.ReadFile(path)
		t.Fatalf("nats-server cannot read %s: %v\n%s", path, err, b)
	}
	users := map[string][]string{}
	for _, u := range o.Nkeys {
		if u.Permissions == nil || u.Permissions.Subscribe == nil {
			t.Fatalf("user %s has no subscribe permissions", u.Nkey)
		}
		users[u.Nkey] = u.Permissions.Subscribe.Allow
	}
	return users
}

// seedPub checks a seed file's mode and returns its public key.
func seedPub(t *testing.T, path string) (string, []byte) {
	t.Helper()
	fi, err := os.Stat(path)
	if err != nil {
		t.Fatalf("seed file: %v", err)
	}
	if fi.Mode().Perm() != 0o600 {
		t.Errorf("%s: mode %v, want 0600", path, fi.Mode().Perm())
	}
	b, _ := os.ReadFile(path)
	kp, err := nkeys.ParseDecoratedNKey(b)
	if err != nil {
		t.Fatalf("%s: %v", path, err)
	}
	pub, _ := kp.PublicKey()
	return pub, b
}

func TestNATSAuthCommand(t *testing.T) {
	if testing.Short() {
		t.Skip("starts Redis, NATS and sard")
	}
	s := startServer(t)
	admin := s.globals(s.admin)
	for _, id := range []string{"valley-rescue", "ridge-rescue"} {
		run(t, admin, &agencyCreateCmd{ID: id, Name: id, Kind: "volunteer-rescue", Jurisdiction: "valley"}, &sarv1.CreateAgencyResponse{})
	}
	dir := filepath.Join(t.TempDir(), "seeds")
	cmd := &natsAuthCmd{Dir: dir, Console: true}
	var out bytes.Buffer
	if err := cmd.Run(t.Context(), admin, &out); err != nil {
		t.Fatalf("nats-auth: %v", err)
	}
	conf := filepath.Join(dir, "auth.conf")
	users := readAuth(t, conf)
	if len(users) != 4 {
		t.Fatalf("%s has %d users, want 4 (sard, console, 2 agencies):\n%s", conf, len(users), out.String())
	}
	seeds := map[string][]byte{}
	for file, wantSub := range map[string]string{
		"_sard.nk": "_INBOX.>", "_console.nk": "sar.v1.inc.>",
		"valley-rescue.nk": dispatch.TaskFilter("valley-rescue"), "ridge-rescue.nk": dispatch.TaskFilter("ridge-rescue"),
	} {
		pub, seed := seedPub(t, filepath.Join(dir, file))
		seeds[file] = seed
		if !slices.Contains(users[pub], wantSub) {
			t.Errorf("user of %s (%s) may subscribe to %q, want %q among them", file, pub, users[pub], wantSub)
		}
		// Seeds are never printed nor written into the config.
		trimmed := strings.TrimSpace(string(seed))
		confText, _ := os.ReadFile(conf)
		if strings.Contains(out.String(), trimmed) || strings.Contains(string(confText), trimmed) {
			t.Errorf("the seed of %s was printed or written into the config", file)
		}
	}

	// Again, with a new agency: the old seeds are kept, one is added.
	run(t, admin, &agencyCreateCmd{ID: "fire-1", Name: "Fire brigade", Kind: "fire-brigade", Jurisdiction: "valley"}, &sarv1.CreateAgencyResponse{})
	other := filepath.Join(t.TempDir(), "nats", "sar-auth.conf")
	out.Reset()
	if err := (&natsAuthCmd{Dir: dir, Out: other}).Run(t.Context(), admin, &out); err != nil {
		t.Fatalf("nats-auth again: %v", err)
	}
	users = readAuth(t, other)
	if len(users) != 4 { // no --console this time
		t.Errorf("second run: %d users, want 4 (sard and 3 agencies)", len(users))
	}
	for file, seed := range seeds {
		pub, again := seedPub(t, filepath.Join(dir, file))
		if !bytes.Equal(again, seed) {
			t.Errorf("%s changed on a re-run", file)
		}
		if _, ok := users[pub]; !ok && file != "_console.nk" {
			t.Errorf("the kept seed %s is not a user of the new file", file)
		}
	}
	if pub, _ := seedPub(t, filepath.Join(dir, "fire-1.nk")); users[pub] == nil {
		t.Errorf("new agency fire-1 has no user")
	}
	if !strings.Contains(out.String(), "3 kept") || !strings.Contains(out.String(), "1 new") {
		t.Errorf("second run output %q, want 1 new seed and 3 kept", out.String())
	}

	// A seed file someone loosened is restricted again; a broken one is
	// never overwritten.
	if err := os.Chmod(filepath.Join(dir, "fire-1.nk"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "ridge-rescue.nk"), []byte("not a seed"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := cmd.Run(t.Context(), admin, &out); err == nil || !strings.Contains(err.Error(), "ridge-rescue.nk") {
		t.Errorf("nats-auth with a broken seed file: %v, want an error naming it", err)
	}
	if b, _ := os.ReadFile(filepath.Join(dir, "ridge-rescue.nk")); string(b) != "not a seed" {
		t.Errorf("the broken seed file was overwritten")
	}
	seedPub(t, filepath.Join(dir, "fire-1.nk")) // mode 0600 again (checked before the broken file)

	// Only an admin sees every agency.
	op := run(t, admin, &credentialCreateCmd{Role: "operator", Jurisdiction: "valley", Name: "Olga"}, &sarv1.CreateCredentialResponse{})
	if err := cmd.Run(t.Context(), s.globals(op.GetToken()), &out); err == nil || !strings.Contains(err.Error(), "admin") {
		t.Errorf("nats-auth with an operator token: %v, want a refusal asking for an admin token", err)
	}
}
