#!/bin/sh
# chat.sh - a tiny chat on mcastfs: each user is a member of one group.
#
# What it shows: a member file is both your inbox and your outbox. `cat` on
# it prints what the others send; each write(2) on it (here: one printf per
# line) is one message to every other member. You do not see your own lines
# come back because members have loopback=0 by default. Leaving is `rm`:
# the background `cat` then reads what was still queued and ends.
#
#   usage: chat.sh NAME [GROUP]       (mount point: $MCASTFS, default /mnt/mcastfs;
#                                      GROUP defaults to "chat")
#
#   terminal 1                         terminal 2
#   $ ./chat.sh alice
#   [alice joined chat; Ctrl-D leaves]
#                                      $ ./chat.sh bob
#                                      [bob joined chat; Ctrl-D leaves]
#   * bob joined
#   hi bob
#                                      alice: hi bob
#                                      hello alice
#   bob: hello alice
#                                      ^D
#                                      [bob left chat]
#   * bob left
set -eu

NAME=${1:?usage: chat.sh NAME [GROUP]}
GROUP=${2:-chat}
ROOT=${MCASTFS:-/mnt/mcastfs}
G=$ROOT/$GROUP

# Make the group unless it exists (someone else may make it at the same moment).
mkdir "$G" 2>/dev/null || [ -d "$G" ] || { echo "chat.sh: cannot make $G" >&2; exit 1; }

# Join: create our member file. noclobber (set -C) makes `>` use O_EXCL, so a
# name that is already taken is refused instead of shared.
if ! (set -C; : > "$G/$NAME") 2>/dev/null; then
    echo "chat.sh: the name $NAME is taken in $GROUP (or cannot be made)" >&2
    exit 1
fi

leave() {
    trap - EXIT INT TERM
    printf '* %s left\n' "$NAME" > "$G/$NAME" 2>/dev/null || true
    rm -f "$G/$NAME"        # the reader gets end of file once its queue is empty
    wait                    # for the background cat
    echo "[$NAME left $GROUP]" >&2
}
trap leave EXIT
trap 'exit 0' INT TERM

cat "$G/$NAME" &            # inbox: prints each message as it arrives
echo "[$NAME joined $GROUP; Ctrl-D leaves]" >&2
printf '* %s joined\n' "$NAME" > "$G/$NAME"

# Outbox: one printf per line, so one write(2) and one message per line.
while IFS= read -r line; do
    printf '%s: %s\n' "$NAME" "$line" > "$G/$NAME"
done
