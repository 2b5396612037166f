#!/usr/bin/env bash
# Build the Debian package of portcullis with cargo-deb ([package.metadata.deb] in Cargo.toml).
#
#   scripts/build-deb.sh                       # release build, then target/debian/portcullis_*.deb
#   scripts/build-deb.sh --no-build [ARGS...]  # package the binary already in <target>/release
#
# Steps: installs cargo-deb if it is missing (`cargo install cargo-deb --locked`, ~1 min), builds
# the release binary (`cargo build --release --locked`, unless --no-build), generates the man
# pages (gzipped) and the bash/zsh/fish completions from that binary into <target>/release/man
# and <target>/release/completions, then runs `cargo deb --no-build --strip` with any further
# arguments (e.g. `--output DIR`, `--fast`). <target> is $CARGO_TARGET_DIR or ./target.
# Prints the path of the package.
set -euo pipefail
export HOME="${HOME:-/root}"

cd "$(dirname "$0")/.."

log() { printf '==> %s\n' "$*" >&2; }

BUILD=1
if [[ "${1:-}" == "--no-build" ]]; then
    BUILD=0
    shift
fi

if [[ -f "$HOME/.cargo/env" ]]; then
    # shellcheck source=/dev/null
    source "$HOME/.cargo/env"
fi
command -v cargo >/dev/null 2>&1 || {
    echo "build-deb.sh: cargo is missing (install Rust with rustup, or run scripts/test.sh)" >&2
    exit 1
}
if ! cargo deb --version >/dev/null 2>&1; then
    log "installing cargo-deb (cargo install cargo-deb --locked)"
    cargo install cargo-deb --locked
fi
command -v dpkg-deb >/dev/null 2>&1 || {
    echo "build-deb.sh: dpkg-deb is missing (Debian package dpkg)" >&2
    exit 1
}

TARGET_DIR="${CARGO_TARGET_DIR:-target}"
RELEASE="$TARGET_DIR/release"
if ((BUILD)); then
    log "cargo build --release --locked"
    cargo build --release --locked --bin portcullis
fi
BIN="$RELEASE/portcullis"
[[ -x "$BIN" ]] || {
    echo "build-deb.sh: $BIN does not exist (run without --no-build)" >&2
    exit 1
}

log "man pages and completions from $BIN"
rm -rf "$RELEASE/man" "$RELEASE/completions"
mkdir -p "$RELEASE/completions"
"$BIN" generate man --out-dir "$RELEASE/man"
# Debian policy: compressed with gzip -9, without a time stamp (reproducible).
gzip -9n "$RELEASE"/man/*.1
"$BIN" generate completions bash >"$RELEASE/completions/portcullis.bash"
"$BIN" generate completions zsh >"$RELEASE/completions/_portcullis"
"$BIN" generate completions fish >"$RELEASE/completions/portcullis.fish"

log "cargo deb --no-build --strip $*"
cargo deb --no-build --strip "$@"
