#!/bin/sh
# Build a Debian package of mpcomm with both units, with dpkg-deb alone (no cargo-deb needed).
#   systemd/build-deb.sh [BINARY] [OUTDIR]     defaults: target/release/mpcomm, target/debian
# Installs /usr/bin/mpcomm, /lib/systemd/system/mpcomm-{agent,c2}.service, the example settings
# and README.md under /usr/share/doc/mpcomm. Enables nothing: see its C2 section for the key and
# `systemctl enable --now`. MPCOMM_DEB_COMPRESS=gzip (e.g. for quick test builds) changes the
# compressor (default xz).
set -eu
root=$(cd "$(dirname "$0")/.." && pwd)
bin=${1:-$root/target/release/mpcomm}
out=${2:-$root/target/debian}
[ -x "$bin" ] || { echo "build-deb: $bin is not an executable: run cargo build --release first" >&2; exit 1; }
version=$(sed -n 's/^version = "\(.*\)"$/\1/p' "$root/Cargo.toml" | head -n 1)
arch=$(dpkg --print-architecture)
stage=$(mktemp -d)
chmod 755 "$stage"
trap 'rm -rf "$stage"' EXIT INT TERM

install -D -m 755 "$bin" "$stage/usr/bin/mpcomm"
for unit in mpcomm-agent.service mpcomm-c2.service; do
  install -D -m 644 "$root/systemd/$unit" "$stage/lib/systemd/system/$unit"
done
install -D -m 644 "$root/systemd/agent.env.example" "$stage/usr/share/doc/mpcomm/examples/agent.env"
install -D -m 644 "$root/systemd/c2.env.example" "$stage/usr/share/doc/mpcomm/examples/c2.env"
install -D -m 644 "$root/README.md" "$stage/usr/share/doc/mpcomm/README.md"

mkdir -p "$stage/DEBIAN"
cat > "$stage/DEBIAN/control" <<CONTROL
Package: mpcomm
Version: $version
Architecture: $arch
Maintainer: mpcomm maintainers <mpcomm@example.invalid>
Depends: libc6
Section: net
Priority: optional
Description: measure the message-ordering problem of uncoordinated multicast
 N peers each send M messages to all peers at random intervals; a comparator reports how often
 they disagree on the order. Includes the C2 agent and controller as systemd units.
CONTROL
cat > "$stage/DEBIAN/postinst" <<'SCRIPT'
#!/bin/sh
set -e
install -d -m 700 /etc/mpcomm
if [ -d /run/systemd/system ]; then systemctl daemon-reload || true; fi
SCRIPT
cat > "$stage/DEBIAN/prerm" <<'SCRIPT'
#!/bin/sh
set -e
if [ "$1" = remove ] && [ -d /run/systemd/system ]; then
  systemctl stop mpcomm-agent.service mpcomm-c2.service || true
fi
SCRIPT
cat > "$stage/DEBIAN/postrm" <<'SCRIPT'
#!/bin/sh
set -e
if [ -d /run/systemd/system ]; then systemctl daemon-reload || true; fi
SCRIPT
chmod 755 "$stage/DEBIAN/postinst" "$stage/DEBIAN/prerm" "$stage/DEBIAN/postrm"

mkdir -p "$out"
deb="$out/mpcomm_${version}_${arch}.deb"
dpkg-deb --root-owner-group -Z"${MPCOMM_DEB_COMPRESS:-xz}" --build "$stage" "$deb" >&2
echo "$deb"
