package pgtest

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
)

// cachePrefix names the per-machine copies of a freshly initialised data
// directory. It differs from dirPrefix so that stale cleanup leaves them alone.
const cachePrefix = "txoutbox-pginit-"

// initData fills c.dataDir with a new, empty cluster. initdb takes most of a
// second, far longer than copying its result, so the first Start with given
// binaries keeps a pristine copy in the system temp directory and later ones
// copy it. Any problem with the copy falls back to running initdb.
func (c *Cluster) initData(ctx context.Context) (cached bool, err error) {
	cache := c.cacheDir()
	if cache == "" {
		return false, c.initdb(ctx, c.dataDir)
	}
	if fi, err := os.Stat(cache); err == nil {
		if !c.as.owns(fi) {
			c.logf("pgtest: ignoring %s: not private to the server's account", cache)
			return false, c.initdb(ctx, c.dataDir)
		}
		if err := copyTree(cache, c.dataDir, c.as); err == nil {
			return true, nil
		}
		_ = os.RemoveAll(c.dataDir)
		return false, c.initdb(ctx, c.dataDir)
	}
	// Build the cache: initdb next to the data directory, publish it with an
	// atomic rename (another process may win the race; then theirs is used
	// next time and ours is removed with the cluster), and copy it.
	fresh := filepath.Join(c.dir, "pginit")
	if err := c.initdb(ctx, fresh); err != nil {
		return false, err
	}
	src := fresh
	if os.Rename(fresh, cache) == nil {
		src = cache
	}
	if err := copyTree(src, c.dataDir, c.as); err != nil {
		return false, fmt.Errorf("pgtest: copy initialised data directory: %w", err)
	}
	return false, nil
}

// cacheDir returns where the pristine data directory for these binaries lives,
// or "" if the binaries cannot be identified. The key covers the binaries'
// identity (path, size, modification time), so upgrading PostgreSQL in place
// yields a new cache, and the user, so that accounts do not share one.
func (c *Cluster) cacheDir() string {
	h := sha256.New()
	fmt.Fprintf(h, "%d\n", os.Geteuid())
	for _, name := range []string{"initdb", "postgres"} {
		path, err := filepath.EvalSymlinks(filepath.Join(c.binDir, name))
		if err != nil {
			return ""
		}
		fi, err := os.Stat(path)
		if err != nil {
			return ""
		}
		fmt.Fprintf(h, "%s %d %d\n", path, fi.Size(), fi.ModTime().UnixNano())
	}
	return filepath.Join(os.TempDir(), cachePrefix+hex.EncodeToString(h.Sum(nil))[:16])
}

// copyTree copies the directory src to dst, which must not exist, giving the
// copy to the server's account. A data directory holds only directories and
// regular files; anything else is an error.
func copyTree(src, dst string, as *runAs) error {
	return filepath.WalkDir(src, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, err := filepath.Rel(src, path)
		if err != nil {
			return err
		}
		target := filepath.Join(dst, rel)
		switch {
		case d.IsDir():
			err = os.Mkdir(target, 0o700)
		case d.Type().IsRegular():
			err = copyFile(path, target)
		default:
			err = fmt.Errorf("unexpected file type %v: %s", d.Type(), path)
		}
		if err != nil {
			return err
		}
		return as.chown(target)
	})
}

func copyFile(src, dst string) error {
	in, err := os.Open(src)
	if err != nil {
		return err
	}
	defer in.Close()
	out, err := os.OpenFile(dst, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return err
	}
	if _, err := io.Copy(out, in); err != nil {
		out.Close()
		return err
	}
	return out.Close()
}
