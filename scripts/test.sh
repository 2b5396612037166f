#!/usr/bin/env bash
# THE test command for portcullis: installs what is missing, then formatting, lints and tests.
#
#   scripts/test.sh
#
# Works from a fresh clone on a fresh Debian 12 machine as root (CI runs it through `.ci/run`
# with CI=true and no stdin). Steps:
#   1. scripts/install-test-deps.sh: Dovecot, clamd, clamav-testfiles, haproxy, promtool,
#      systemd-analyze, fetchmail, curl, openssl, python3, man-db, zsh, kubernetes-validate (pip)
#      (only what is missing; the packages' services are not started, no system service is
#      stopped) and the `portcullis-mail` system user;
#   2. a Rust toolchain with rustfmt and clippy (rustup, only if cargo is missing), a C
#      compiler and make (aws-lc-sys builds with gcc, tikv-jemalloc-sys with make) and cargo-deb (`cargo install --locked`, ~1 min,
#      only if missing; tests/package_deb.rs builds the .deb with it);
#   3. cargo fmt --check, cargo clippy (all targets, warnings are errors), cargo test (lib,
#      bins, integration tests, doc tests; the benchmarks are built by clippy but not run).
set -euo pipefail
export HOME="${HOME:-/root}"

cd "$(dirname "$0")/.."

log() { printf '\n==> %s\n' "$*"; }

as_root() {
    if [[ "$(id -u)" -eq 0 ]]; then
        "$@"
    else
        sudo -E "$@"
    fi
}

ensure_build_tools() {
    local -a missing=()
    command -v cc >/dev/null 2>&1 || missing+=(build-essential)
    # tikv-jemalloc-sys runs jemalloc's configure and make.
    command -v make >/dev/null 2>&1 || missing+=(make)
    command -v git >/dev/null 2>&1 || missing+=(git)
    [[ -e /etc/ssl/certs/ca-certificates.crt ]] || missing+=(ca-certificates)
    command -v curl >/dev/null 2>&1 || missing+=(curl)
    if ((${#missing[@]} > 0)); then
        log "installing build tools: ${missing[*]}"
        as_root apt-get update
        as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends "${missing[@]}"
    fi
}

ensure_rust() {
    if [[ -f "${HOME:-/root}/.cargo/env" ]]; then
        # shellcheck source=/dev/null
        source "${HOME:-/root}/.cargo/env"
    fi
    if ! command -v cargo >/dev/null 2>&1; then
        log "installing the Rust toolchain (rustup, stable, minimal + rustfmt + clippy)"
        curl --proto '=https' --tlsv1.2 -sSf https://sh.rustup.rs |
            sh -s -- -y --profile minimal --default-toolchain stable -c rustfmt -c clippy
        # shellcheck source=/dev/null
        source "${HOME:-/root}/.cargo/env"
    fi
    if command -v rustup >/dev/null 2>&1; then
        cargo fmt --version >/dev/null 2>&1 || rustup component add rustfmt
        cargo clippy --version >/dev/null 2>&1 || rustup component add clippy
    fi
}

ensure_cargo_deb() {
    if ! cargo deb --version >/dev/null 2>&1; then
        log "installing cargo-deb (cargo install cargo-deb --locked)"
        cargo install cargo-deb --locked
    fi
}

SECONDS=0
log "test dependencies (scripts/install-test-deps.sh)"
ensure_build_tools
as_root scripts/install-test-deps.sh
ensure_rust
ensure_cargo_deb

log "cargo fmt --all -- --check"
cargo fmt --all -- --check

log "cargo clippy --all-targets -- -D warnings"
cargo clippy --all-targets -- -D warnings

log "cargo test --no-fail-fast (lib, bins, tests, doc tests)"
cargo test --no-fail-fast

log "all checks passed in ${SECONDS}s"
