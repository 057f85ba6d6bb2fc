// publisher.go - publish COUNT messages to a group, in Go.
//
// What it shows: one File.Write of one buffer is one write(2), so one
// message (up to 1,044,480 bytes): fmt.Fprintf(f, ...) is one too. Go opens
// the file non-blocking and puts it in its poller, so when a member that is
// not drop-when-full has a full queue, the write gets EAGAIN and the
// goroutine waits for POLLOUT without holding a thread, then writes again:
// nothing is lost, nobody gets a message twice. io.Copy into the file cuts
// messages (into 32 KiB parts with Go 1.19) and a bufio.Writer merges them
// (one write(2) per flush); --lines shows when a bufio.Writer is right: it
// sets `set message=line`, so that every line is a message however the
// writes fall, and sends a line per message through one 64 KiB buffer.
//
//	usage: go run publisher.go [-m MOUNT] [-n COUNT] [--as MEMBER] [--lines] GROUP [TEXT]
//
//	MOUNT defaults to $MCASTFS or /mnt/mcastfs. Messages are "TEXT 0",
//	"TEXT 1", ... (TEXT defaults to "message"; with --lines each ends in a
//	newline). --as MEMBER writes on that member's file instead of send, so
//	the message comes from that member.
//
//	$ go run publisher.go -n 3 chat hello
//	published 3 messages to chat/send in 0.00 s
//	$ go run publisher.go -n 3 --lines chat hello
//	published 3 lines to chat/send in 0.00 s
package main

import (
	"bufio"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"time"
)

func main() {
	mount := os.Getenv("MCASTFS")
	if mount == "" {
		mount = "/mnt/mcastfs"
	}
	flag.StringVar(&mount, "m", mount, "the mount point")
	count := flag.Int("n", 10, "messages to send")
	as := flag.String("as", "", "send as this member instead of through send")
	lines := flag.Bool("lines", false, "set message=line and send the messages as lines through a bufio.Writer")
	flag.Parse()
	if flag.NArg() < 1 || flag.NArg() > 2 {
		flag.Usage()
		os.Exit(64)
	}
	group, text := flag.Arg(0), "message"
	if flag.NArg() == 2 {
		text = flag.Arg(1)
	}
	name := "send"
	if *as != "" {
		name = *as
	}
	fail := func(err error) {
		fmt.Fprintf(os.Stderr, "publisher.go: %v\n", err)
		os.Exit(1)
	}
	if *lines {
		// One write(2) on ctl is one command.
		if err := os.WriteFile(filepath.Join(mount, group, "ctl"), []byte("set message=line\n"), 0); err != nil {
			fail(err)
		}
	}
	f, err := os.OpenFile(filepath.Join(mount, group, name), os.O_WRONLY, 0)
	if err != nil {
		fail(err)
	}

	start := time.Now()
	if *lines {
		w := bufio.NewWriterSize(f, 64<<10)
		for i := 0; i < *count; i++ {
			fmt.Fprintf(w, "%s %d\n", text, i)
		}
		err = w.Flush()
	} else {
		for i := 0; i < *count && err == nil; i++ {
			_, err = fmt.Fprintf(f, "%s %d", text, i)
		}
	}
	if err == nil {
		err = f.Close() // with --lines, the last close sends a line left without its newline
	}
	if err != nil {
		fail(err)
	}
	what := "messages"
	if *lines {
		what = "lines"
	}
	fmt.Printf("published %d %s to %s/%s in %.2f s\n", *count, what, group, name, time.Since(start).Seconds())
}
