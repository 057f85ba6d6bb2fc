#!/usr/bin/env ruby
# subscriber.rb - read several members at once, in Ruby.
#
# What it shows: IO.select works on member files (mcastfs answers poll), so
# one thread can wait on many members, with a timeout (-t). Each member is
# opened non-blocking and read with read_nonblock, one whole message per
# read (the buffer holds the largest, 1,044,480 bytes): :wait_readable
# when the queue is empty, nil (end of file) once the member has been
# removed with `rm`. Don't read a member with IO#read(n): it waits to fill n
# bytes, merging messages; gets works for one-line messages. A thread
# blocked in a read is ended at once by Thread#raise or Thread#kill (Ruby
# signals the thread; mcastfs answers EINTR having consumed nothing).
# Because it reads only when it prints, -n COUNT leaves the rest queued.
#
#     usage: subscriber.rb [-m MOUNT] [--create] [-n COUNT] [-t SECONDS] GROUP/MEMBER...
#
#     MOUNT defaults to $MCASTFS or /mnt/mcastfs. --create makes missing
#     groups and members (and removes the members it made when it ends,
#     Ctrl-C included).
#
#     $ ./subscriber.rb --create chat/carol logs/all
#     [subscribed to chat/carol logs/all]
#     chat/carol: alice: hi everyone
#     logs/all: ERROR disk full
#     logs/all: (left)                  <- after `rm /mnt/mcastfs/logs/all`
#     chat/carol: bob: bye
#     ^C
require 'optparse'

READ_SIZE = 1 << 20 # more than the largest message: one read, one message

root = ENV.fetch('MCASTFS', '/mnt/mcastfs')
create = false
count = 0
timeout = nil
OptionParser.new do |o|
  o.banner = 'usage: subscriber.rb [-m MOUNT] [--create] [-n COUNT] [-t SECONDS] GROUP/MEMBER...'
  o.on('-m MOUNT') { |v| root = v }
  o.on('--create') { create = true }
  o.on('-n COUNT', Integer) { |v| count = v }
  o.on('-t SECONDS', Float) { |v| timeout = v }
end.parse!
abort 'usage: subscriber.rb [-m MOUNT] [--create] [-n COUNT] [-t SECONDS] GROUP/MEMBER...' if ARGV.empty?
$stdout.sync = true

made = []
files = {} # IO => spec
begin
  ARGV.each do |spec|
    group, member, *rest = spec.split('/', -1)
    abort "subscriber.rb: #{spec.inspect} is not GROUP/MEMBER" if group.to_s.empty? || member.to_s.empty? || !rest.empty?
    path = File.join(root, group, member)
    if create
      begin
        Dir.mkdir(File.join(root, group))
      rescue Errno::EEXIST
      end
      begin
        File.open(path, File::RDONLY | File::CREAT | File::EXCL, 0o644).close
        made << path
      rescue Errno::EEXIST
      end
    end
    files[File.open(path, File::RDONLY | File::NONBLOCK)] = spec
  end
  warn "[subscribed to #{ARGV.join(' ')}]"

  received = 0
  until files.empty?
    ready, = IO.select(files.keys, nil, nil, timeout)
    break if ready.nil? # -t: no message for SECONDS
    ready.each do |f|
      # Read everything queued now; :wait_readable means the queue is empty.
      loop do
        data = f.read_nonblock(READ_SIZE, exception: false)
        break if data == :wait_readable
        if data.nil? # end of file: the member was removed
          puts "#{files.delete(f)}: (left)"
          f.close
          break
        end
        puts "#{files[f]}: #{data.force_encoding('UTF-8').scrub.chomp}"
        received += 1
        exit 0 if count.positive? && received >= count
      end
    end
  end
rescue Interrupt
  # Ctrl-C: leave quietly.
ensure
  made.each do |path| # leave the groups we joined
    File.unlink(path)
  rescue Errno::ENOENT
  end
end
