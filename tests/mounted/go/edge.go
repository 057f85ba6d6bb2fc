// edge: an ordinary Go reader and writer on mcastfs files (contract: "Poll,
// edge-triggered"). The Go runtime registers every file it opens with its
// poller (epoll, EPOLLIN|EPOLLOUT|EPOLLRDHUP|EPOLLET) and sets O_NONBLOCK;
// os.File.Read and Write then wait for an edge after EAGAIN. A missed
// wake-up hangs them for ever; here each wait is bounded and reported.
//
//	edge [-rounds N] [-wait D] read  GROUPDIR
//	edge [-rounds N] [-wait D] write GROUPDIR
//
// read: joins member "go-reader" and reads it with os.File.Read in a
// goroutine; the main goroutine sends through GROUPDIR/send from a raw fd (so
// only the reader depends on the poller), one message a round, or three in
// the even rounds, each after the reader has had time to wait.
//
// write: joins member "go-full" with capacity=1; a goroutine writes messages
// to GROUPDIR/send with os.File.Write, so from the second on each write
// finds the member full and waits; the main goroutine drains one message at a
// time from a raw fd, and the blocked write must then return.
//
// Output: one "ok ..." line per round and a summary, or a "MISS ..." line at
// the first wake-up missed (the goroutine stays stuck: later rounds would
// tell nothing). Exit status 0, 1 on a miss, 2 on a setup error.
package main

import (
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"syscall"
	"time"
)

var (
	rounds = flag.Int("rounds", 5, "rounds")
	wait   = flag.Duration("wait", 2*time.Second, "how long a reader or writer may take to return once it can")
	// settle lets the reader or writer reach its wait in the poller, so that
	// the round tests the wake-up rather than a call that found data at once.
	settle = 50 * time.Millisecond
)

func fail(format string, args ...any) {
	fmt.Printf("error: "+format+"\n", args...)
	os.Exit(2)
}

func join(dir, member string) {
	f, err := os.OpenFile(filepath.Join(dir, member), os.O_CREATE|os.O_EXCL|os.O_RDONLY, 0o644)
	if err != nil {
		fail("join %s: %v", member, err)
	}
	f.Close()
}

// rawOpen opens without the runtime's poller: a plain non-blocking fd.
func rawOpen(path string, flags int) int {
	fd, err := syscall.Open(path, flags|syscall.O_NONBLOCK|syscall.O_CLOEXEC, 0)
	if err != nil {
		fail("open %s: %v", path, err)
	}
	return fd
}

type result struct {
	text string
	err  error
}

func readSide(dir string) int {
	join(dir, "go-reader")
	f, err := os.Open(filepath.Join(dir, "go-reader"))
	if err != nil {
		fail("open go-reader: %v", err)
	}
	got := make(chan result, 16)
	go func() {
		buf := make([]byte, 1<<20)
		for {
			n, err := f.Read(buf)
			got <- result{string(buf[:n]), err}
			if err != nil {
				return
			}
		}
	}()
	send := rawOpen(filepath.Join(dir, "send"), syscall.O_WRONLY)
	for r := 1; r <= *rounds; r++ {
		count := 1
		if r%2 == 0 {
			count = 3
		}
		time.Sleep(settle)
		sent := time.Now()
		var want []string
		for j := 0; j < count; j++ {
			text := fmt.Sprintf("go-%d-%d", r, j)
			if _, err := syscall.Write(send, []byte(text)); err != nil {
				fail("send %s: %v", text, err)
			}
			want = append(want, text)
		}
		for _, text := range want {
			select {
			case res := <-got:
				if res.err != nil || res.text != text {
					fmt.Printf("MISS read round %d: Read gave %q, %v; expected %q\n", r, res.text, res.err, text)
					return 1
				}
			case <-time.After(*wait):
				// The reader is stuck in the poller: later rounds would tell nothing.
				fmt.Printf("MISS read round %d: os.File.Read still waiting %v after %q was sent\n", r, *wait, text)
				return 1
			}
		}
		fmt.Printf("ok read round %d: %d message(s) read %.1f ms after sending\n",
			r, count, float64(time.Since(sent).Microseconds())/1000)
	}
	fmt.Printf("summary read: %d rounds, none missed\n", *rounds)
	return 0
}

func writeSide(dir string) int {
	join(dir, "go-full")
	ctl, err := os.OpenFile(filepath.Join(dir, "ctl"), os.O_WRONLY, 0)
	if err != nil {
		fail("open ctl: %v", err)
	}
	if _, err := ctl.Write([]byte("member go-full capacity=1\n")); err != nil {
		fail("ctl: %v", err)
	}
	ctl.Close()
	reader := rawOpen(filepath.Join(dir, "go-full"), syscall.O_RDONLY)
	f, err := os.OpenFile(filepath.Join(dir, "send"), os.O_WRONLY, 0)
	if err != nil {
		fail("open send: %v", err)
	}
	wrote := make(chan result, 16)
	go func() {
		for i := 0; i <= *rounds; i++ {
			text := fmt.Sprintf("go-%d", i)
			_, err := f.Write([]byte(text))
			wrote <- result{text, err}
			if err != nil {
				return
			}
		}
	}()
	buf := make([]byte, 1<<20)
	// The first write finds room at once; each later one waits for a drain.
	select {
	case res := <-wrote:
		if res.err != nil {
			fail("first write: %v", res.err)
		}
	case <-time.After(*wait):
		fail("the first write, into an empty member, did not return")
	}
	for r := 1; r <= *rounds; r++ {
		time.Sleep(settle)
		select {
		case res := <-wrote:
			fail("write %q returned (%v) while the member was full: is go-full's capacity 1?", res.text, res.err)
		default:
		}
		n, err := syscall.Read(reader, buf)
		if err != nil || n <= 0 {
			fail("drain: %d, %v", n, err)
		}
		drained := time.Now()
		select {
		case res := <-wrote:
			if res.err != nil {
				fmt.Printf("MISS write round %d: Write failed: %v\n", r, res.err)
				return 1
			}
			fmt.Printf("ok write round %d: the blocked Write returned %.1f ms after the drain\n",
				r, float64(time.Since(drained).Microseconds())/1000)
		case <-time.After(*wait):
			fmt.Printf("MISS write round %d: os.File.Write still waiting %v after the member was drained\n", r, *wait)
			return 1
		}
	}
	fmt.Printf("summary write: %d rounds, none missed\n", *rounds)
	return 0
}

func main() {
	flag.Parse()
	if flag.NArg() != 2 {
		fmt.Fprintln(os.Stderr, "usage: edge [-rounds N] [-wait D] read|write GROUPDIR")
		os.Exit(2)
	}
	switch flag.Arg(0) {
	case "read":
		os.Exit(readSide(flag.Arg(1)))
	case "write":
		os.Exit(writeSide(flag.Arg(1)))
	default:
		fmt.Fprintln(os.Stderr, "usage: edge [-rounds N] [-wait D] read|write GROUPDIR")
		os.Exit(2)
	}
}
