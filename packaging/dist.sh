#!/usr/bin/env bash
# Release archives from the static binaries (`make dist`): for each target,
# OUTDIR/handoff-VERSION-ARCH-linux-musl.tar.gz holding handoff-VERSION-ARCH-linux-musl/ with the
# binary, the systemd units, README.md and LICENSE; then OUTDIR/SHA256SUMS over the archives.
# Timestamps are SOURCE_DATE_EPOCH (default: the last commit's time), owners root, entries
# sorted and gzip without a name or time, so two runs on one commit give the same bytes.
#
# Usage: packaging/dist.sh VERSION OUTDIR
set -euo pipefail

[ $# = 2 ] || { echo "usage: $0 VERSION OUTDIR" >&2; exit 2; }
VERSION=$1 OUTDIR=$2
ROOT=$(cd "$(dirname "$0")/.." && pwd)
SOURCE_DATE_EPOCH=${SOURCE_DATE_EPOCH:-$(git -C "$ROOT" log -1 --format=%ct 2>/dev/null || date +%s)}

mkdir -p "$OUTDIR"
STAGE=$(mktemp -d "$OUTDIR/.handoff-dist.XXXXXX")
trap 'rm -rf "$STAGE"' EXIT
archives=()
for arch in x86_64 aarch64; do
    binary=$ROOT/target/$arch-unknown-linux-musl/release/handoff
    [ -x "$binary" ] || { echo "no $binary: make static builds it" >&2; exit 1; }
    name=handoff-$VERSION-$arch-linux-musl
    install -D -m 755 "$binary" "$STAGE/$name/handoff"
    install -m 644 "$ROOT/systemd/handoff.socket" "$ROOT/systemd/handoff.service" \
        "$ROOT/README.md" "$ROOT/LICENSE" "$STAGE/$name/"
    tar -C "$STAGE" --sort=name --mtime="@$SOURCE_DATE_EPOCH" --owner=0 --group=0 --numeric-owner \
        -cf - "$name" | gzip -9n > "$OUTDIR/$name.tar.gz"
    archives+=("$name.tar.gz")
done
(cd "$OUTDIR" && sha256sum "${archives[@]}" > SHA256SUMS)
for archive in "${archives[@]}"; do
    echo "$OUTDIR/$archive: $(stat -c %s "$OUTDIR/$archive") bytes"
done
echo "$OUTDIR/SHA256SUMS"
