# rsyslog as a SIEM-style receiver for the audit-forwarding suite (crates/credvault/tests/it/siem.rs): installs the
# Debian package if rsyslogd is missing, runs a private rsyslogd on 127.0.0.1 from a config in
# DIR (no systemd, no /dev/log, no imuxsock/imklog: the distribution's configuration is not
# used), listening for syslog over UDP and over TCP (octet counting, RFC 6587) on one port, and
# writes every message it receives, as received, one per line to DIR/received.log. Source this
# file, then call rsyslog_start / rsyslog_stop.
#
#   rsyslog_start DIR PORT  -> exports CREDVAULT_TEST_RSYSLOG_PORT (UDP and TCP on 127.0.0.1)
#                              and CREDVAULT_TEST_RSYSLOG_LOG (DIR/received.log)
#   rsyslog_stop DIR
#
# Each line of received.log is the raw message (%rawmsg%): for RFC 5424 senders the whole
# `<PRI>1 TIMESTAMP HOST APP-NAME PROCID MSGID STRUCTURED-DATA MSG`, without the TCP octet
# count. Control characters inside a message are escaped by rsyslog (#012 for LF), so one line
# is one message. Calling rsyslog_start again while DIR's daemon runs keeps it (and its port).
# Everything — configuration, work directory, pid file, received.log — lives in DIR.

rsyslog_install() {
    if ! command -v rsyslogd >/dev/null 2>&1 && [ ! -x /usr/sbin/rsyslogd ]; then
        echo "==> installing rsyslog from Debian"
        apt-get -o DPkg::Lock::Timeout=300 update -q >/dev/null
        DEBIAN_FRONTEND=noninteractive apt-get -o DPkg::Lock::Timeout=300 install -y -q rsyslog >/dev/null
    fi
}

_rsyslogd_bin() {
    command -v rsyslogd 2>/dev/null || echo /usr/sbin/rsyslogd
}

_rsyslog_running() {
    local dir=$1
    [ -f "$dir/rsyslogd.pid" ] && kill -0 "$(cat "$dir/rsyslogd.pid")" 2>/dev/null
}

# Sends one RFC 5424 message over UDP and one over TCP (octet counting) and waits until both
# are in received.log.
_rsyslog_probe() {
    local dir=$1 port=$2 tag i
    tag="probe-$$-$RANDOM"
    python3 - "$port" "$tag" <<'EOF' || return 1
import socket, sys
port, tag = int(sys.argv[1]), sys.argv[2]
for proto in ("udp", "tcp"):
    msg = f"<85>1 2020-01-01T00:00:00Z localhost rsyslog-probe - probe - {tag}-{proto}".encode()
    if proto == "udp":
        s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        s.sendto(msg, ("127.0.0.1", port))
    else:
        s = socket.create_connection(("127.0.0.1", port), timeout=5)
        s.sendall(str(len(msg)).encode() + b" " + msg)
    s.close()
EOF
    for i in $(seq 1 100); do
        if grep -q -- "$tag-udp" "$dir/received.log" 2>/dev/null && grep -q -- "$tag-tcp" "$dir/received.log" 2>/dev/null; then
            return 0
        fi
        # UDP may be sent before the input is bound: send again now and then.
        if [ $((i % 10)) = 0 ]; then
            python3 -c 'import socket,sys; socket.socket(socket.AF_INET, socket.SOCK_DGRAM).sendto(sys.argv[2].encode(), ("127.0.0.1", int(sys.argv[1])))' \
                "$port" "<85>1 2020-01-01T00:00:00Z localhost rsyslog-probe - probe - $tag-udp" || true
        fi
        sleep 0.1
    done
    return 1
}

rsyslog_start() {
    local dir=$1 port=$2 i bin
    mkdir -p "$dir"
    dir=$(cd "$dir" && pwd)
    if _rsyslog_running "$dir"; then
        port=$(cat "$dir/port")
    else
        rsyslog_install
        bin=$(_rsyslogd_bin)
        mkdir -p "$dir/work"
        cat > "$dir/rsyslog.conf" <<EOF
global(workDirectory="$dir/work" maxMessageSize="64k")
module(load="imudp")
module(load="imtcp")
input(type="imudp" address="127.0.0.1" port="$port")
input(type="imtcp" address="127.0.0.1" port="$port")
template(name="credvault_raw" type="string" string="%rawmsg%\n")
*.* action(type="omfile" file="$dir/received.log" template="credvault_raw" flushOnTXEnd="on" asyncWriting="off")
EOF
        if ! "$bin" -N1 -f "$dir/rsyslog.conf" >"$dir/check.log" 2>&1; then
            echo "rsyslog rejects $dir/rsyslog.conf:" >&2
            cat "$dir/check.log" >&2
            return 1
        fi
        echo "$port" > "$dir/port"
        rm -f "$dir/rsyslogd.pid"
        touch "$dir/received.log"
        # -n: stay in the foreground (no fork), so the background job is the daemon itself.
        nohup "$bin" -n -f "$dir/rsyslog.conf" -i "$dir/rsyslogd.pid" >"$dir/rsyslogd.out" 2>&1 &
        echo $! > "$dir/rsyslogd.pid.launch"
        for i in $(seq 1 50); do
            _rsyslog_running "$dir" && break
            sleep 0.1
        done
        if ! _rsyslog_running "$dir"; then
            echo "rsyslogd did not start on 127.0.0.1:$port:" >&2
            cat "$dir/rsyslogd.out" >&2 2>/dev/null
            return 1
        fi
    fi
    if ! _rsyslog_probe "$dir" "$port"; then
        echo "rsyslogd on 127.0.0.1:$port does not write what it receives to $dir/received.log:" >&2
        cat "$dir/rsyslogd.out" >&2 2>/dev/null
        return 1
    fi
    export CREDVAULT_TEST_RSYSLOG_PORT="$port"
    export CREDVAULT_TEST_RSYSLOG_LOG="$dir/received.log"
    export RSYSLOG_DIR="$dir"
}

rsyslog_stop() {
    local dir=${1:-${RSYSLOG_DIR:-}} pid f
    [ -n "$dir" ] || return 0
    for f in "$dir/rsyslogd.pid" "$dir/rsyslogd.pid.launch"; do
        [ -f "$f" ] || continue
        pid=$(cat "$f")
        if [ -n "$pid" ] && kill -0 "$pid" 2>/dev/null; then
            kill "$pid" 2>/dev/null || true
            for _ in $(seq 1 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
            kill -9 "$pid" 2>/dev/null || true
        fi
        rm -f "$f"
    done
}
