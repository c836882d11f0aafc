// Command kv is the course's cache: an in-memory key-value store over
// HTTP (GET/PUT /k/NAME, POST /incr/NAME), the back end of the
// multi-container exercise.
package main

import (
	"flag"
	"fmt"
	"io"
	"log"
	"net/http"
	"strconv"
	"strings"
	"sync"
)

type store struct {
	mu sync.Mutex
	m  map[string]string
}

func (s *store) get(k string) (string, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	v, ok := s.m[k]
	return v, ok
}

func (s *store) set(k, v string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.m[k] = v
}

func (s *store) incr(k string) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	n, _ := strconv.Atoi(s.m[k])
	n++
	s.m[k] = strconv.Itoa(n)
	return n
}

func main() {
	addr := flag.String("listen", ":6379", "address to serve on")
	flag.Parse()
	s := &store{m: map[string]string{}}
	mux := http.NewServeMux()
	mux.HandleFunc("GET /k/{name}", func(w http.ResponseWriter, r *http.Request) {
		v, ok := s.get(r.PathValue("name"))
		if !ok {
			http.NotFound(w, r)
			return
		}
		io.WriteString(w, v)
	})
	mux.HandleFunc("PUT /k/{name}", func(w http.ResponseWriter, r *http.Request) {
		b, err := io.ReadAll(io.LimitReader(r.Body, 1<<20))
		if err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		s.set(r.PathValue("name"), strings.TrimSpace(string(b)))
	})
	mux.HandleFunc("POST /incr/{name}", func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprintln(w, s.incr(r.PathValue("name")))
	})
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, "ok\n") })
	log.Printf("kv listening on %s", *addr)
	log.Fatal(http.ListenAndServe(*addr, mux))
}
