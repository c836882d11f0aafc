// Command web is the course's small web application: it answers with the
// name of the pod (or container) that served the request and, when a kv
// cache is configured, a visit counter kept there.
package main

import (
	"flag"
	"fmt"
	"io"
	"log"
	"net/http"
	"os"
	"strings"
	"time"
)

func main() {
	addr := flag.String("listen", ":8080", "address to serve on")
	kv := flag.String("kv", os.Getenv("KV_URL"), "base URL of the kv cache (optional)")
	flag.Parse()
	host, _ := os.Hostname()
	client := &http.Client{Timeout: 2 * time.Second}
	http.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprintf(w, "hello from %s\n", host)
		if *kv == "" {
			return
		}
		resp, err := client.Post(strings.TrimRight(*kv, "/")+"/incr/visits", "text/plain", nil)
		if err != nil {
			fmt.Fprintf(w, "kv unreachable: %v\n", err)
			return
		}
		defer resp.Body.Close()
		n, _ := io.ReadAll(io.LimitReader(resp.Body, 64))
		fmt.Fprintf(w, "visits: %s", n)
	})
	http.HandleFunc("/healthz", func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, "ok\n") })
	log.Printf("web listening on %s", *addr)
	log.Fatal(http.ListenAndServe(*addr, nil))
}
