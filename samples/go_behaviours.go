// Go's own system calls (issue 11): a Go program makes them itself, from
// its runtime and its syscall package, on goroutine stacks, with no libc in
// between (CGO_ENABLED=0), or beside one (cgo). Built by tests/e2e/golang.rs
// both ways. Usage: go_behaviours MODE [ARG]. Prints what happened, then
// "done".
//
//	exec        os/exec runs /bin/echo escaped
//	dial ADDR   net.Dial("tcp", ADDR) (a loopback listener of the test's)
//	read FILE   os.ReadFile(FILE)
//	goroutines  5,000 goroutines, each opening and closing FILE (ARG)
//	preempt     8 goroutines spinning while the collector runs 20 times
//	            (asynchronous preemption: SIGURG)
//	signal      os/signal: SIGUSR1 sent to itself and received
package main

import (
	"fmt"
	"net"
	"os"
	"os/exec"
	"os/signal"
	"runtime"
	"sync"
	"syscall"
	"time"
)

func main() {
	if len(os.Args) < 2 {
		fmt.Fprintln(os.Stderr, "usage: go_behaviours MODE [ARG]")
		os.Exit(2)
	}
	arg := ""
	if len(os.Args) > 2 {
		arg = os.Args[2]
	}
	switch os.Args[1] {
	case "exec":
		out, err := exec.Command("/bin/echo", "escaped").Output()
		fmt.Printf("exec: %q %v\n", out, err)
	case "dial":
		c, err := net.Dial("tcp", arg)
		fmt.Println("dial:", err)
		if c != nil {
			c.Close()
		}
	case "read":
		b, err := os.ReadFile(arg)
		fmt.Printf("read: %q %v\n", b, err)
	case "goroutines":
		var wg sync.WaitGroup
		var mu sync.Mutex
		opened := 0
		for i := 0; i < 5000; i++ {
			wg.Add(1)
			go func() {
				defer wg.Done()
				f, err := os.Open(arg)
				if err == nil {
					f.Close()
					mu.Lock()
					opened++
					mu.Unlock()
				}
			}()
		}
		wg.Wait()
		fmt.Println("goroutines opened:", opened)
	case "preempt":
		var wg sync.WaitGroup
		stop := time.Now().Add(300 * time.Millisecond)
		for i := 0; i < 8; i++ {
			wg.Add(1)
			go func() {
				defer wg.Done()
				x := 0
				for time.Now().Before(stop) {
					for j := 0; j < 100000; j++ {
						x += j
					}
				}
				_ = x
			}()
		}
		for i := 0; i < 20; i++ {
			runtime.GC()
		}
		wg.Wait()
		fmt.Println("preempt: ok")
	case "signal":
		c := make(chan os.Signal, 1)
		signal.Notify(c, syscall.SIGUSR1)
		syscall.Kill(os.Getpid(), syscall.SIGUSR1)
		select {
		case s := <-c:
			fmt.Println("signal:", s)
		case <-time.After(5 * time.Second):
			fmt.Println("signal: none")
		}
	default:
		fmt.Fprintln(os.Stderr, "unknown mode", os.Args[1])
		os.Exit(2)
	}
	fmt.Println("done")
}
