#!/usr/bin/env perl
# subscriber.pl - read several members at once, in Perl.
#
# What it shows: IO::Select works on member files (mcastfs answers poll), so
# one loop waits on many members, with a timeout (-t). Each member is opened
# non-blocking and read with sysread, one whole message per read (the buffer
# holds the largest, 1,044,480 bytes): undef with EAGAIN when the queue is
# empty, 0 (end of file) once the member has been removed with `rm`. Use
# sysread, not <$fh> or read(), with select: those read ahead into PerlIO's
# buffer, which select cannot see (for a plain blocking loop over one-line
# messages, <$fh> works). A signal ends a blocked read at once, with EINTR
# (here Ctrl-C; `alarm` with a handler that dies gives a read with a
# timeout). Because it reads only when it prints, -n COUNT leaves the rest
# queued.
#
#     usage: subscriber.pl [-m MOUNT] [--create] [-n COUNT] [-t SECONDS] GROUP/MEMBER...
#
#     MOUNT defaults to $MCASTFS or /mnt/mcastfs. --create makes missing
#     groups and members (and removes the members it made when it ends,
#     Ctrl-C included).
#
#     $ ./subscriber.pl --create chat/carol logs/all
#     [subscribed to chat/carol logs/all]
#     chat/carol: alice: hi everyone
#     logs/all: ERROR disk full
#     logs/all: (left)                  <- after `rm /mnt/mcastfs/logs/all`
#     chat/carol: bob: bye
#     ^C
use strict;
use warnings;
use Errno qw(EAGAIN EEXIST EINTR ENOENT);
use Fcntl qw(O_RDONLY O_CREAT O_EXCL O_NONBLOCK);
use Getopt::Long qw(:config no_ignore_case);
use IO::Select;

use constant READ_SIZE => 1 << 20;    # more than the largest message: one read, one message
my $usage = "usage: subscriber.pl [-m MOUNT] [--create] [-n COUNT] [-t SECONDS] GROUP/MEMBER...\n";

my ($root, $create, $count, $timeout) = ($ENV{MCASTFS} // '/mnt/mcastfs', 0, 0, undef);
GetOptions('m=s' => \$root, 'create' => \$create, 'n=i' => \$count, 't=f' => \$timeout) or die $usage;
die $usage unless @ARGV;
$| = 1;

my (@made, %spec_of);
my $stop = 0;
$SIG{INT} = $SIG{TERM} = sub { $stop = 1 };
# Leave the groups we joined, whichever way we end.
END { for (@made) { unlink $_ or $! == ENOENT or warn "$_: $!\n" } }

my $sel = IO::Select->new;
for my $spec (@ARGV) {
    my ($group, $member, @rest) = split m{/}, $spec, -1;
    die "subscriber.pl: \"$spec\" is not GROUP/MEMBER\n" unless length($group // '') && length($member // '') && !@rest;
    my $path = "$root/$group/$member";
    if ($create) {
        mkdir "$root/$group" or $! == EEXIST or die "$root/$group: $!\n";
        if (sysopen(my $new, $path, O_RDONLY | O_CREAT | O_EXCL, 0644)) {
            close $new;
            push @made, $path;
        } elsif ($! != EEXIST) {
            die "$path: $!\n";
        }
    }
    sysopen(my $fh, $path, O_RDONLY | O_NONBLOCK) or die "$path: $!\n";
    $spec_of{fileno $fh} = $spec;
    $sel->add($fh);
}
print STDERR "[subscribed to @ARGV]\n";

my $received = 0;
LOOP: while ($sel->count && !$stop) {
    $! = 0;
    my @ready = $sel->can_read($timeout);
    if (!@ready) {
        next if $stop || $! == EINTR;    # a signal: the loop condition decides
        last;                            # -t: no message for SECONDS
    }
    for my $fh (@ready) {
        my $spec = $spec_of{fileno $fh};
        # Read everything queued now; EAGAIN means the queue is empty.
        while (1) {
            my $n = sysread($fh, my $data, READ_SIZE);
            if (!defined $n) {
                next if $! == EINTR;
                last if $! == EAGAIN;
                die "$spec: $!\n";
            }
            if ($n == 0) {    # end of file: the member was removed
                print "$spec: (left)\n";
                $sel->remove($fh);
                close $fh;
                last;
            }
            chomp $data;
            print "$spec: $data\n";
            last LOOP if $count && ++$received >= $count;
        }
    }
}
exit 0;
