#!/usr/bin/env bash
# THE demo: a sandboxed Dovecot + clamd on loopback, portcullis in front of them, in the
# foreground. Ctrl-C stops everything and deletes the temporary directory.
#
#   scripts/demo.sh                 # run the demo
#   scripts/demo.sh --check-ports   # only check that the demo's ports are free (exit 0/2)
#
# Safe on any machine: it never stops, disables, reconfigures or talks to the system's own
# services (a system Dovecot or clamd keeps running untouched), and binds loopback only.
#   1. Checks its four ports on 127.0.0.1 first; if one is busy it exits 2 with a message
#      before changing anything. Ports: DEMO_IMAPS_PORT (10993), DEMO_IMAP_PORT (10143),
#      DEMO_POP3S_PORT (10995), DEMO_POP3_PORT (10110), or DEMO_PORTS=auto for free ones.
#   2. Installs only what the demo needs and only if it is missing (dovecot-imapd,
#      dovecot-pop3d, clamav-daemon, clamav-testfiles, python3), with a temporary
#      policy-rc.d so that the packages' system services are not started; creates the system
#      user `portcullis-mail` that owns the demo maildir if it does not exist.
#   3. Builds portcullis (release) and starts, each with its own config in a temp dir:
#      - Dovecot, IMAP/POP3 plaintext on ephemeral 127.0.0.1 ports, user demo / password demo,
#        two messages (one with an EICAR attachment);
#      - clamd with two tiny signature files (EICAR, clamav-testfiles' clam.exe), TCP on an
#        ephemeral 127.0.0.1 port;
#      - portcullis: imaps, imap+STARTTLS, pop3s, pop3+STLS on the ports of step 1, a
#        a certificate for localhost from `portcullis generate cert`, [scan] with that clamd;
#   and prints the ports it used.
# Must run as root (Dovecot switches to the mail user). DEMO_KEEP=1 keeps the temporary
# directory after exit.
set -euo pipefail
export HOME="${HOME:-/root}"

cd "$(dirname "$0")/.."
REPO="$(pwd)"
MAIL_USER="portcullis-mail"
EICAR='X5O!P%@AP[4\PZX54(P^)7CC)7}$EICAR-STANDARD-ANTIVIRUS-TEST-FILE!$H+H*'
DOVECOT_PID=""
CLAMD_PID=""
PROXY_PID=""
DEMO_DIR=""

log() { printf '==> %s\n' "$*" >&2; }

cleanup() {
    trap - EXIT INT TERM
    local pid
    for pid in "$PROXY_PID" "$CLAMD_PID" "$DOVECOT_PID"; do
        [[ -n "$pid" ]] && kill -TERM "$pid" 2>/dev/null || true
    done
    for pid in "$PROXY_PID" "$CLAMD_PID" "$DOVECOT_PID"; do
        [[ -n "$pid" ]] && wait "$pid" 2>/dev/null || true
    done
    if [[ -n "$DEMO_DIR" && -z "${DEMO_KEEP:-}" ]]; then
        rm -rf "$DEMO_DIR"
    elif [[ -n "$DEMO_DIR" ]]; then
        log "kept $DEMO_DIR"
    fi
    log "demo stopped"
}

# --- ports ------------------------------------------------------------------------------------

# An ephemeral port that is free on 127.0.0.1 right now.
free_port() {
    python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

# True if 127.0.0.1:PORT can be bound the way portcullis binds it (SO_REUSEADDR: a connection
# in TIME_WAIT does not make a port busy, a listener on 127.0.0.1, 0.0.0.0 or :: does).
port_is_free() {
    local port="$1"
    if command -v python3 >/dev/null 2>&1; then
        python3 - "$port" <<'PY'
import socket, sys
s = socket.socket()
s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
try:
    s.bind(("127.0.0.1", int(sys.argv[1])))
except OSError:
    sys.exit(1)
PY
    else
        # Without python3: free unless something accepts connections there.
        ! (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null
    fi
}

# Sets IMAPS_PORT IMAP_PORT POP3S_PORT POP3_PORT from the environment (or picks free ones with
# DEMO_PORTS=auto) and exits 2 with a message naming every busy or invalid one.
choose_ports() {
    local name var port
    local -a busy=()
    if [[ "${DEMO_PORTS:-}" == "auto" ]]; then
        command -v python3 >/dev/null 2>&1 || {
            echo "demo.sh: DEMO_PORTS=auto needs python3" >&2
            exit 2
        }
        DEMO_IMAPS_PORT=$(free_port) DEMO_IMAP_PORT=$(free_port)
        DEMO_POP3S_PORT=$(free_port) DEMO_POP3_PORT=$(free_port)
    fi
    IMAPS_PORT="${DEMO_IMAPS_PORT:-10993}"
    IMAP_PORT="${DEMO_IMAP_PORT:-10143}"
    POP3S_PORT="${DEMO_POP3S_PORT:-10995}"
    POP3_PORT="${DEMO_POP3_PORT:-10110}"
    for name in IMAPS IMAP POP3S POP3; do
        var="${name}_PORT"
        port="${!var}"
        if ! [[ "$port" =~ ^[0-9]+$ ]] || ((port < 1 || port > 65535)); then
            echo "demo.sh: DEMO_${var}=$port is not a port number" >&2
            exit 2
        fi
        if ! port_is_free "$port"; then
            busy+=("127.0.0.1:$port ($(tr '[:upper:]' '[:lower:]' <<<"$name"), DEMO_${var})")
        fi
    done
    if ((${#busy[@]} > 0)); then
        {
            echo "demo.sh: port busy, nothing was started or installed:"
            printf '  %s\n' "${busy[@]}"
            echo "Another program listens there. Choose other ports, e.g."
            echo "  DEMO_IMAPS_PORT=20993 DEMO_IMAP_PORT=20143 DEMO_POP3S_PORT=20995 DEMO_POP3_PORT=20110 $0"
            echo "or let the demo pick free ones: DEMO_PORTS=auto $0"
        } >&2
        exit 2
    fi
    log "ports: imaps 127.0.0.1:$IMAPS_PORT, imap+STARTTLS 127.0.0.1:$IMAP_PORT, pop3s 127.0.0.1:$POP3S_PORT, pop3+STLS 127.0.0.1:$POP3_PORT"
}

# --- what the demo needs ----------------------------------------------------------------------

# "path-or-command package" pairs, as in install-test-deps.sh but only the demo's needs.
DEMO_REQUIREMENTS=(
    "dovecot dovecot-core"
    "/usr/lib/dovecot/imap dovecot-imapd"
    "/usr/lib/dovecot/pop3 dovecot-pop3d"
    "clamd clamav-daemon"
    "/usr/share/clamav-testfiles/clam.exe clamav-testfiles"
    "python3 python3"
    "useradd passwd"
)

missing_packages() {
    local entry what
    for entry in "${DEMO_REQUIREMENTS[@]}"; do
        what="${entry%% *}"
        if [[ "$what" == /* ]]; then
            [[ -e "$what" ]] && continue
        else
            command -v "$what" >/dev/null 2>&1 && continue
        fi
        printf '%s\n' "${entry##* }"
    done | sort -u
}

# Installs the missing packages without starting their services: a policy-rc.d that denies
# every start exists only while apt-get runs (and only if the machine has none of its own).
install_missing() {
    local -a packages
    local policy=/usr/sbin/policy-rc.d own_policy=0
    mapfile -t packages < <(missing_packages)
    if ((${#packages[@]} == 0)); then
        return
    fi
    log "installing what the demo needs: ${packages[*]} (their system services are not started)"
    if [[ ! -e "$policy" ]]; then
        trap 'rm -f /usr/sbin/policy-rc.d' EXIT
        printf '#!/bin/sh\n# temporary, scripts/demo.sh: no service starts while it installs\nexit 101\n' >"$policy"
        chmod 755 "$policy"
        own_policy=1
    fi
    local status=0
    {
        apt-get update &&
            DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends "${packages[@]}"
    } || status=$?
    if ((own_policy)); then
        rm -f "$policy"
        trap - EXIT
    fi
    if ((status != 0)); then
        log "installing ${packages[*]} failed"
        return "$status"
    fi
    log "installed ${packages[*]}; Debian enables the services of such packages for the next boot"
    log "  (dovecot, clamav-daemon, clamav-freshclam): the demo leaves that as it is"
}

create_mail_user() {
    getent passwd "$MAIL_USER" >/dev/null 2>&1 && return
    log "creating the system user $MAIL_USER (owns the demo maildir)"
    useradd --system --no-create-home --user-group --shell /usr/sbin/nologin "$MAIL_USER"
}

wait_for_port() {
    local port="$1" what="$2" pid="$3" i
    for ((i = 0; i < 300; i++)); do
        if ! kill -0 "$pid" 2>/dev/null; then
            log "$what exited during startup"
            return 1
        fi
        if (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then
            return 0
        fi
        sleep 0.1
    done
    log "$what is not listening on $port after 30 s"
    return 1
}

ensure_cargo() {
    [[ -f "${HOME:-/root}/.cargo/env" ]] && source "${HOME:-/root}/.cargo/env"
    if ! command -v cargo >/dev/null 2>&1; then
        command -v cc >/dev/null 2>&1 || {
            apt-get update && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends build-essential ca-certificates curl
        }
        log "installing the Rust toolchain (rustup, stable, minimal)"
        curl --proto '=https' --tlsv1.2 -sSf https://sh.rustup.rs | sh -s -- -y --profile minimal
        source "${HOME:-/root}/.cargo/env"
    fi
}

# --- messages (CRLF line endings) -------------------------------------------------------------

crlf() { sed 's/$/\r/'; }

welcome_message() {
    crlf <<'MSG'
Date: Mon, 2 Nov 2026 09:00:00 +0000
From: Postmaster <postmaster@example.test>
To: Demo <demo@example.test>
Subject: Welcome to the portcullis demo
Message-ID: <welcome@example.test>
MIME-Version: 1.0
Content-Type: text/plain; charset=utf-8

Hello demo,

this message is clean: it reaches you unchanged through portcullis.
MSG
}

eicar_message() {
    crlf <<MSG
Date: Mon, 2 Nov 2026 09:05:00 +0000
From: Mallory <mallory@example.test>
To: Demo <demo@example.test>
Subject: Invoice (carries the EICAR test virus)
Message-ID: <eicar@example.test>
MIME-Version: 1.0
Content-Type: multipart/mixed; boundary="demo-boundary"

--demo-boundary
Content-Type: text/plain; charset=us-ascii

Invoice attached.
--demo-boundary
Content-Type: application/octet-stream; name="invoice.com"
Content-Disposition: attachment; filename="invoice.com"
Content-Transfer-Encoding: base64

$(printf '%s' "$EICAR" | base64 -w 76)
--demo-boundary--
MSG
}

seed_maildir() {
    local maildir="$DEMO_DIR/home/demo/Maildir" n=0 file size generator
    mkdir -p "$maildir"/{cur,new,tmp}
    for generator in welcome_message eicar_message; do
        n=$((n + 1))
        file="$DEMO_DIR/msg.tmp"
        "$generator" >"$file"
        size=$(wc -c <"$file")
        mv "$file" "$maildir/cur/1700000000.M${n}P1.demo,S=${size}:2,"
    done
    chown -R "$MAIL_USER:$MAIL_USER" "$DEMO_DIR/home"
    chmod -R go-rwx "$DEMO_DIR/home/demo"
    chmod 755 "$DEMO_DIR/home"
}

# --- daemons ----------------------------------------------------------------------------------

start_dovecot() {
    local uid gid
    uid=$(id -u "$MAIL_USER")
    gid=$(id -g "$MAIL_USER")
    DOVECOT_IMAP_PORT=$(free_port)
    DOVECOT_POP3_PORT=$(free_port)
    printf 'demo:{PLAIN}demo:%s:%s::%s::\n' "$uid" "$gid" "$DEMO_DIR/home/demo" >"$DEMO_DIR/passwd"
    cat >"$DEMO_DIR/dovecot.conf" <<CONF
# generated by scripts/demo.sh: a private Dovecot, plaintext on loopback only
instance_name = portcullis-demo-$$
base_dir = $DEMO_DIR/dovecot-run
state_dir = $DEMO_DIR/dovecot-state
log_path = $DEMO_DIR/dovecot.log
protocols = imap pop3
listen = 127.0.0.1
ssl = no
disable_plaintext_auth = no
auth_mechanisms = plain login
first_valid_uid = $uid
last_valid_uid = $uid
first_valid_gid = $gid
last_valid_gid = $gid
mail_location = maildir:~/Maildir
mail_max_userip_connections = 100
passdb {
  driver = passwd-file
  args = scheme=PLAIN $DEMO_DIR/passwd
}
userdb {
  driver = passwd-file
  args = $DEMO_DIR/passwd
}
service imap-login {
  inet_listener imap {
    port = $DOVECOT_IMAP_PORT
  }
  inet_listener imaps {
    port = 0
  }
}
service pop3-login {
  inet_listener pop3 {
    port = $DOVECOT_POP3_PORT
  }
  inet_listener pop3s {
    port = 0
  }
}
CONF
    setsid dovecot -F -c "$DEMO_DIR/dovecot.conf" >"$DEMO_DIR/dovecot.out" 2>&1 </dev/null &
    DOVECOT_PID=$!
    if ! wait_for_port "$DOVECOT_IMAP_PORT" dovecot "$DOVECOT_PID" ||
        ! wait_for_port "$DOVECOT_POP3_PORT" dovecot "$DOVECOT_PID"; then
        tail -n 20 "$DEMO_DIR/dovecot.out" "$DEMO_DIR/dovecot.log" >&2 || true
        return 1
    fi
    log "Dovecot: imap 127.0.0.1:$DOVECOT_IMAP_PORT pop3 127.0.0.1:$DOVECOT_POP3_PORT (user demo / demo)"
}

start_clamd() {
    local hex md5 size
    CLAMD_PORT=$(free_port)
    mkdir -p "$DEMO_DIR/clamd-db"
    hex=$(printf '%s' "$EICAR" | od -An -v -tx1 | tr -d ' \n')
    printf 'Test.EICAR:0:*:%s\n' "$hex" >"$DEMO_DIR/clamd-db/demo.ndb"
    md5=$(md5sum /usr/share/clamav-testfiles/clam.exe | cut -d' ' -f1)
    size=$(wc -c </usr/share/clamav-testfiles/clam.exe)
    printf '%s:%s:Test.ClamAV-Test-File\n' "$md5" "$size" >"$DEMO_DIR/clamd-db/demo.hdb"
    cat >"$DEMO_DIR/clamd.conf" <<CONF
# generated by scripts/demo.sh: a private clamd on loopback with two test signatures
Foreground yes
DatabaseDirectory $DEMO_DIR/clamd-db
TCPSocket $CLAMD_PORT
TCPAddr 127.0.0.1
LogFile $DEMO_DIR/clamd.log
PidFile $DEMO_DIR/clamd.pid
ScanMail yes
ScanArchive yes
SelfCheck 0
Bytecode no
CONF
    setsid clamd -c "$DEMO_DIR/clamd.conf" >"$DEMO_DIR/clamd.out" 2>&1 </dev/null &
    CLAMD_PID=$!
    if ! wait_for_port "$CLAMD_PORT" clamd "$CLAMD_PID"; then
        tail -n 20 "$DEMO_DIR/clamd.out" "$DEMO_DIR/clamd.log" >&2 || true
        return 1
    fi
    log "clamd: 127.0.0.1:$CLAMD_PORT (signatures Test.EICAR, Test.ClamAV-Test-File)"
}

# --- portcullis -------------------------------------------------------------------------------

# A private CA and a certificate for localhost and 127.0.0.1 signed by it (keys mode 0600).
write_certificate() {
    "$BIN" generate cert --name localhost --name 127.0.0.1 --days 30 --out "$DEMO_DIR/tls" >/dev/null
}

base_config() {
    cat <<CONF
# generated by scripts/demo.sh
[tls]
cert = "$DEMO_DIR/tls/server.pem"
key = "$DEMO_DIR/tls/server.key"

[[listener]]
name = "imaps"
protocol = "imap"
bind = "127.0.0.1:$IMAPS_PORT"
tls = "implicit"
backend = "demo-imap"

[[listener]]
name = "imap"
protocol = "imap"
bind = "127.0.0.1:$IMAP_PORT"
tls = "starttls"
backend = "demo-imap"

[[listener]]
name = "pop3s"
protocol = "pop3"
bind = "127.0.0.1:$POP3S_PORT"
tls = "implicit"
backend = "demo-pop3"

[[listener]]
name = "pop3"
protocol = "pop3"
bind = "127.0.0.1:$POP3_PORT"
tls = "starttls"
backend = "demo-pop3"

# The demo Dovecot listens on loopback only: plaintext is acceptable there.
[[backend]]
name = "demo-imap"
address = "127.0.0.1:$DOVECOT_IMAP_PORT"
tls = "none"

[[backend]]
name = "demo-pop3"
address = "127.0.0.1:$DOVECOT_POP3_PORT"
tls = "none"
CONF
}

scan_config() {
    cat <<CONF

[scan]
clamd = ["tcp://127.0.0.1:$CLAMD_PORT"]
quarantine_dir = "$DEMO_DIR/quarantine"
CONF
}

# Writes portcullis.toml; adds [scan] only if this build's check-config accepts it.
write_proxy_config() {
    local config="$DEMO_DIR/portcullis.toml"
    mkdir -p "$DEMO_DIR/quarantine"
    { base_config; scan_config; } >"$config"
    if "$BIN" check-config --config "$config" >"$DEMO_DIR/check-config.out" 2>&1; then
        SCANNING="on (clamd 127.0.0.1:$CLAMD_PORT, quarantine $DEMO_DIR/quarantine)"
    else
        log "this build does not accept [scan] yet: relaying without scanning"
        log "  check-config said: $(tr -s ' \n' ' ' <"$DEMO_DIR/check-config.out" | cut -c1-300)"
        base_config >"$config"
        "$BIN" check-config --config "$config" >"$DEMO_DIR/check-config.out" 2>&1 || {
            cat "$DEMO_DIR/check-config.out" >&2
            return 1
        }
        SCANNING="off (this build has no [scan] support yet)"
    fi
    PROXY_CONFIG="$config"
}

print_usage() {
    cat <<TEXT

portcullis demo is running (scanning: $SCANNING). Config: $PROXY_CONFIG

  Listener             Address
  IMAP, implicit TLS   127.0.0.1:$IMAPS_PORT
  IMAP + STARTTLS      127.0.0.1:$IMAP_PORT
  POP3, implicit TLS   127.0.0.1:$POP3S_PORT
  POP3 + STLS          127.0.0.1:$POP3_PORT
  (backends: Dovecot imap $DOVECOT_IMAP_PORT, pop3 $DOVECOT_POP3_PORT; clamd $CLAMD_PORT)

User demo, password demo. Message 1 is clean; message 2 carries the EICAR test virus: with
scanning on, clients get a notice in its place and the original lands in the quarantine.
The certificate for localhost/127.0.0.1 is signed by a private CA ($DEMO_DIR/tls/ca.pem):
give curl --cacert $DEMO_DIR/tls/ca.pem instead of -k, openssl s_client -CAfile the same.

  curl -k imaps://127.0.0.1:$IMAPS_PORT/INBOX -u demo:demo                  # list INBOX
  curl -k 'imaps://127.0.0.1:$IMAPS_PORT/INBOX;UID=1' -u demo:demo          # clean message
  curl -k 'imaps://127.0.0.1:$IMAPS_PORT/INBOX;UID=2' -u demo:demo          # EICAR message
  curl -k --ssl-reqd 'imap://127.0.0.1:$IMAP_PORT/INBOX;UID=1' -u demo:demo   # STARTTLS
  curl -k pop3s://127.0.0.1:$POP3S_PORT/1 -u demo:demo                      # POP3 RETR 1
  curl -k --ssl-reqd pop3://127.0.0.1:$POP3_PORT/ -u demo:demo             # POP3 STLS, LIST
  openssl s_client -quiet -starttls imap -connect 127.0.0.1:$IMAP_PORT     # then: a LOGIN demo demo
  openssl s_client -quiet -connect 127.0.0.1:$IMAPS_PORT                    # implicit TLS
  openssl s_client -quiet -starttls pop3 -connect 127.0.0.1:$POP3_PORT     # then: USER demo / PASS demo

Press Ctrl-C to stop portcullis, Dovecot and clamd.

TEXT
}

usage() {
    sed -n '2,/^set -euo/p' "$0" | sed '$d' | sed 's/^# \{0,1\}//'
}

main() {
    local check_only=0
    case "${1:-}" in
        "") ;;
        --check-ports) check_only=1 ;;
        -h | --help)
            usage
            exit 0
            ;;
        *)
            echo "demo.sh: unknown argument $1 (try --help)" >&2
            exit 2
            ;;
    esac
    # Before anything else: a busy port must not cost an installation or a build.
    choose_ports
    if ((check_only)); then
        exit 0
    fi
    if [[ "$(id -u)" -ne 0 ]]; then
        # Keep the ports just checked (DEMO_PORTS=auto would pick new ones).
        export DEMO_IMAPS_PORT="$IMAPS_PORT" DEMO_IMAP_PORT="$IMAP_PORT"
        export DEMO_POP3S_PORT="$POP3S_PORT" DEMO_POP3_PORT="$POP3_PORT"
        unset DEMO_PORTS
        command -v sudo >/dev/null 2>&1 && exec sudo -E "$0" "$@"
        echo "demo.sh: must run as root (Dovecot switches to the mail user)" >&2
        exit 1
    fi
    install_missing
    create_mail_user
    ensure_cargo
    log "building portcullis (release)"
    cargo build --release --bin portcullis
    BIN="${CARGO_TARGET_DIR:-$REPO/target}/release/portcullis"

    trap cleanup EXIT
    trap 'exit 130' INT
    trap 'exit 143' TERM
    DEMO_DIR=$(mktemp -d /tmp/portcullis-demo.XXXXXX)
    chmod 755 "$DEMO_DIR"
    seed_maildir
    start_dovecot
    start_clamd
    write_certificate
    write_proxy_config

    log "starting portcullis serve --config $PROXY_CONFIG"
    "$BIN" serve --config "$PROXY_CONFIG" &
    PROXY_PID=$!
    # The STARTTLS listener: a bare TCP probe of an implicit-TLS port would log a failed handshake.
    if ! wait_for_port "$IMAP_PORT" portcullis "$PROXY_PID"; then
        return 1
    fi
    print_usage
    wait "$PROXY_PID" || true
    PROXY_PID=""
}

main "$@"
