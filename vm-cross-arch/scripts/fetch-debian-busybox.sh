#!/usr/bin/env bash
# Download Debian's busybox-static for a guest architecture and extract the
# static busybox binary, without touching the host's apt configuration: a
# private sources list, lists dir and cache live under CACHE_DIR.
#
#   fetch-debian-busybox.sh <riscv64|arm64|amd64> <CACHE_DIR>
#
# Prints the path of the busybox binary on stdout (last line).
# Exits non-zero with a reason on stderr when the download is impossible.
set -euo pipefail

arch="${1:?usage: fetch-debian-busybox.sh <arch> <cache-dir>}"
cache="${2:?usage: fetch-debian-busybox.sh <arch> <cache-dir>}"
mirror="${DEBIAN_MIRROR:-http://deb.debian.org/debian}"

case "$arch" in
  riscv64) suite=sid ;;
  arm64|amd64) suite=bookworm ;;
  *) echo "unsupported arch: $arch" >&2; exit 2 ;;
esac

for tool in apt-get dpkg-deb; do
  command -v "$tool" >/dev/null || { echo "$tool not found on PATH" >&2; exit 3; }
done

root="$(mkdir -p "$cache/busybox-$arch" && cd "$cache/busybox-$arch" && pwd)"
done_marker="$root/busybox-path"
if [[ -s "$done_marker" && -f "$(cat "$done_marker")" ]]; then
  cat "$done_marker"
  exit 0
fi

mkdir -p "$root/lists/partial" "$root/archives/partial" "$root/pkgs" "$root/extract"
echo "deb [arch=$arch] $mirror $suite main" > "$root/sources.list"
keyring=/usr/share/keyrings/debian-archive-keyring.gpg
opts=(
  -o "APT::Architectures=$arch"
  -o "APT::Architecture=$arch"
  -o "Dir::Etc::SourceList=$root/sources.list"
  -o "Dir::Etc::SourceParts=/nonexistent"
  -o "Dir::State::Lists=$root/lists"
  -o "Dir::State::Status=/dev/null"
  -o "Dir::Cache=$root"
  -o "Dir::Cache::Archives=$root/archives"
  -o "Debug::NoLocking=1"
  -o "APT::Sandbox::User=root"
  -o "Acquire::IndexTargets::deb::DEP-11::DefaultEnabled=false"
)
[[ -f $keyring ]] && opts+=(-o "Dir::Etc::Trusted=$keyring" -o "Dir::Etc::TrustedParts=/etc/apt/trusted.gpg.d")

apt-get "${opts[@]}" -q update >&2 || { echo "apt-get update for $arch/$suite failed" >&2; exit 4; }
ls "$root"/lists/*_Packages* >/dev/null 2>&1 \
  || { echo "no package index for $arch/$suite from $mirror (offline?)" >&2; exit 4; }
(cd "$root/pkgs" && apt-get "${opts[@]}" -q download busybox-static >&2) \
  || { echo "apt-get download busybox-static failed" >&2; exit 6; }
deb="$(ls -t "$root"/pkgs/busybox-static_*.deb | head -n1)"
dpkg-deb -x "$deb" "$root/extract"
bin="$(ls "$root"/extract/bin/busybox "$root"/extract/usr/bin/busybox 2>/dev/null | head -n1 || true)"
[[ -n "$bin" && -f "$bin" ]] || { echo "$deb ships no busybox binary" >&2; exit 7; }
cp "$bin" "$root/busybox"
rm -rf "$root/extract" "$root/pkgs" "$root/lists" "$root/archives" "$root/pkgcache.bin" "$root/srcpkgcache.bin"
echo "$root/busybox" > "$done_marker"
echo "$root/busybox"
