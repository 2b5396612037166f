#!/usr/bin/env bash
# Install what the portcullis integration tests need (Debian/Ubuntu), idempotently.
#
# - installs only the packages whose binaries/files are missing (one `apt-get update` at most);
# - stops and disables the *system* Dovecot and clamd the package scripts may have started:
#   the tests start their own instances on ephemeral loopback ports and must never talk to these;
# - creates the system user that owns the test maildirs (`portcullis-mail`).
#
# Must run as root (or through sudo). Safe to run repeatedly.
# `install-test-deps.sh --check` only lists missing packages (exit 1 if any), changing nothing.
set -euo pipefail

MAIL_USER="portcullis-mail"
CHECK_ONLY=0
if [[ "${1:-}" == "--check" ]]; then
    CHECK_ONLY=1
fi

if [[ "$CHECK_ONLY" -eq 0 && "$(id -u)" -ne 0 ]]; then
    if command -v sudo >/dev/null 2>&1; then
        exec sudo -E "$0" "$@"
    fi
    echo "install-test-deps.sh: must run as root" >&2
    exit 1
fi

# "path-or-command package" pairs: a path starting with / is checked as a file, anything else
# as a command on PATH.
REQUIREMENTS=(
    "dovecot dovecot-imapd"
    "/usr/lib/dovecot/imap dovecot-imapd"
    "/usr/lib/dovecot/pop3 dovecot-pop3d"
    "clamd clamav-daemon"
    "clamscan clamav"
    "clamdscan clamdscan"
    "/usr/share/clamav-testfiles/clam.exe clamav-testfiles"
    "fetchmail fetchmail"
    "promtool prometheus"
    "haproxy haproxy"
    "systemd-analyze systemd"
    "curl curl"
    "openssl openssl"
    "python3 python3"
    "useradd passwd"
)

is_present() {
    local what="$1"
    if [[ "$what" == /* ]]; then
        [[ -e "$what" ]]
    else
        command -v "$what" >/dev/null 2>&1
    fi
}

missing_packages() {
    local entry what package
    local -A wanted=()
    for entry in "${REQUIREMENTS[@]}"; do
        what="${entry%% *}"
        package="${entry##* }"
        if ! is_present "$what"; then
            wanted["$package"]=1
        fi
    done
    if ((${#wanted[@]} > 0)); then
        printf '%s\n' "${!wanted[@]}" | sort
    fi
}

install_missing() {
    local -a packages
    mapfile -t packages < <(missing_packages)
    if ((${#packages[@]} == 0)); then
        echo "install-test-deps: all test dependencies already present"
        return
    fi
    echo "install-test-deps: installing ${packages[*]}"
    apt-get update
    DEBIAN_FRONTEND=noninteractive apt-get install -y "${packages[@]}"
}

# Package scripts may start the system daemons on 110/143/993/995/3310; tests must never use them.
stop_system_services() {
    local service
    for service in dovecot clamav-daemon clamav-freshclam; do
        if command -v systemctl >/dev/null 2>&1; then
            systemctl stop "$service" >/dev/null 2>&1 || true
            systemctl disable "$service" >/dev/null 2>&1 || true
        fi
        if command -v service >/dev/null 2>&1; then
            service "$service" stop >/dev/null 2>&1 || true
        fi
    done
}

create_mail_user() {
    if getent passwd "$MAIL_USER" >/dev/null 2>&1; then
        echo "install-test-deps: user $MAIL_USER exists"
        return
    fi
    useradd --system --no-create-home --user-group --shell /usr/sbin/nologin "$MAIL_USER"
    echo "install-test-deps: created user $MAIL_USER"
}

if [[ "$CHECK_ONLY" -eq 1 ]]; then
    missing="$(missing_packages)"
    if [[ -n "$missing" ]]; then
        echo "install-test-deps: missing packages:" $missing
        exit 1
    fi
    echo "install-test-deps: nothing missing"
    exit 0
fi

install_missing
stop_system_services
create_mail_user

for entry in "${REQUIREMENTS[@]}"; do
    what="${entry%% *}"
    if ! is_present "$what"; then
        echo "install-test-deps: still missing after install: $what" >&2
        exit 1
    fi
done
echo "install-test-deps: done"
