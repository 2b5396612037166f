#!/usr/bin/env bash
# Fetches and builds imaptest (Dovecot's IMAP stress tester) against the installed Dovecot 2.3
# (Debian 12: dovecot-dev 2.3.19) for `cargo bench --bench imaptest`, and prints the binary's path.
#
#   scripts/build-imaptest.sh            # clone from GitHub at IMAPTEST_REF, build, print path
#   IMAPTEST_SRC=/path/to/imaptest scripts/build-imaptest.sh   # build an existing checkout/tarball dir
#   IMAPTEST_BIN=$(scripts/build-imaptest.sh) cargo bench --bench imaptest
#
# Knobs: IMAPTEST_REPO (default https://github.com/dovecot/imaptest.git), IMAPTEST_REF (default
# origin/release-2.3: imaptest's main branch builds only against Dovecot's main branch, the
# maintainers point 2.3.x users to release-2.3, dovecot/imaptest issue 20), IMAPTEST_CACHE
# (default ~/.cache/portcullis/imaptest), IMAPTEST_REBUILD=1 to rebuild a cached binary.
# Installs the build dependencies with apt-get when they are missing (needs root).
# Everything but the final path goes to stderr.
set -euo pipefail

repo=${IMAPTEST_REPO:-https://github.com/dovecot/imaptest.git}
ref=${IMAPTEST_REF:-origin/release-2.3}
cache=${IMAPTEST_CACHE:-$HOME/.cache/portcullis/imaptest}
bin="$cache/build/src/imaptest"

log() { echo "build-imaptest: $*" >&2; }

if [ -x "$bin" ] && [ -z "${IMAPTEST_REBUILD:-}" ]; then
    echo "$bin"
    exit 0
fi

need=()
[ -x /usr/lib/dovecot/dovecot-config ] || [ -f /usr/lib/dovecot/dovecot-config ] || need+=(dovecot-dev)
for tool in git autoconf automake libtoolize make gcc pkg-config; do
    command -v "$tool" >/dev/null || need+=("$tool")
done
if [ ${#need[@]} -gt 0 ]; then
    pkgs=()
    for n in "${need[@]}"; do
        case $n in
            libtoolize) pkgs+=(libtool) ;;
            gcc) pkgs+=(build-essential) ;;
            *) pkgs+=("$n") ;;
        esac
    done
    log "installing ${pkgs[*]}"
    apt-get install -y --no-install-recommends "${pkgs[@]}" libssl-dev zlib1g-dev >&2
fi

mkdir -p "$cache"
rm -rf "$cache/build"
if [ -n "${IMAPTEST_SRC:-}" ]; then
    log "copying $IMAPTEST_SRC"
    cp -a "$IMAPTEST_SRC" "$cache/build"
else
    if [ ! -d "$cache/src/.git" ]; then
        log "cloning $repo"
        if ! git clone --quiet "$repo" "$cache/src" >&2; then
            log "cannot clone $repo; copy an imaptest checkout (release-2.3 branch) to this machine and run"
            log "  IMAPTEST_SRC=/path/to/imaptest $0"
            rm -rf "$cache/src"
            exit 1
        fi
    fi
    git -C "$cache/src" fetch --quiet origin >&2 || log "fetch failed; building the cached clone"
    log "building $ref ($(git -C "$cache/src" rev-parse "$ref"))"
    git -C "$cache/src" archive --format=tar --prefix=build/ "$ref" | tar -x -C "$cache"
    git -C "$cache/src" rev-parse "$ref" >"$cache/build/COMMIT"
fi

cd "$cache/build"
start=$(date +%s)
if [ ! -x configure ]; then
    ./autogen.sh >&2
fi
./configure --with-dovecot=/usr/lib/dovecot >&2
make -j"$(nproc)" >&2
log "built in $(($(date +%s) - start)) s"
echo "$bin"
