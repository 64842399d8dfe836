package hsm

import (
	"context"

	"github.com/hsmkit/cryptech-backup/hashsig"
)

type progressKey struct{}

// WithProgress returns a context under which the HSM's long work for one
// call (building an HSS key's trees: generating a key, the first signature
// of a key loaded from flash) tells progress how far it has got. The
// context carries it so that hsmapi.Token needs no change; a caller that
// does not ask is told nothing.
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
