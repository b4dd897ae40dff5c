package main

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/nats-io/nkeys"

	"github.com/mountain-sar/sar/dispatch"
	sarv1 "github.com/mountain-sar/sar/gen/sar/v1"
)

// Seed files of the service users. Agency ids never start with "_", so
// these never collide with an agency's <agency>.nk.
const (
	sardSeedFile    = dispatch.ServiceSeedFile
	consoleSeedFile = "_console.nk"
)

type natsAuthCmd struct {
	Dir     string `name:"dir" env:"SAR_NATS_AUTH_DIR" default:"nats-auth" help:"Directory of the nkey seeds: <agency>.nk per agency, _sard.nk for sard, _console.nk for the console (mode 0600; existing seeds are kept)."`
	Out     string `name:"out" env:"SAR_NATS_AUTH_FILE" help:"The nats-server configuration include file to write (authorization block, public keys only). Default: <dir>/auth.conf."`
	Console bool   `name:"console" env:"SAR_NATS_AUTH_CONSOLE" help:"Also make a read-only console user (live subscriptions to every incident)."`
}

// Run lists the registered agencies (an admin token sees them all) and
// writes the authorization block with one nkey user per agency and sard's.
func (c *natsAuthCmd) Run(ctx context.Context, g *Globals, w io.Writer) error {
	agencies, err := listAllAgencies(ctx, g)
	if err != nil {
		return err
	}
	out := c.Out
	if out == "" {
		out = filepath.Join(c.Dir, "auth.conf")
	}
	return writeNATSAuth(c.Dir, out, agencies, c.Console, w)
}

func listAllAgencies(ctx context.Context, g *Globals) ([]string, error) {
	cc, err := dial(g.Client(), g.Addr)
	if err != nil {
		return nil, err
	}
	defer cc.Close()
	ctx, cancel := context.WithTimeout(withToken(ctx, g.Token), g.Timeout)
	defer cancel()
	who, err := sarv1.NewAuthServiceClient(cc).WhoAmI(ctx, &sarv1.WhoAmIRequest{})
	if err != nil {
		return nil, err
	}
	if who.GetPrincipal().GetRole() != sarv1.Role_ROLE_ADMIN {
		// Another role sees some agencies only: the file would lock out the rest.
		return nil, errors.New("nats-auth needs an admin token (--token): it writes the users of every agency")
	}
	resp, err := sarv1.NewAgencyServiceClient(cc).ListAgencies(ctx, &sarv1.ListAgenciesRequest{})
	if err != nil {
		return nil, err
	}
	ids := make([]string, 0, len(resp.GetAgencies()))
	for _, a := range resp.GetAgencies() {
		ids = append(ids, a.GetId())
	}
	slices.Sort(ids)
	return ids, nil
}

// writeNATSAuth makes or loads a seed per user and writes the config file.
// It never prints or writes a seed anywhere but its own file.
func writeNATSAuth(dir, out string, agencies []string, console bool, w io.Writer) error {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return fmt.Errorf("seed directory: %w", err)
	}
	type entry struct {
		file, comment string
		perms         dispatch.Permissions
	}
	entries := []entry{{sardSeedFile, "sard (the server itself)", dispatch.ServicePermissions()}}
	if console {
		entries = append(entries, entry{consoleSeedFile, "console (read-only)", dispatch.ConsolePermissions()})
	}
	for _, id := range agencies {
		p, err := dispatch.AgencyPermissions(id)
		if err != nil {
			return err
		}
		entries = append(entries, entry{id + ".nk", "agency " + id, p})
	}
	users := make([]dispatch.NkeyUser, 0, len(entries))
	made := 0
	for _, e := range entries {
		path := filepath.Join(dir, e.file)
		pub, isNew, err := userSeed(path)
		if err != nil {
			return err
		}
		if isNew {
			made++
		}
		state := "kept"
		if isNew {
			state = "new"
		}
		fmt.Fprintf(w, "%-40s %s  seed %s (%s)\n", e.comment, pub, path, state)
		users = append(users, dispatch.NkeyUser{Comment: e.comment, PublicKey: pub, Permissions: e.perms})
	}
	header := fmt.Sprintf("NATS users of sar.v1, written by `sarctl nats-auth` at %s.\n"+
		"Include it in nats-server.conf (include %q). It holds public keys only;\n"+
		"the seeds are in %s. Agency <a>: subscribe to its own subjects; durable consumers\n"+
		"<a>%s and <a>%s on %s; inbox prefix %s<a>.",
		time.Now().UTC().Format(time.RFC3339), filepath.Base(out), dir,
		dispatch.TaskConsumerSuffix, dispatch.NoticeConsumerSuffix, dispatch.StreamName, dispatch.AgencyInboxPrefix)
	conf, err := dispatch.AuthorizationConfig(header, users)
	if err != nil {
		return err
	}
	if err := writeFileAtomic(out, conf, 0o644); err != nil {
		return err
	}
	fmt.Fprintf(w, "wrote %s: %d users (%d new seeds, %d kept)\n", out, len(users), made, len(users)-made)
	if stale := staleSeeds(dir, agencies); len(stale) > 0 {
		fmt.Fprintf(w, "seeds of agencies no longer registered (no user in %s; not deleted): %s\n",
			filepath.Base(out), strings.Join(stale, ", "))
	}
	return nil
}

// userSeed returns the public key of the user seed in path, making the
// seed (mode 0600) if the file does not exist. An existing file that is not
// a user seed is an error: it is never overwritten.
func userSeed(path string) (pub string, isNew bool, err error) {
	seed, err := os.ReadFile(path)
	if errors.Is(err, fs.ErrNotExist) {
		kp, err := nkeys.CreateUser()
		if err != nil {
			return "", false, err
		}
		defer kp.Wipe()
		seed, _ := kp.Seed()
		f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
		if err != nil {
			return "", false, fmt.Errorf("seed file: %w", err)
		}
		_, werr := f.Write(append(seed, '\n'))
		if err := errors.Join(werr, f.Sync(), f.Close()); err != nil {
			return "", false, fmt.Errorf("seed file %s: %w", path, err)
		}
		pub, err := kp.PublicKey()
		return pub, true, err
	}
	if err != nil {
		return "", false, fmt.Errorf("seed file: %w", err)
	}
	kp, err := nkeys.FromSeed(bytes.TrimSpace(seed))
	if err != nil {
		return "", false, fmt.Errorf("seed file %s: not an nkey seed (left as it is): %w", path, err)
	}
	defer kp.Wipe()
	pub, err = kp.PublicKey()
	if err != nil || !nkeys.IsValidPublicUserKey(pub) {
		return "", false, fmt.Errorf("seed file %s: not a user seed (left as it is)", path)
	}
	if fi, err := os.Stat(path); err == nil && fi.Mode().Perm()&0o077 != 0 {
		if err := os.Chmod(path, 0o600); err != nil {
			return "", false, fmt.Errorf("seed file %s is readable by others and cannot be restricted: %w", path, err)
		}
	}
	return pub, false, nil
}

func writeFileAtomic(path string, data []byte, mode os.FileMode) error {
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return err
	}
	f, err := os.CreateTemp(filepath.Dir(path), "."+filepath.Base(path)+".*")
	if err != nil {
		return err
	}
	defer os.Remove(f.Name()) // after a successful rename: nothing to remove
	_, werr := f.Write(data)
	if err := errors.Join(werr, f.Chmod(mode), f.Sync(), f.Close()); err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	if err := os.Rename(f.Name(), path); err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	return nil
}

// staleSeeds lists <agency>.nk files of agencies not in the list.
func staleSeeds(dir string, agencies []string) []string {
	names, _ := filepath.Glob(filepath.Join(dir, "*.nk"))
	var stale []string
	for _, n := range names {
		id := strings.TrimSuffix(filepath.Base(n), ".nk")
		if !strings.HasPrefix(id, "_") && !slices.Contains(agencies, id) {
			stale = append(stale, filepath.Base(n))
		}
	}
	return stale
}
