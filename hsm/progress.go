package hsm

import (
	"context"

	"github.com/hsmkit/cryptech-backup/hashsig"
)

type progressKey struct{}

// WithProgress returns a context under which the HSM's long work for one
// call tells progress how far it has got: GenerateKey and Sign count the
// leaves of the HSS trees they build (a new key; the first signature of a
// key loaded from flash), ImportBatch, StoreKeys, CheckStoredKeys and
// RestoreKeys the keys they have decrypted or wrapped. The context carries
// it so that hsmapi.Token needs no change; a caller that does not ask is
// told nothing.
func WithProgress(ctx context.Context, progress func(done, total int)) context.Context {
	if progress == nil {
		return ctx
	}
	return context.WithValue(ctx, progressKey{}, hashsig.Progress(progress))
}

func progressFrom(ctx context.Context) hashsig.Progress {
	p, _ := ctx.Value(progressKey{}).(hashsig.Progress)
	return p
}
