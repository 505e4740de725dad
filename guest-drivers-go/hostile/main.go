// Command hostile is `dtm-driver-hostile` in Go, for the host's sandbox tests only
// (tests/polyglot_drivers.rs): the Go counterpart of the Rust guest guest-drivers/hostile. Its
// parse-server-method misbehaves on purpose when a URL starts with `loop/` (spins forever) or
// `grow/` (keeps allocating 8 MiB buffers until memory runs out: big steps, so the memory cap
// stops it long before the time limit could; each one grows linear memory, so it needs no
// filling); any other URL splits at its first slash.
package main

import (
	"errors"
	"runtime/debug"
	"strings"

	"dtm-host/guest-drivers-go/driver"
)

type hostile struct{}

func init() {
	driver.Export(hostile{})
}

func main() {}

func (hostile) Name() string {
	return "dtm-driver-hostile"
}

func (hostile) Schemes() []string {
	return []string{"hostile"}
}

// hoard keeps what `grow/` allocates reachable, so the collector cannot give it back.
var hoard [][]byte

func (hostile) ParseServerMethod(uri string) (driver.ServerMethod, error) {
	kind, _, _ := strings.Cut(uri, "/")
	switch kind {
	case "loop":
		spins := 0
		for {
			spins++
		}
	case "grow":
		// No collections: the hoard stays reachable anyway, and collecting only spends the
		// call's time (on a loaded machine the bomb then met the 100 ms limit before the
		// memory cap).
		debug.SetGCPercent(-1)
		for {
			hoard = append(hoard, make([]byte, 8<<20))
		}
	}
	at := strings.IndexByte(uri, '/')
	if at < 0 {
		return driver.ServerMethod{}, errors.New("bad url: '" + uri + "'. no '/' found")
	}
	return driver.ServerMethod{Server: uri[:at], Method: uri[at:]}, nil
}

func (hostile) Resolve(server, _ string) (driver.Resolution, error) {
	return driver.Resolution{}, errors.New("'" + server + "': the hostile driver resolves nothing")
}
