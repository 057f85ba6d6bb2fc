#!/bin/sh
# line-messages.sh - a pipeline into a group, one message per line.
#
# What it shows: `set message=line` on G/ctl makes every line written on
# G/send (or a member's file) one message, however the writer cuts its
# writes. tee writes whatever it read in one go, several lines or half of
# one; with the default, message=write, each of those writes is one message.
# With message=line the group cuts them after every newline, and a line
# written in pieces waits in its open file until its newline comes (or the
# file is closed). So `seq`, `tail -F`, tee, socat, shell printf builtins and
# buffered runtimes can feed a group directly. The receiver here is
# framed_subscriber.py, which prints each message with its sequence number,
# so that you can count them; `cat G/all` would show the same text.
#
#   usage: line-messages.sh [LOGFILE]   (mount point: $MCASTFS, default /mnt/mcastfs;
#                                        group: $GROUP, default "lines")
#
# Without LOGFILE it runs three small pipelines and shows what member `all`
# received from each:
#
#   $ ./line-messages.sh
#   message=write: seq 3 | tee lines/send
#     lines/all #1 10:41:07.302113 from - uid=0 gid=0 pid=9120: 1\n2\n3
#   message=line: seq 3 | tee lines/send
#     lines/all #2 10:41:07.596880 from - uid=0 gid=0 pid=9131: 1
#     lines/all #3 10:41:07.596880 from - uid=0 gid=0 pid=9131: 2
#     lines/all #4 10:41:07.596880 from - uid=0 gid=0 pid=9131: 3
#   message=line: printf 'half a '; printf 'line\n'   (two writes)
#     lines/all #5 10:41:07.893420 from - uid=0 gid=0 pid=9140: half a line
#
# With LOGFILE it follows the file, `tail -n 0 -F LOGFILE | tee G/send`,
# printing every line that arrives as one message, until Ctrl-C.
set -eu

ROOT=${MCASTFS:-/mnt/mcastfs}
NAME=${GROUP:-lines}
G=$ROOT/$NAME
LOG=${1:-}
SUBSCRIBER=$(dirname "$0")/framed_subscriber.py

mkdir "$G" 2>/dev/null || [ -d "$G" ]
touch "$G/all"                                    # the receiving member
# Leaving removes the member; a subscriber still reading it gets end of file.
trap 'rm -f "$G/all"; wait' EXIT
trap 'exit 0' INT TERM

# Prints what `all` holds now: the subscriber stops 0.3 s after the last one.
received() {
    python3 "$SUBSCRIBER" -m "$ROOT" -t 0.3 "$NAME/all" 2>/dev/null | sed 's/^/  /'
}

if [ -n "$LOG" ]; then
    echo "set message=line" > "$G/ctl"
    python3 "$SUBSCRIBER" -m "$ROOT" "$NAME/all" &
    tail -n 0 -F "$LOG" | tee "$G/send" > /dev/null
    exit 0
fi

echo "set message=write" > "$G/ctl"
echo "message=write: seq 3 | tee $NAME/send"
seq 3 | tee "$G/send" > /dev/null
received

echo "set message=line" > "$G/ctl"
echo "message=line: seq 3 | tee $NAME/send"
seq 3 | tee "$G/send" > /dev/null
received

printf '%s\n' "message=line: printf 'half a '; printf 'line\\n'   (two writes)"
{ printf 'half a '; printf 'line\n'; } > "$G/send"
received
