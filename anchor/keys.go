package anchor

import (
	"bytes"
	"crypto/ed25519"
	"crypto/rand"
	"crypto/x509"
	"encoding/base64"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
)

// Keys are PEM files in the standard forms (PKCS #8 "PRIVATE KEY", PKIX
// "PUBLIC KEY"), so that `openssl genpkey -algorithm ed25519` makes one too
// and any tool can verify an anchor.

// keyFileMax bounds a key file read: a PEM key is about 120 bytes.
const keyFileMax = 64 << 10

// keyringFilesMax bounds the public keys a keyring reads from directories.
const keyringFilesMax = 1024

// ErrNoKey: a key's text holds no Ed25519 key.
var ErrNoKey = errors.New("no Ed25519 key")

// GenerateKey returns a new key pair as PEM: the private key (PKCS #8) and
// its public key (PKIX).
func GenerateKey() (private, public []byte, err error) {
	pub, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		return nil, nil, err
	}
	privDER, err := x509.MarshalPKCS8PrivateKey(priv)
	if err != nil {
		return nil, nil, err
	}
	return pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: privDER}), PublicPEM(pub), nil
}

// PublicPEM is a public key in PEM (PKIX).
func PublicPEM(pub ed25519.PublicKey) []byte {
	der, err := x509.MarshalPKIXPublicKey(pub)
	if err != nil {
		panic(err) // an Ed25519 key always marshals
	}
	return pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: der})
}

// ParsePrivateKey reads a private key: PEM (PKCS #8), or the standard
// base64 of its 32-byte seed (a form that fits an environment variable on
// one line).
//
// Errors: ErrNoKey.
func ParsePrivateKey(text []byte) (ed25519.PrivateKey, error) {
	text = bytes.TrimSpace(text)
	if !bytes.HasPrefix(text, []byte("-----BEGIN")) {
		seed, err := base64.StdEncoding.DecodeString(string(text))
		if err != nil || len(seed) != ed25519.SeedSize {
			return nil, fmt.Errorf("%w: neither PEM nor the base64 of a 32-byte seed", ErrNoKey)
		}
		return ed25519.NewKeyFromSeed(seed), nil
	}
	block, _ := pem.Decode(text)
	if block == nil || block.Type != "PRIVATE KEY" {
		return nil, fmt.Errorf("%w: want a PEM PRIVATE KEY block", ErrNoKey)
	}
	k, err := x509.ParsePKCS8PrivateKey(block.Bytes)
	if err != nil {
		return nil, fmt.Errorf("%w: %v", ErrNoKey, err)
	}
	priv, ok := k.(ed25519.PrivateKey)
	if !ok {
		return nil, fmt.Errorf("%w: a %T", ErrNoKey, k)
	}
	return priv, nil
}

// ParsePublicKey reads a public key (PEM, PKIX). A private key is taken
// for its public half, so the signer's own key file also verifies.
//
// Errors: ErrNoKey.
func ParsePublicKey(text []byte) (ed25519.PublicKey, error) {
	block, _ := pem.Decode(bytes.TrimSpace(text))
	switch {
	case block == nil:
		return nil, fmt.Errorf("%w: no PEM block", ErrNoKey)
	case block.Type == "PRIVATE KEY":
		priv, err := ParsePrivateKey(text)
		if err != nil {
			return nil, err
		}
		return priv.Public().(ed25519.PublicKey), nil
	case block.Type != "PUBLIC KEY":
		return nil, fmt.Errorf("%w: a PEM %s block", ErrNoKey, block.Type)
	}
	k, err := x509.ParsePKIXPublicKey(block.Bytes)
	if err != nil {
		return nil, fmt.Errorf("%w: %v", ErrNoKey, err)
	}
	pub, ok := k.(ed25519.PublicKey)
	if !ok {
		return nil, fmt.Errorf("%w: a %T", ErrNoKey, k)
	}
	return pub, nil
}

// ReadKeyFile reads a file of at most 64 KiB.
func ReadKeyFile(path string) ([]byte, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	b, err := io.ReadAll(io.LimitReader(f, keyFileMax+1))
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	if len(b) > keyFileMax {
		return nil, fmt.Errorf("%s: over %d bytes: not a key", path, keyFileMax)
	}
	return b, nil
}

// LoadKeyring trusts the public keys of paths: each a key file, or a
// directory whose *.pub and *.pem files are keys (key rotation: the old
// public keys stay beside the new).
//
// Errors: a path that cannot be read; a file that holds no key; more than
// 1,024 files; no key at all.
func LoadKeyring(paths ...string) (*Keyring, error) {
	r := NewKeyring()
	files := 0
	for _, p := range paths {
		st, err := os.Stat(p)
		if err != nil {
			return nil, err
		}
		names := []string{p}
		if st.IsDir() {
			if names, err = keyFiles(p); err != nil {
				return nil, err
			}
		}
		for _, name := range names {
			if files++; files > keyringFilesMax {
				return nil, fmt.Errorf("more than %d public key files", keyringFilesMax)
			}
			text, err := ReadKeyFile(name)
			if err != nil {
				return nil, err
			}
			pub, err := ParsePublicKey(text)
			if err != nil {
				return nil, fmt.Errorf("%s: %w", name, err)
			}
			r.Add(pub)
		}
	}
	if r.Len() == 0 {
		return nil, fmt.Errorf("%s: %w", strings.Join(paths, ", "), ErrNoKey)
	}
	return r, nil
}

func keyFiles(dir string) ([]string, error) {
	var out []string
	for _, pattern := range []string{"*.pub", "*.pem"} {
		m, err := filepath.Glob(filepath.Join(dir, pattern))
		if err != nil {
			return nil, err
		}
		out = append(out, m...)
	}
	return out, nil
}
