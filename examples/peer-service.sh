#!/bin/sh
# peer-service.sh - the request/response service of peer_service.py, in shell.
#
# What it shows: a connected group from the shell. The group's owner is the
# listener: G/peers/NAME, mode 0600, is its end of member NAME. With
# send_to_peer=1 (set here for every member that joins) it reads what NAME
# sends; `printf ... > G/peers/NAME` answers NAME alone. The shell has no
# epoll, so the service runs one reader per member (`while read ... done <
# G/peers/NAME`), started when the member appears in G/peers/ (looked for
# five times a second) and ending at end of file, when the member leaves.
# message=line makes every line one message, whoever writes it.
#
# A client joins (`: > G/NAME`, with noclobber for O_EXCL), writes a line on
# its member file and reads the answer. It hears the other clients' requests
# too: every member receives what any member sends. The answer is the
# message marked private, which only the framed view shows: the client reads
# G/frames/NAME (one read with dd) and picks the frames with flags bit 0,
# with od.
#
#   usage: peer-service.sh serve GROUP              (the group's owner)
#          peer-service.sh ask GROUP NAME REQUEST...
#   (mount point: $MCASTFS, default /mnt/mcastfs; ask waits $WAIT seconds,
#    default 10, for each answer)
#
#   terminal 1 (the group's owner)            terminal 2
#   $ ./peer-service.sh serve shout
#   [serving shout: one reader per member of shout/peers/]
#                                             $ ./peer-service.sh ask shout bob hi 'and bye'
#                                             HI
#                                             AND BYE
#   bob: hi -> HI
#   bob: and bye -> AND BYE
#   bob left
#   ^C
set -eu

ROOT=${MCASTFS:-/mnt/mcastfs}
USAGE="usage: peer-service.sh serve GROUP | ask GROUP NAME REQUEST..."
COMMAND=${1:?$USAGE}
GROUP=${2:?$USAGE}
G=$ROOT/$GROUP

# --- the service --------------------------------------------------------------

# Answers member $1 until it leaves: each line it sends, upper-cased, to it alone.
serve_one() {
    while IFS= read -r request; do
        answer=$(printf '%s\n' "$request" | tr '[:lower:]' '[:upper:]')
        printf '%s\n' "$answer" > "$G/peers/$1"
        echo "$1: $request -> $answer"
    done < "$G/peers/$1"
    echo "$1 left"
}

serve() {
    mkdir "$G" 2>/dev/null || [ -d "$G" ] || { echo "peer-service.sh: cannot make $G" >&2; exit 1; }
    echo "set message=line send_to_peer=1" > "$G/ctl"
    workers=$(mktemp -d)                      # NAME -> the pid of its reader
    trap 'kill $(cat "$workers"/* 2>/dev/null) 2>/dev/null; rm -rf "$workers"' EXIT
    trap 'exit 0' INT TERM
    echo "[serving $GROUP: one reader per member of $GROUP/peers/]" >&2
    while :; do
        for file in "$G"/peers/*; do
            [ -e "$file" ] || continue
            name=${file##*/}
            # A reader that ended had its member leave: a new one of that name is new.
            if [ -f "$workers/$name" ] && kill -0 "$(cat "$workers/$name")" 2>/dev/null; then
                continue
            fi
            # Joined before the service set the default: it talks to us now.
            echo "member $name send_to_peer=1" > "$G/ctl" 2>/dev/null || continue
            serve_one "$name" &
            echo $! > "$workers/$name"
        done
        sleep 0.2
    done
}

# --- a client -----------------------------------------------------------------

# The private messages of one batch of frames (the file $1), one per line:
# each frame is a 40-byte header (u32 size, u16 header_size, u8 name_size,
# u8 flags, ...), then the name and the payload, padded to 8 bytes.
private_messages() {
    total=$(wc -c < "$1")
    offset=0
    while [ "$offset" -lt "$total" ]; do
        size=$(od -An -tu4 -j "$offset" -N4 "$1" | tr -d ' ')
        header=$(od -An -tu2 -j $((offset + 4)) -N2 "$1" | tr -d ' ')
        flags=$(od -An -tu1 -j $((offset + 7)) -N1 "$1" | tr -d ' ')
        if [ $((flags & 1)) -eq 1 ]; then
            tail -c +$((offset + header + 1)) "$1" | head -c "$size"
        fi
        offset=$(( (offset + header + size + 7) / 8 * 8 ))
    done
}

ask() {
    NAME=${3:?$USAGE}
    shift 3
    [ $# -gt 0 ] || { echo "$USAGE" >&2; exit 64; }
    if ! (set -C; : > "$G/$NAME") 2>/dev/null; then
        echo "peer-service.sh: cannot join $GROUP as $NAME (taken, or no such group)" >&2
        exit 1
    fi
    batch=$(mktemp)
    trap 'rm -f "$G/$NAME" "$batch"' EXIT
    for request; do
        printf '%s\n' "$request" > "$G/$NAME"
        answer=
        while [ -z "$answer" ]; do
            # One read(2) of up to 1 MiB: every frame queued now, at least one.
            if ! timeout "${WAIT:-10}" dd if="$G/frames/$NAME" of="$batch" bs=1048576 count=1 2>/dev/null; then
                echo "peer-service.sh: no answer in ${WAIT:-10} s; is \`peer-service.sh serve $GROUP\` running?" >&2
                exit 1
            fi
            answer=$(private_messages "$batch")
        done
        printf '%s\n' "$answer"
    done
}

case $COMMAND in
    serve) serve ;;
    ask) ask "$@" ;;
    *) echo "$USAGE" >&2; exit 64 ;;
esac
