#!/usr/bin/env bash
# Download a stock Debian kernel package for a guest architecture and extract
# its kernel image, without touching the host's apt configuration: a private
# sources list, lists dir and cache live under CACHE_DIR.
#
#   fetch-debian-kernel.sh <amd64|riscv64|arm64> <CACHE_DIR>
#
# Prints the path of the extracted kernel image on stdout (last line).
# Exits non-zero with a reason on stderr when the download is impossible.
set -euo pipefail

arch="${1:?usage: fetch-debian-kernel.sh <amd64|riscv64|arm64> <cache-dir>}"
cache="${2:?usage: fetch-debian-kernel.sh <arch> <cache-dir>}"
mirror="${DEBIAN_MIRROR:-http://deb.debian.org/debian}"

case "$arch" in
  amd64)   suite=bookworm; meta=linux-image-cloud-amd64 ;;
  riscv64) suite=sid;      meta=linux-image-riscv64 ;;
  arm64)   suite=bookworm; meta=linux-image-arm64 ;;
  *) echo "unsupported arch: $arch" >&2; exit 2 ;;
esac

for tool in apt-get apt-cache dpkg-deb; do
  command -v "$tool" >/dev/null || { echo "$tool not found on PATH" >&2; exit 3; }
done

root="$(mkdir -p "$cache/$arch" && cd "$cache/$arch" && pwd)"
done_marker="$root/kernel-path"
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
# apt-get update only warns when a mirror is unreachable: check an index arrived.
ls "$root"/lists/*_Packages* >/dev/null 2>&1 \
  || { echo "no package index for $arch/$suite from $mirror (offline?)" >&2; exit 4; }

# Follow the meta package's dependencies (meta -> versioned image -> binary
# package on newer kernels) until a package ships a kernel image
# (/boot/vmlinu[xz]-* or, on newer kernels, /usr/lib/modules/*/vmlinu[xz]).
want="$meta"
kernel=""
for _ in 1 2 3 4; do
  (cd "$root/pkgs" && apt-get "${opts[@]}" -q download "$want" >&2) \
    || { echo "apt-get download $want failed" >&2; exit 6; }
  deb="$(ls -t "$root"/pkgs/"${want}"_*.deb | head -n1)"
  dpkg-deb -x "$deb" "$root/extract"
  kernel="$(ls "$root"/extract/boot/vmlinuz-* "$root"/extract/boot/vmlinux-* \
              "$root"/extract/usr/lib/modules/*/vmlinu[xz] 2>/dev/null | head -n1 || true)"
  [[ -n "$kernel" ]] && break
  want="$(dpkg-deb -f "$deb" Depends | tr ',' '\n' \
          | sed -n 's/^ *\(linux-\(image\|binary\)-[^ |]*\).*/\1/p' | head -n1)"
  [[ -n "$want" ]] || { echo "$deb ships no kernel and names no kernel package" >&2; exit 5; }
done
[[ -n "$kernel" && -f "$kernel" ]] || { echo "no kernel image found following $meta" >&2; exit 7; }
# Keep only the image: the modules are large and unused.
mkdir -p "$root/kernel"
cp "$kernel" "$root/kernel/$(basename "$kernel")"
kernel="$root/kernel/$(basename "$kernel")"
rm -rf "$root/extract" "$root/pkgs" "$root/lists" "$root/archives" "$root/pkgcache.bin" "$root/srcpkgcache.bin"
echo "$kernel" > "$done_marker"
echo "$kernel"
