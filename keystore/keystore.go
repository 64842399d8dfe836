package keystore

import (
	"errors"

	"github.com/hsmkit/cryptech-backup/sim"
)

// ID names a record.
type ID [16]byte

// Kind tells the caller's record types apart (keys, PINs, ...). Zero is not
// a valid kind.
type Kind uint8

// Record is one entry of the keystore.
type Record struct {
	ID   ID
	Kind Kind
	Data []byte
}

var (
	ErrNotFound = errors.New("keystore: record not found")
	ErrExists   = errors.New("keystore: record already exists")
	ErrFull     = errors.New("keystore: no free flash blocks")
	ErrTooLarge = errors.New("keystore: record too large for a flash block")
)

// MaxDataSize is the largest Data a record can hold.
const MaxDataSize = sim.BlockSize - 64

// Store is a keystore on one flash chip. It is safe for concurrent use.
type Store struct{}

// Open scans flash, recovers from any interrupted operation and returns the store.
func Open(f *sim.Flash) (*Store, error) { panic("TODO") }

// Get returns the record with the given id, or ErrNotFound.
func (s *Store) Get(id ID) (Record, error) { panic("TODO") }

// List returns the IDs of every record of the given kind, sorted.
func (s *Store) List(kind Kind) []ID { panic("TODO") }

// Put creates or replaces one record; it is durable when Put returns.
func (s *Store) Put(r Record) error { panic("TODO") }

// PutAll creates several new records atomically: after a power cut, either all
// of them are present or none is. Every ID must be new (ErrExists otherwise,
// and nothing is written).
func (s *Store) PutAll(rs []Record) error { panic("TODO") }

// Delete removes the record with the given id, or returns ErrNotFound.
func (s *Store) Delete(id ID) error { panic("TODO") }

// Free returns the number of erased blocks available for new records.
func (s *Store) Free() int { panic("TODO") }
