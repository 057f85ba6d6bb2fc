#!/bin/sh
# log-fanout.sh - one producer, several consumers, each with its own member.
#
# What it shows: a group as a fan-out bus for log lines. The producer writes
# every line with its own write(2) on G/send, so one line is one message.
# (`tail -f LOG > G/send` would not do that: tail writes whatever it read in
# one go, several lines or half of one, and each write is one message.) Each
# consumer owns a member and reads it at its own pace: `all` keeps
# everything, `errors` keeps the ERROR lines with grep. `errors` is set
# drop_when_full=1, so a stuck grep loses lines instead of holding the
# producer back; `all` is not, so it never misses one.
#
#   usage: log-fanout.sh [LOGFILE]   (mount point: $MCASTFS, default /mnt/mcastfs;
#                                     group: $GROUP, default "logs")
#
# Without LOGFILE it plays a short demo log and shows what each consumer got:
#
#   $ ./log-fanout.sh
#   all: 5 lines
#     INFO  service started
#     INFO  accepted connection
#     ERROR disk full
#     WARN  retrying
#     ERROR retry failed
#   errors: 2 lines
#     ERROR disk full
#     ERROR retry failed
#   status:
#     group logs send=anyone capacity=256 ... sent=5 blocked_writers=0
#
# With LOGFILE it follows the file (tail -F) until Ctrl-C, and the consumers
# append to ./all.log and ./errors.log.
set -eu

ROOT=${MCASTFS:-/mnt/mcastfs}
G=$ROOT/${GROUP:-logs}
LOG=${1:-}

mkdir "$G" 2>/dev/null || [ -d "$G" ]
touch "$G/all" "$G/errors"                        # two members
echo "member errors drop_when_full=1" > "$G/ctl"

if [ -n "$LOG" ]; then
    OUT_ALL=./all.log OUT_ERR=./errors.log
else
    TMP=$(mktemp -d)
    OUT_ALL=$TMP/all OUT_ERR=$TMP/errors
fi

# Consumers: each reads its own member; both end when their member is removed.
cat "$G/all" >> "$OUT_ALL" &
grep --line-buffered ERROR < "$G/errors" >> "$OUT_ERR" &

stop() {
    trap - EXIT INT TERM
    # Let the consumers catch up, then remove their members: each reads what
    # is still queued, gets end of file, and exits.
    tries=0
    while [ $tries -lt 100 ] && grep -Eq '^member (all|errors) queued=[1-9]' "$G/status"; do
        tries=$((tries + 1)); sleep 0.1
    done
    status=$(cat "$G/status")
    rm -f "$G/all" "$G/errors"
    wait
    if [ -z "$LOG" ]; then
        echo "all: $(wc -l < "$OUT_ALL") lines";    sed 's/^/  /' "$OUT_ALL"
        echo "errors: $(wc -l < "$OUT_ERR") lines"; sed 's/^/  /' "$OUT_ERR"
        echo "status:";                             echo "$status" | sed 's/^/  /'
        rm -rf "$TMP"
    fi
}
trap stop EXIT
trap 'exit 0' INT TERM

# Producer: one write(2) per line.
publish() {
    while IFS= read -r line; do
        printf '%s\n' "$line" > "$G/send"
    done
}

if [ -n "$LOG" ]; then
    tail -n 0 -F "$LOG" | publish
else
    printf '%s\n' \
        "INFO  service started" \
        "INFO  accepted connection" \
        "ERROR disk full" \
        "WARN  retrying" \
        "ERROR retry failed" | publish
fi
