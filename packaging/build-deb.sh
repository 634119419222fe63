#!/bin/sh
# Build the Debian package with cargo-deb: target/debian/mpcomm_VERSION-1_ARCH.deb (its path is
# the last line on stdout). Builds the release binary, writes the man pages and the bash, zsh and
# fish completions from it into target/release/packaging/, then packages those with the stripped
# binary, both systemd units (installed, not enabled), the example settings, README, copyright
# and changelog (see [package.metadata.deb] in Cargo.toml).
#   packaging/build-deb.sh [CARGO-DEB OPTIONS…]     e.g. --output DIR, --fast
# MPCOMM_DEB_NO_BUILD=1 skips `cargo build` (the release binary must be there already).
set -eu
cd "$(dirname "$0")/.."
if ! cargo deb --version >/dev/null 2>&1; then
	echo "build-deb: cargo-deb not found: cargo install --locked cargo-deb" >&2
	exit 1
fi
if [ -z "${MPCOMM_DEB_NO_BUILD:-}" ]; then
	cargo build --release --locked >&2
fi
target=$(cargo metadata --no-deps --format-version 1 --offline |
	sed -n 's/.*"target_directory":"\([^"]*\)".*/\1/p')
bin=$target/release/mpcomm
[ -x "$bin" ] || { echo "build-deb: $bin is missing: run cargo build --release" >&2; exit 1; }
gen=$target/release/packaging
rm -rf "$gen"
"$bin" generate man "$gen/man"
gzip -9n "$gen"/man/*.1
"$bin" generate completions "$gen/completions"
# The release profile keeps debug info (for perf); the package gets a stripped binary.
cargo deb --no-build --locked --strip "$@"
