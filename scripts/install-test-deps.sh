#!/usr/bin/env bash
# Install what the portcullis integration tests need (Debian/Ubuntu), idempotently.
#
# - installs only the packages whose binaries/files are missing (one `apt-get update` at most),
#   with a temporary policy-rc.d (only if the machine has none) so that the packages' system
#   services (Dovecot, clamd, freshclam, haproxy, prometheus, redis) are not started;
# - never stops, disables or reconfigures a system service: the tests start their own Dovecot
#   and clamd with their own configs on ephemeral loopback ports and never talk to the system's;
# - installs the Python package kubernetes-validate (PyPI) with pip if `python3` lacks it
#   (tests/deploy_k8s_schema.rs runs `python3 -m kubernetes_validate`);
# - creates the system user that owns the test maildirs (`portcullis-mail`).
#
# Must run as root (or through sudo; pip then installs for root's python3). Safe to run
# repeatedly.
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
    "redis-server redis-server"
    "/usr/sbin/nginx nginx"
    "/usr/lib/nginx/modules/ngx_mail_module.so libnginx-mod-mail"
    "systemd-analyze systemd"
    "curl curl"
    "openssl openssl"
    "python3 python3"
    "useradd passwd"
    "man man-db"
    "zsh zsh"
    "dpkg-deb dpkg"
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
    echo "install-test-deps: installing ${packages[*]} (their services are not started)"
    local policy=/usr/sbin/policy-rc.d own_policy=0 status=0
    if [[ ! -e "$policy" ]]; then
        trap 'rm -f /usr/sbin/policy-rc.d' EXIT
        printf '#!/bin/sh\n# temporary, install-test-deps.sh: no service starts while it installs\nexit 101\n' >"$policy"
        chmod 755 "$policy"
        own_policy=1
    fi
    {
        apt-get update &&
            DEBIAN_FRONTEND=noninteractive apt-get install -y "${packages[@]}"
    } || status=$?
    if ((own_policy)); then
        rm -f "$policy"
        trap - EXIT
    fi
    return "$status"
}

has_kubernetes_validate() {
    python3 -c 'import kubernetes_validate' >/dev/null 2>&1
}

install_kubernetes_validate() {
    if has_kubernetes_validate; then
        return
    fi
    echo "install-test-deps: installing kubernetes-validate (pip)"
    if ! python3 -m pip --version >/dev/null 2>&1; then
        apt-get update
        DEBIAN_FRONTEND=noninteractive apt-get install -y python3-pip
    fi
    local -a pip=(python3 -m pip install --quiet --disable-pip-version-check kubernetes-validate)
    # Debian's own python3 refuses installs outside a venv (PEP 668) unless told otherwise.
    PIP_ROOT_USER_ACTION=ignore "${pip[@]}" 2>/dev/null ||
        PIP_ROOT_USER_ACTION=ignore "${pip[@]}" --break-system-packages
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
    has_kubernetes_validate || missing="${missing:+$missing }kubernetes-validate(pip)"
    if [[ -n "$missing" ]]; then
        echo "install-test-deps: missing packages:" $missing
        exit 1
    fi
    echo "install-test-deps: nothing missing"
    exit 0
fi

install_missing
install_kubernetes_validate
create_mail_user

for entry in "${REQUIREMENTS[@]}"; do
    what="${entry%% *}"
    if ! is_present "$what"; then
        echo "install-test-deps: still missing after install: $what" >&2
        exit 1
    fi
done
if ! has_kubernetes_validate; then
    echo "install-test-deps: still missing after install: python3 module kubernetes_validate" >&2
    exit 1
fi
echo "install-test-deps: done"
