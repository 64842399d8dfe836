module github.com/hsmkit/cryptech-backup

go 1.26
