#!/usr/bin/env bash
# Builds handoff's .deb from a static binary with plain dpkg-deb (no debhelper, no source
# package): the binary as /usr/bin/handoff, the units from systemd/ under /lib/systemd/system
# with ExecStart=/usr/bin/handoff, /etc/default/handoff (a conffile), the maintainer scripts in
# packaging/debian/, a man page, lintian's overrides, and /usr/share/doc/handoff. `make deb` runs it for amd64 and arm64.
#
# Usage: packaging/deb.sh ARCH BINARY VERSION OUTDIR    (ARCH: a Debian architecture)
# Environment: DEB_MAINTAINER (the Maintainer field; default: the last commit's author);
# SOURCE_DATE_EPOCH (every timestamp in the
# package; default: the last commit's time), so two builds of one commit are the same bytes.
set -euo pipefail

[ $# = 4 ] || { echo "usage: $0 ARCH BINARY VERSION OUTDIR" >&2; exit 2; }
ARCH=$1 BINARY=$2 VERSION=$3 OUTDIR=$4
HERE=$(cd "$(dirname "$0")" && pwd)
ROOT=$(dirname "$HERE")
[ -x "$BINARY" ] || { echo "$BINARY is not an executable file: make static builds it" >&2; exit 1; }
MAINTAINER=${DEB_MAINTAINER:-$(git -C "$ROOT" log -1 --format='%an <%ae>')}
SOURCE_DATE_EPOCH=${SOURCE_DATE_EPOCH:-$(git -C "$ROOT" log -1 --format=%ct 2>/dev/null || date +%s)}
export SOURCE_DATE_EPOCH

mkdir -p "$OUTDIR"
TREE=$(mktemp -d "$OUTDIR/.handoff-deb.XXXXXX")
trap 'rm -rf "$TREE"' EXIT
chmod 755 "$TREE"
DOC=$TREE/usr/share/doc/handoff

install -D -m 755 "$BINARY" "$TREE/usr/bin/handoff"
install -d -m 755 "$TREE/lib/systemd/system" "$DOC"
install -m 644 "$ROOT/systemd/handoff.socket" "$TREE/lib/systemd/system/handoff.socket"
# The shipped service, with ExecStart at /usr/bin and a pointer to the package's man page.
sed -e 's|^ExecStart=/usr/local/bin/handoff$|ExecStart=/usr/bin/handoff|' \
    -e 's|^Description=.*|&\nDocumentation=man:handoff(8)|' "$ROOT/systemd/handoff.service" \
    > "$TREE/lib/systemd/system/handoff.service"
chmod 644 "$TREE/lib/systemd/system/handoff.service"
grep -qx 'ExecStart=/usr/bin/handoff' "$TREE/lib/systemd/system/handoff.service" ||
    { echo "systemd/handoff.service has no ExecStart=/usr/local/bin/handoff line to point at /usr/bin" >&2; exit 1; }
install -D -m 644 "$HERE/default" "$TREE/etc/default/handoff"
install -m 644 "$HERE/debian/copyright" "$DOC/copyright"
gzip -9n < "$ROOT/README.md" > "$DOC/README.md.gz"
install -D -m 644 "$HERE/lintian-overrides" "$TREE/usr/share/lintian/overrides/handoff"
install -d -m 755 "$TREE/usr/share/man/man8"
gzip -9n < "$HERE/handoff.8" > "$TREE/usr/share/man/man8/handoff.8.gz"
{
    echo "handoff ($VERSION) unstable; urgency=medium"
    echo
    echo "  * handoff $VERSION, packaged from its source tree with packaging/deb.sh."
    echo
    echo " -- $MAINTAINER  $(date -u -R -d "@$SOURCE_DATE_EPOCH")"
} | gzip -9n > "$DOC/changelog.gz"
chmod 644 "$DOC/README.md.gz" "$DOC/changelog.gz" "$TREE/usr/share/man/man8/handoff.8.gz"

install -d -m 755 "$TREE/DEBIAN"
install -m 755 "$HERE/debian/postinst" "$HERE/debian/prerm" "$HERE/debian/postrm" "$TREE/DEBIAN/"
install -m 644 "$HERE/debian/conffiles" "$TREE/DEBIAN/conffiles"
# Installed-Size as dpkg-gencontrol counts it: KiB, each file rounded up.
size=$(find "$TREE" -path "$TREE/DEBIAN" -prune -o -type f -printf '%s\n' |
    awk '{ kib += int(($1 + 1023) / 1024) } END { print kib }')
sed -e "s|@VERSION@|$VERSION|" -e "s|@ARCH@|$ARCH|" -e "s|@MAINTAINER@|$MAINTAINER|" \
    -e "s|@INSTALLED_SIZE@|$size|" "$HERE/debian/control.in" > "$TREE/DEBIAN/control"
# md5sums, as dh_md5sums makes it: every file but the conffiles (dpkg keeps their sums itself).
(cd "$TREE" && find . \( -path ./DEBIAN -o -path ./etc \) -prune -o -type f -printf '%P\0' | sort -z |
    xargs -0 md5sum) > "$TREE/DEBIAN/md5sums"
chmod 644 "$TREE/DEBIAN/control" "$TREE/DEBIAN/md5sums"
find "$TREE" -exec touch -h -d "@$SOURCE_DATE_EPOCH" {} +

DEB=$OUTDIR/handoff_${VERSION}_$ARCH.deb
dpkg-deb --root-owner-group -Zxz --build "$TREE" "$DEB" >/dev/null
echo "$DEB: $(stat -c %s "$DEB") bytes"
