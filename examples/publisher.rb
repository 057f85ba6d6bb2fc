#!/usr/bin/env ruby
# publisher.rb - publish COUNT messages to a group, in Ruby.
#
# What it shows: IO#syswrite(string) is one write(2), so one message (up to
# 1,044,480 bytes). A full member (not drop-when-full) makes it wait until
# the member has room: nothing is lost. Ruby's buffered writes do not keep
# messages apart: puts, print and write collect in the IO's buffer and go
# out together (and, with sync = true, `print "a", "b\n"` is a message per
# argument), and IO.copy_stream into the file uses sendfile(2), which sends
# a 64 KiB part and then fails with EMSGSIZE. --lines shows when buffered
# writes are right: it sets `set message=line`, so that every line is a
# message however the writes fall, and puts the lines through the buffer.
#
#     usage: publisher.rb [-m MOUNT] [-n COUNT] [--as MEMBER] [--lines] GROUP [TEXT]
#
#     MOUNT defaults to $MCASTFS or /mnt/mcastfs. Messages are "TEXT 0",
#     "TEXT 1", ... (TEXT defaults to "message"; with --lines each ends in a
#     newline). --as MEMBER writes on that member's file instead of send, so
#     the message comes from that member.
#
#     $ ./publisher.rb -n 3 chat hello
#     published 3 messages to chat/send in 0.00 s
#     $ ./publisher.rb -n 3 --lines chat hello
#     published 3 lines to chat/send in 0.00 s
require 'optparse'

root = ENV.fetch('MCASTFS', '/mnt/mcastfs')
count = 10
name = 'send'
lines = false
OptionParser.new do |o|
  o.banner = 'usage: publisher.rb [-m MOUNT] [-n COUNT] [--as MEMBER] [--lines] GROUP [TEXT]'
  o.on('-m MOUNT') { |v| root = v }
  o.on('-n COUNT', Integer) { |v| count = v }
  o.on('--as MEMBER') { |v| name = v }
  o.on('--lines') { lines = true }
end.parse!
abort 'usage: publisher.rb [-m MOUNT] [-n COUNT] [--as MEMBER] [--lines] GROUP [TEXT]' unless (1..2).cover?(ARGV.size)
group, text = ARGV
text ||= 'message'

start = Process.clock_gettime(Process::CLOCK_MONOTONIC)
begin
  # File::WRONLY alone: "w" would add O_CREAT, and make a member of a wrong --as name.
  if lines
    File.open(File.join(root, group, 'ctl'), File::WRONLY) { |c| c.syswrite("set message=line\n") } # one command
    File.open(File.join(root, group, name), File::WRONLY) do |f|
      count.times { |i| f.puts "#{text} #{i}" }
    end
  else
    File.open(File.join(root, group, name), File::WRONLY) do |f|
      count.times { |i| f.syswrite("#{text} #{i}") }
    end
  end
rescue SystemCallError => e
  abort "publisher.rb: #{e.message}"
end
elapsed = Process.clock_gettime(Process::CLOCK_MONOTONIC) - start
puts format('published %d %s to %s/%s in %.2f s', count, lines ? 'lines' : 'messages', group, name, elapsed)
