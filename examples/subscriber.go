// subscriber.go - read several members at once with os.File, in Go.
//
// What it shows: the Go runtime's poller takes mcastfs files. os.Open sets
// O_NONBLOCK and registers the file with epoll (edge-triggered), so a
// goroutine waiting in File.Read holds no thread: 200 blocked members cost
// 200 goroutines and a handful of threads. Each Read returns one whole
// message (the buffer holds the largest, 1,044,480 bytes), and io.EOF once
// the member has been removed with `rm`. Because the files are in the
// poller, a blocked Read can be ended from another goroutine:
// File.SetReadDeadline (used here for -t, -n and Ctrl-C) or File.Close make
// it return at once, having consumed nothing.
//
// Each reader goroutine reads only when the main goroutine asks for the next
// message, so stopping after -n COUNT leaves the rest queued.
//
//	usage: go run subscriber.go [-m MOUNT] [--create] [-n COUNT] [-t SECONDS] GROUP/MEMBER...
//
//	MOUNT defaults to $MCASTFS or /mnt/mcastfs. --create makes missing
//	groups and members (and removes the members it made when it ends).
//
//	$ go run subscriber.go --create chat/carol logs/all
//	[subscribed to chat/carol logs/all]
//	chat/carol: alice: hi everyone
//	logs/all: ERROR disk full
//	logs/all: (left)                  <- after `rm /mnt/mcastfs/logs/all`
//	chat/carol: bob: bye
//	^C
package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"io/fs"
	"os"
	"os/signal"
	"path/filepath"
	"strings"
	"syscall"
	"time"
)

const readSize = 1 << 20 // more than the largest message: one Read, one message

type event struct {
	reader *reader
	data   []byte
	err    error // io.EOF: the member left
}

type reader struct {
	spec string
	file *os.File
	next chan struct{} // one token per Read the main goroutine wants
}

func (r *reader) run(events chan<- event) {
	buf := make([]byte, readSize)
	for range r.next {
		n, err := r.file.Read(buf)
		events <- event{r, append([]byte(nil), buf[:n]...), err}
		if err != nil {
			return
		}
	}
}

func openMember(root, spec string, create bool) (f *os.File, made bool, err error) {
	group, member, ok := strings.Cut(spec, "/")
	if !ok || group == "" || member == "" || strings.Contains(member, "/") {
		return nil, false, fmt.Errorf("%q is not GROUP/MEMBER", spec)
	}
	path := filepath.Join(root, group, member)
	if create {
		if err := os.Mkdir(filepath.Join(root, group), 0o777); err != nil && !errors.Is(err, fs.ErrExist) {
			return nil, false, err
		}
		f, err := os.OpenFile(path, os.O_RDONLY|os.O_CREATE|os.O_EXCL, 0o644)
		if err == nil {
			f.Close()
			made = true
		} else if !errors.Is(err, fs.ErrExist) {
			return nil, false, err
		}
	}
	f, err = os.Open(path)
	return f, made, err
}

func main() {
	mount := os.Getenv("MCASTFS")
	if mount == "" {
		mount = "/mnt/mcastfs"
	}
	flag.StringVar(&mount, "m", mount, "the mount point")
	create := flag.Bool("create", false, "make missing groups and members")
	count := flag.Int("n", 0, "stop after COUNT messages")
	timeout := flag.Float64("t", 0, "stop after SECONDS without a message")
	flag.Parse()
	if flag.NArg() == 0 {
		flag.Usage()
		os.Exit(64)
	}

	var readers []*reader
	var made []string
	events := make(chan event)
	status := 0
	defer func() {
		for _, path := range made { // leave the groups we joined
			if err := os.Remove(path); err != nil && !errors.Is(err, fs.ErrNotExist) {
				fmt.Fprintln(os.Stderr, err)
			}
		}
		os.Exit(status)
	}()
	for _, spec := range flag.Args() {
		f, created, err := openMember(mount, spec, *create)
		if created {
			made = append(made, filepath.Join(mount, spec))
		}
		if err != nil {
			fmt.Fprintf(os.Stderr, "subscriber.go: %v\n", err)
			status = 1
			return
		}
		r := &reader{spec, f, make(chan struct{}, 1)}
		readers = append(readers, r)
		go r.run(events)
		r.next <- struct{}{}
	}
	fmt.Fprintf(os.Stderr, "[subscribed to %s]\n", strings.Join(flag.Args(), " "))

	interrupted := make(chan os.Signal, 1)
	signal.Notify(interrupted, os.Interrupt, syscall.SIGTERM)
	var idle <-chan time.Time
	var timer *time.Timer
	if *timeout > 0 {
		timer = time.NewTimer(time.Duration(*timeout * float64(time.Second)))
		idle = timer.C
	}

	pending := len(readers) // Reads asked for and not yet answered
	received := 0
	stopping := false
	stop := func() {
		// A deadline in the past wakes every Read still waiting in the
		// poller, with os.ErrDeadlineExceeded; it took no message.
		stopping = true
		for _, r := range readers {
			r.file.SetReadDeadline(time.Now())
		}
	}
	for pending > 0 {
		select {
		case ev := <-events:
			pending--
			switch {
			case ev.err == io.EOF:
				fmt.Printf("%s: (left)\n", ev.reader.spec)
			case errors.Is(ev.err, os.ErrDeadlineExceeded) && stopping:
			case ev.err != nil:
				fmt.Fprintf(os.Stderr, "subscriber.go: %v\n", ev.err)
				status = 1
			default:
				// A message a Read took just before the deadline is shown
				// too: it is no longer in the queue.
				fmt.Printf("%s: %s\n", ev.reader.spec, strings.TrimSuffix(string(ev.data), "\n"))
				received++
				if stopping {
					break
				}
				if *count > 0 && received >= *count {
					stop()
					break
				}
				if timer != nil {
					if !timer.Stop() {
						<-timer.C // it fired while this event waited
					}
					timer.Reset(time.Duration(*timeout * float64(time.Second)))
				}
				ev.reader.next <- struct{}{}
				pending++
			}
		case <-idle:
			stop()
		case <-interrupted:
			stop()
		}
	}
}
