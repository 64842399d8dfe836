#!/usr/bin/env bash
# bench-vs-hash-sigs.sh: times this project's `cryptech-backup hashsig`
# commands side by side with Cisco hash-sigs' `demo` program and prints the
# medians and the ratio ours/theirs, one table.
#
#   scripts/bench-vs-hash-sigs.sh [--hash-sigs DIR] [--runs N] [--cases LIST]
#
# DIR is a checkout of Cisco hash-sigs (https://github.com/cisco/hash-sigs;
# `git clone` it anywhere, this script never fetches it); it defaults to
# $HASH_SIGS_DIR. It is built in a temporary copy (`make demo`, which needs
# gcc and the OpenSSL headers: libssl-dev), so DIR is never written to.
# Without a checkout the script says so on stderr and prints this project's
# timings alone.
#
# Each run is a fresh process of each tool, the two tools alternating (the
# order swapped every run) so that a change in the machine's load falls on
# both. Keys are read from disk by every `sign`: hash-sigs loads NAME.prv and
# its NAME.aux (the tree's upper nodes, written by genkey); this project
# loads --priv (and whatever companion file its keygen and sign write).
# Times are wall-clock (date +%s%N), which includes process start.
#
# Cases (--cases takes a comma-separated list, or "all"; the default is
# every case but sign-h20w8, whose keygen alone takes minutes):
#   keygen-h10w4        keygen, 1 level, sha256-m32-h10 / sha256-n32-w4 (hash-sigs 10/4)
#   keygen-h10w4x2      keygen, 2 levels, h10/w4 + h10/w4 (hash-sigs 10/4,10/4)
#   keygen-sign-h10w4x2 keygen of the same, then the first sign, two processes
#   sign-h15w4          one sign process, 1 level h15/w4 (hash-sigs 15/4)
#   sign-h20w8          one sign process, 1 level h20/w8 (hash-sigs 20/8)
#   verify              one verify process, a 2-level h10/w4 signature
# Every message signed or verified is the same 64 KiB file (MSG_BYTES).
set -euo pipefail

readonly MSG_BYTES=$((64 * 1024))
readonly DEFAULT_CASES="keygen-h10w4,keygen-h10w4x2,keygen-sign-h10w4x2,sign-h15w4,verify"
readonly ALL_CASES="keygen-h10w4,keygen-h10w4x2,keygen-sign-h10w4x2,sign-h15w4,sign-h20w8,verify"

usage() {
	echo "usage: $0 [--hash-sigs DIR] [--runs N] [--cases LIST|all]" >&2
	echo "cases: ${ALL_CASES//,/ } (default: ${DEFAULT_CASES//,/ })" >&2
	exit 2
}

die() {
	echo "bench-vs-hash-sigs: $*" >&2
	exit 1
}

hash_sigs_dir=${HASH_SIGS_DIR:-}
runs=5
cases=$DEFAULT_CASES
while (($#)); do
	case $1 in
	--hash-sigs) (($# >= 2)) || usage; hash_sigs_dir=$2; shift 2 ;;
	--runs) (($# >= 2)) || usage; runs=$2; shift 2 ;;
	--cases) (($# >= 2)) || usage; cases=$2; shift 2 ;;
	-h | --help) usage ;;
	*) echo "bench-vs-hash-sigs: unknown argument: $1" >&2; usage ;;
	esac
done
[[ $runs =~ ^[1-9][0-9]*$ ]] || die "--runs takes a positive number, not \"$runs\""
[[ $cases == all ]] && cases=$ALL_CASES
IFS=, read -r -a case_list <<<"$cases"
((${#case_list[@]})) || die "--cases takes at least one case"
for c in "${case_list[@]}"; do
	[[ ,$ALL_CASES, == *,"$c",* ]] || die "unknown case \"$c\" (cases: ${ALL_CASES//,/ })"
done

repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
work=$(mktemp -d "${TMPDIR:-/tmp}/bench-vs-hash-sigs.XXXXXX")
trap 'rm -rf "$work"' EXIT

echo "building cryptech-backup ..." >&2
(cd "$repo" && go build -o "$work/cryptech-backup" ./cmd/cryptech-backup) || die "go build failed"
ours=$work/cryptech-backup

theirs=""
if [[ -z $hash_sigs_dir ]]; then
	echo "bench-vs-hash-sigs: no hash-sigs source (give --hash-sigs DIR or set HASH_SIGS_DIR to a checkout of https://github.com/cisco/hash-sigs); timing this project alone" >&2
elif [[ ! -f $hash_sigs_dir/demo.c || ! -f $hash_sigs_dir/Makefile ]]; then
	echo "bench-vs-hash-sigs: $hash_sigs_dir holds no hash-sigs source (no demo.c and Makefile); timing this project alone" >&2
else
	echo "building hash-sigs demo from $hash_sigs_dir ..." >&2
	mkdir "$work/hash-sigs"
	cp -R "$hash_sigs_dir/." "$work/hash-sigs/"
	if ! make -C "$work/hash-sigs" demo >"$work/make.log" 2>&1; then
		tail -n 20 "$work/make.log" >&2
		die "make demo failed in a copy of $hash_sigs_dir"
	fi
	theirs=$work/hash-sigs/demo
fi

head -c "$MSG_BYTES" /dev/urandom >"$work/msg"

# run_quiet runs a command, showing its output only if it fails.
run_quiet() {
	local out
	if ! out=$("$@" 2>&1); then
		printf '%s\n' "$out" | tail -n 5 >&2
		die "failed: $*"
	fi
}

# run_expect runs a command that exits 0 even when it fails (hash-sigs'
# demo does), and fails unless its output holds the line pattern $1.
run_expect() {
	local want=$1 out
	shift
	out=$("$@" 2>&1) || true
	if ! grep -q -- "$want" <<<"$out"; then
		printf '%s\n' "$out" | tail -n 5 >&2
		die "failed (no \"$want\"): $*"
	fi
}

# now_ns is the wall clock in nanoseconds.
now_ns() { date +%s%N; }

# Each case defines, per tool, a setup (untimed, run once per case in a
# fresh directory) and a step (timed, run once per run in that directory).
# A keygen step starts by removing what the previous run made, untimed.

# lms_flags turns "h10w4" into our flags for one level's types.
lms_flags() {
	local h=${1%w*} w=${1#*w}
	echo "--lms sha256-m32-h${h#h} --lmots sha256-n32-w$w"
}

our_keygen() { # levels spec
	# shellcheck disable=SC2046 # the flags are meant to split
	run_quiet "$ours" hashsig keygen --levels "$1" $(lms_flags "$2") --priv k.prv --pub k.pub --force
}
our_sign() { run_quiet "$ours" hashsig sign --priv k.prv -i "$work/msg" -o msg.sig --force; }
our_verify() { run_quiet "$ours" hashsig verify --pub k.pub --sig msg.sig -i "$work/msg"; }
their_keygen() { run_expect '^Success!' "$theirs" genkey k "$1"; }
their_sign() { run_expect 'signed (msg.sig)' "$theirs" sign k msg; } # writes msg.sig
their_verify() { run_expect 'Signature verified' "$theirs" verify k msg; }

# our_step / their_step run one timed step of a case; *_setup prepare it.
# demo signs and verifies files by name: each directory has its own copy of
# the message.
our_setup() {
	case $1 in
	sign-h15w4) our_keygen 1 h15w4 && our_sign ;;
	sign-h20w8) our_keygen 1 h20w8 && our_sign ;;
	verify) our_keygen 2 h10w4 && our_sign ;;
	*) ;;
	esac
}
their_setup() {
	cp "$work/msg" msg
	case $1 in
	sign-h15w4) their_keygen 15/4 && their_sign ;;
	sign-h20w8) their_keygen 20/8 && their_sign ;;
	verify) their_keygen 10/4,10/4 && their_sign ;;
	*) ;;
	esac
}
our_step() {
	case $1 in
	keygen-h10w4) our_keygen 1 h10w4 ;;
	keygen-h10w4x2) our_keygen 2 h10w4 ;;
	keygen-sign-h10w4x2) our_keygen 2 h10w4 && our_sign ;;
	sign-*) our_sign ;;
	verify) our_verify ;;
	esac
}
their_step() {
	case $1 in
	keygen-h10w4) their_keygen 10/4 ;;
	keygen-h10w4x2) their_keygen 10/4,10/4 ;;
	keygen-sign-h10w4x2) their_keygen 10/4,10/4 && their_sign ;;
	sign-*) their_sign ;;
	verify) their_verify ;;
	esac
}
# clean_keygen removes what a keygen step left, so that the next one starts
# from nothing as the first did.
clean_keygen() {
	case $1 in
	keygen-*) rm -f k.* msg.sig ;;
	esac
}

# time_step prints the seconds one step of case $2 by tool $1 takes.
time_step() {
	local tool=$1 name=$2 t0 t1
	clean_keygen "$name"
	t0=$(now_ns)
	"${tool}_step" "$name"
	t1=$(now_ns)
	echo $((t1 - t0))
}

# median of nanosecond figures, printed in seconds with three decimals
# (four below 0.1 s).
median() {
	local -a s
	mapfile -t s < <(printf '%s\n' "$@" | sort -n)
	local n=${#s[@]} m
	if ((n % 2)); then
		m=${s[n / 2]}
	else
		m=$(((s[n / 2 - 1] + s[n / 2]) / 2))
	fi
	awk -v ns="$m" 'BEGIN { s = ns / 1e9; if (s < 0.1) printf "%.4f", s; else printf "%.3f", s }'
}

label() {
	case $1 in
	keygen-h10w4) echo "keygen h10/w4, 1 level" ;;
	keygen-h10w4x2) echo "keygen h10/w4 + h10/w4, 2 levels" ;;
	keygen-sign-h10w4x2) echo "keygen + first sign, h10/w4 + h10/w4" ;;
	sign-h15w4) echo "sign, one process, h15/w4" ;;
	sign-h20w8) echo "sign, one process, h20/w8" ;;
	verify) echo "verify, one process, h10/w4 + h10/w4" ;;
	esac
}

rows=()
for name in "${case_list[@]}"; do
	echo "case $name: $runs runs ..." >&2
	mkdir -p "$work/ours-$name" "$work/theirs-$name"
	(cd "$work/ours-$name" && our_setup "$name")
	if [[ -n $theirs ]]; then
		(cd "$work/theirs-$name" && their_setup "$name")
	fi
	our_ns=() their_ns=()
	for ((i = 0; i < runs; i++)); do
		# Swap who goes first every run.
		if ((i % 2)) && [[ -n $theirs ]]; then
			ns=$(cd "$work/theirs-$name" && time_step their "$name")
			their_ns+=("$ns")
			ns=$(cd "$work/ours-$name" && time_step our "$name")
			our_ns+=("$ns")
		else
			ns=$(cd "$work/ours-$name" && time_step our "$name")
			our_ns+=("$ns")
			if [[ -n $theirs ]]; then
				ns=$(cd "$work/theirs-$name" && time_step their "$name")
				their_ns+=("$ns")
			fi
		fi
	done
	o=$(median "${our_ns[@]}")
	if [[ -n $theirs ]]; then
		t=$(median "${their_ns[@]}")
		r=$(awk -v o="$o" -v t="$t" 'BEGIN { if (t > 0) printf "%.2fx", o / t; else print "-" }')
	else
		t="-" r="-"
	fi
	rows+=("$(label "$name")|$o|$t|$r")
done

echo
echo "median of $runs runs, seconds of wall-clock time per process; message $MSG_BYTES bytes"
printf '| %-38s | %12s | %14s | %11s |\n' "case" "ours (s)" "hash-sigs (s)" "ours/theirs"
printf '|%s|%s|%s|%s|\n' "$(printf -- '-%.0s' {1..40})" "$(printf -- '-%.0s' {1..14})" "$(printf -- '-%.0s' {1..16})" "$(printf -- '-%.0s' {1..13})"
for row in "${rows[@]}"; do
	IFS='|' read -r l o t r <<<"$row"
	printf '| %-38s | %12s | %14s | %11s |\n' "$l" "$o" "$t" "$r"
done
