// A hello app in Go with one module dependency (rsc.io/quote), fetched
// through the Go module proxy at build time.
package main

import (
	"context"
	"fmt"
	"log"
	"net/http"
	"os"
	"os/signal"
	"syscall"

	"rsc.io/quote/v4"
)

func main() {
	message := os.Getenv("MESSAGE")
	if message == "" {
		message = "Hello from Go on Upscale!"
	}
	http.HandleFunc("GET /{$}", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		fmt.Fprintln(w, message)
	})
	http.HandleFunc("GET /proverb", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		fmt.Fprintln(w, quote.Go())
	})
	port := os.Getenv("PORT")
	if port == "" {
		port = "8080"
	}
	// Every address, not 127.0.0.1: the router reaches the app from outside
	// the container.
	srv := &http.Server{Addr: "0.0.0.0:" + port}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, os.Interrupt)
	defer stop()
	go func() {
		<-ctx.Done()
		srv.Shutdown(context.Background())
	}()
	log.Printf("listening on port %s", port)
	if err := srv.ListenAndServe(); err != http.ErrServerClosed {
		log.Fatal(err)
	}
}
