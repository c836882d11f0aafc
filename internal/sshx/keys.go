// Package sshx is labforge's SSH client: it pins the guest's host key,
// retries while the guest boots, runs commands with their exit codes and
// copies files over SFTP.
package sshx

import (
	"crypto/ed25519"
	"crypto/rand"
	"encoding/pem"
	"fmt"
	"os"
	"strings"

	"golang.org/x/crypto/ssh"
)

// KeyPair is an Ed25519 key in the forms the guest and the client need.
type KeyPair struct {
	PrivatePEM    []byte // OpenSSH private key
	AuthorizedKey string // "ssh-ed25519 AAAA... comment"
	Signer        ssh.Signer
}

// NewKeyPair makes a fresh Ed25519 key pair.
func NewKeyPair(comment string) (*KeyPair, error) {
	_, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		return nil, fmt.Errorf("generate key: %w", err)
	}
	block, err := ssh.MarshalPrivateKey(priv, comment)
	if err != nil {
		return nil, fmt.Errorf("encode key: %w", err)
	}
	signer, err := ssh.NewSignerFromKey(priv)
	if err != nil {
		return nil, err
	}
	auth := strings.TrimSpace(string(ssh.MarshalAuthorizedKey(signer.PublicKey())))
	if comment != "" {
		auth += " " + comment
	}
	return &KeyPair{PrivatePEM: pem.EncodeToMemory(block), AuthorizedKey: auth, Signer: signer}, nil
}

// LoadSigner reads a private key written by NewKeyPair.
func LoadSigner(path string) (ssh.Signer, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	s, err := ssh.ParsePrivateKey(data)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return s, nil
}

// ParsePublicKey reads an authorized_keys style line.
func ParsePublicKey(line string) (ssh.PublicKey, error) {
	k, _, _, _, err := ssh.ParseAuthorizedKey([]byte(line))
	return k, err
}
