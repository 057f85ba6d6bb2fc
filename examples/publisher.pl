#!/usr/bin/env perl
# publisher.pl - publish COUNT messages to a group, in Perl.
#
# What it shows: syswrite($fh, $message) is one write(2), so one message (up
# to 1,044,480 bytes). A full member (not drop-when-full) makes it wait until
# the member has room: nothing is lost. print and printf do not keep
# messages apart: they collect in PerlIO's buffer and go out together, and
# even with autoflush ($| = 1) PerlIO writes 8 KiB at a time, so a print of
# a longer message is several messages. --lines shows when buffered print is
# right: it sets `set message=line`, so that every line is a message however
# the writes fall, and prints the lines through the buffer.
#
#     usage: publisher.pl [-m MOUNT] [-n COUNT] [--as MEMBER] [--lines] GROUP [TEXT]
#
#     MOUNT defaults to $MCASTFS or /mnt/mcastfs. Messages are "TEXT 0",
#     "TEXT 1", ... (TEXT defaults to "message"; with --lines each ends in a
#     newline). --as MEMBER writes on that member's file instead of send, so
#     the message comes from that member.
#
#     $ ./publisher.pl -n 3 chat hello
#     published 3 messages to chat/send in 0.00 s
#     $ ./publisher.pl -n 3 --lines chat hello
#     published 3 lines to chat/send in 0.00 s
use strict;
use warnings;
use Fcntl qw(O_WRONLY);
use Getopt::Long qw(:config no_ignore_case);
use Time::HiRes qw(clock_gettime CLOCK_MONOTONIC);

my $usage = "usage: publisher.pl [-m MOUNT] [-n COUNT] [--as MEMBER] [--lines] GROUP [TEXT]\n";
my ($root, $count, $name, $lines) = ($ENV{MCASTFS} // '/mnt/mcastfs', 10, 'send', 0);
GetOptions('m=s' => \$root, 'n=i' => \$count, 'as=s' => \$name, 'lines' => \$lines) or die $usage;
die $usage unless @ARGV == 1 || @ARGV == 2;
my ($group, $text) = (@ARGV, 'message');

my $start = clock_gettime(CLOCK_MONOTONIC);
# O_WRONLY alone: open(">") would add O_CREAT, and make a member of a wrong --as name.
my $path = "$root/$group/$name";
if ($lines) {
    sysopen(my $ctl, "$root/$group/ctl", O_WRONLY) or die "publisher.pl: $root/$group/ctl: $!\n";
    syswrite($ctl, "set message=line\n") or die "publisher.pl: set message=line: $!\n";    # one command
    close $ctl;
    sysopen(my $out, $path, O_WRONLY) or die "publisher.pl: $path: $!\n";
    print $out "$text $_\n" for 0 .. $count - 1;
    close $out or die "publisher.pl: $path: $!\n";    # close flushes the buffer
} else {
    sysopen(my $out, $path, O_WRONLY) or die "publisher.pl: $path: $!\n";
    for my $i (0 .. $count - 1) {
        defined syswrite($out, "$text $i") or die "publisher.pl: $path: $!\n";
    }
    close $out;
}
printf "published %d %s to %s/%s in %.2f s\n", $count, $lines ? 'lines' : 'messages', $group, $name,
    clock_gettime(CLOCK_MONOTONIC) - $start;
