#!/usr/bin/env bash
# Profiles qvault's hot paths with valgrind's callgrind (instruction counts) and
# strace (syscall counts and fsync latency). Builds a release copy with line
# tables into target/prof (the normal target/release is left alone), sets up a
# vault and a client as scripts/bench does, and writes the reports to
# target/bench/profile/:
#   client-small.*    qvault-gpg, one 6-byte detached signature (native qrexec sim)
#   daemon-small.*    the daemon serving PROFILE_CALLS sequential 6-byte signatures
#   daemon-sustained.strace   syscalls of the daemon under 8 workers (fsync grouping)
#   daemon-big.*      the daemon signing a PROFILE_BIG_MIB file sent over the socket
#   client-big.*      qvault-gpg sending the same file
# Knobs: PROFILE_CALLS (default 300), PROFILE_BIG_MIB (default 64),
#        PROFILE_NO_BUILD=1 (use target/prof as it is).
set -euo pipefail
cd "$(dirname "$0")/.."
top=$PWD
calls=${PROFILE_CALLS:-300}
big_mib=${PROFILE_BIG_MIB:-64}
prof=$top/target/prof/release
out=$top/target/bench/profile
if [ "${PROFILE_NO_BUILD:-0}" != 1 ]; then
  command -v valgrind >/dev/null && command -v strace >/dev/null || {
    sudo=""; [ "$(id -u)" -eq 0 ] || sudo="sudo"
    $sudo apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends valgrind strace >/dev/null
  }
  CARGO_PROFILE_RELEASE_DEBUG=line-tables-only CARGO_PROFILE_RELEASE_STRIP=none \
    cargo build --release --locked --target-dir "$top/target/prof" -p qvault -p qvault-gpg -p qvault-bench --bins
fi
mkdir -p "$out"
work=$(mktemp -d "${TMPDIR:-/tmp}/qvault-prof.XXXXXX")
pid=""
stop() { # SIGTERM to the daemon (under strace: strace's child), then wait for the wrapper
  if [ -n "$pid" ]; then
    local kids; kids=$(pgrep -P "$pid" || true)
    if [ -n "$kids" ]; then kill $kids 2>/dev/null || true; else kill "$pid" 2>/dev/null || true; fi
    wait "$pid" 2>/dev/null || true; pid=""
  fi
}
trap 'stop; rm -rf "$work"' EXIT
export PATH="$prof:$PATH"
mkdir -p "$work/sim"
ln -s "$prof/qrexec-client-vm-native" "$work/sim/qrexec-client-vm"

init_flags=()
qvault init --help 2>/dev/null | grep -q -- --no-confirm && init_flags+=(--no-confirm)
qvault init --home "$work/vault" --name prof "${init_flags[@]}" >/dev/null
fpr=$(qvault keygen --home "$work/vault" --userid 'Prof <prof@example.org>')
sock=$work/s
net=()
if unshare -n true 2>/dev/null; then net=(unshare -n --); fi
start() { # start [wrapper...]: the daemon, optionally under a wrapper
  "${net[@]}" "$@" qvault serve --home "$work/vault" --socket "$sock" 2>"$work/daemon.log" &
  pid=$!
  for _ in $(seq 600); do [ -S "$sock" ] && return 0; sleep 0.1; done
  echo "daemon did not start" >&2; cat "$work/daemon.log" >&2; exit 1
}
export QUBES_GPG_DOMAIN=vault QVAULT_SIM_SOCKET=$sock QVAULT_GPG_HOME=$work/client PATH="$work/sim:$PATH"
printf 'hello\n' > "$work/small"
head -c "$((big_mib << 20))" /dev/urandom > "$work/big"
cg=(valgrind --tool=callgrind --dump-instr=no --separate-threads=no)
annotate() { # the 80 costliest functions, inclusive and self
  callgrind_annotate --inclusive=yes --threshold=99.9 "$1" > "$1.tmp" 2>/dev/null || true
  sed -n 1,100p "$1.tmp" > "$1.inclusive.txt"
  callgrind_annotate --threshold=99.9 "$1" > "$1.tmp" 2>/dev/null || true
  sed -n 1,100p "$1.tmp" > "$1.self.txt"
  rm -f "$1.tmp"
}

echo "== daemon, $calls sequential small signatures, callgrind"
start "${cg[@]}" --callgrind-out-file="$out/daemon-small.callgrind"
qvault-gpg --batch --yes -u "$fpr" --detach-sign -o "$work/x.sig" "$work/small"   # pins the log key
qvault-load --socket "$sock" --workers 1 --calls "$calls" --key "$fpr" | grep -v '^RESULT'
stop; annotate "$out/daemon-small.callgrind"

echo "== client qvault-gpg, one small signature, callgrind and strace"
start
qvault-gpg --batch --yes -u "$fpr" --detach-sign -o "$work/x.sig" "$work/small"
"${cg[@]}" --callgrind-out-file="$out/client-small.callgrind" \
  qvault-gpg --batch --yes -u "$fpr" --detach-sign -o "$work/x.sig" "$work/small" 2>/dev/null
annotate "$out/client-small.callgrind"
strace -f -c -o "$out/client-small.strace" qvault-gpg --batch --yes -u "$fpr" --detach-sign -o "$work/x.sig" "$work/small"

echo "== daemon syscalls, one small signature (strace -f)"
stop
start strace -f -tt -T -o "$work/daemon-one.strace"
qvault-load --socket "$sock" --workers 1 --calls 20 --key "$fpr" >/dev/null
: > "$work/daemon-one.strace.mark"
qvault-load --socket "$sock" --workers 1 --calls 1 --key "$fpr" >/dev/null
stop
# The last call's syscalls: from its accept to the end.
awk '/accept4\(/ {buf=""} {buf = buf $0 "\n"} END {printf "%s", buf}' "$work/daemon-one.strace" > "$out/daemon-one-call.strace"

echo "== daemon under 8 workers: syscall counts, fsync grouping"
start strace -f -c -o "$out/daemon-sustained.strace"
qvault-load --socket "$sock" --workers 8 --calls 250 --key "$fpr" --consistency | grep -v '^RESULT'
stop

echo "== daemon, one ${big_mib} MiB signature over the socket, callgrind"
start "${cg[@]}" --callgrind-out-file="$out/daemon-big.callgrind"
qvault-load --socket "$sock" --workers 1 --calls 1 --size "$((big_mib << 20))" --key "$fpr" | grep -v '^RESULT'
stop; annotate "$out/daemon-big.callgrind"

echo "== client qvault-gpg, one ${big_mib} MiB signature, callgrind and strace"
start
"${cg[@]}" --callgrind-out-file="$out/client-big.callgrind" \
  qvault-gpg --batch --yes -u "$fpr" --detach-sign -o "$work/x.sig" "$work/big" 2>/dev/null
annotate "$out/client-big.callgrind"
strace -f -c -o "$out/client-big.strace" qvault-gpg --batch --yes -u "$fpr" --detach-sign -o "$work/x.sig" "$work/big"
stop
echo "reports in $out"
