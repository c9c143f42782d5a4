#!/usr/bin/env bash
# Build (once) a Debian sid minbase root holding Asterisk, cached outside the clone.
# Debian 12 has no asterisk package and installing sid's onto the host would replace libc,
# so Asterisk runs chrooted in its own root. An `asterisk` already on PATH wins.
set -euo pipefail
root="${STARPAY_ASTERISK_ROOT:-${XDG_CACHE_HOME:-$HOME/.cache}/starpay/asterisk-root}"

if [ -z "${STARPAY_ASTERISK_ROOT:-}" ] && command -v asterisk >/dev/null 2>&1; then
  echo "asterisk: using $(command -v asterisk) from PATH"
  exit 0
fi
if [ -x "$root/usr/sbin/asterisk" ] && [ -f "$root/.starpay-complete" ]; then
  echo "asterisk: cached root at $root"
  exit 0
fi

mirror() {
  # The host's own Debian mirror: the first uncommented URIs line ending in /debian.
  local f uri
  for f in /etc/apt/sources.list.d/*.sources; do
    [ -f "$f" ] || continue
    uri=$(grep -E '^URIs:' "$f" | awk '{for (i=2;i<=NF;i++) print $i}' | grep -E '/debian/?$' | head -n1 || true)
    [ -n "$uri" ] && { echo "${uri%/}"; return; }
  done
  uri=$(grep -hE '^deb ' /etc/apt/sources.list 2>/dev/null | awk '{print $2}' | grep -E '/debian/?$' | head -n1 || true)
  [ -n "$uri" ] && { echo "${uri%/}"; return; }
  echo "asterisk-root: no Debian mirror found in apt's sources; set STARPAY_DEBIAN_MIRROR" >&2
  return 1
}

if ! command -v debootstrap >/dev/null 2>&1; then
  echo "asterisk: installing debootstrap"
  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq debootstrap >/dev/null
fi
url="${STARPAY_DEBIAN_MIRROR:-$(mirror)}"
tmp="$root.partial"
rm -rf "$tmp"
mkdir -p "$(dirname "$root")"
echo "asterisk: building a Debian sid root with Asterisk in $root (about a minute plus download)"
debootstrap --variant=minbase --include=asterisk,asterisk-core-sounds-en-gsm sid "$tmp" "$url" \
  > "$tmp.log" 2>&1 || { echo "asterisk: debootstrap failed, see $tmp.log" >&2; exit 1; }
touch "$tmp/.starpay-complete"
rm -rf "$root"
mv "$tmp" "$root"
echo "asterisk: ready ($("$root/usr/sbin/asterisk" -V 2>/dev/null || chroot "$root" asterisk -V))"
