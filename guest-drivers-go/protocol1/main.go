// Command protocol1 is `dtm-driver-protocol1` in Go: the same behaviour as the Rust guest
// guest-drivers/protocol1 (docs/drivers.md §4.2). Scheme `protocol1`; a URL without `//`
// splits at its first slash, any other by its first path segment (S2, on Go's own url.Parse,
// which guest-drivers/gourl ports to Rust); `protocol1:///host:port` and
// `protocol1://host:port` resolve to `host:port`. It registers nothing.
//
// Built for GOOS=wasip1 GOARCH=wasm with -buildmode=c-shared (a reactor: the host calls its
// exports, main never runs) and made a component by tests/common/polyglot.rs; the canonical
// ABI is in ../driver.
package main

import (
	"errors"
	"net/url"
	"strings"
	"unicode/utf8"

	"dtm-host/guest-drivers-go/driver"
)

type protocol1 struct{}

func init() {
	driver.Export(protocol1{})
}

func main() {}

func (protocol1) Name() string {
	return "dtm-driver-protocol1"
}

func (protocol1) Schemes() []string {
	return []string{"protocol1"}
}

func (protocol1) ParseServerMethod(uri string) (driver.ServerMethod, error) {
	if !strings.Contains(uri, "//") {
		return splitFirstSlash(uri)
	}
	return splitServiceSegment(uri)
}

// splitFirstSlash is S1: everything before the first `/` is the server, the rest (query
// included) the method.
func splitFirstSlash(uri string) (driver.ServerMethod, error) {
	at := strings.IndexByte(uri, '/')
	if at < 0 {
		return driver.ServerMethod{}, errors.New("bad url: '" + uri + "'. no '/' found")
	}
	return driver.ServerMethod{Server: uri[:at], Method: uri[at:]}, nil
}

// splitServiceSegment is S2: the first path segment stays with `scheme://host`, the rest is the
// method. A URL url.Parse refuses gives an empty pair, as in dtm; an empty path is an error
// (dtm panics on it).
func splitServiceSegment(uri string) (driver.ServerMethod, error) {
	u, err := parse(uri)
	if err != nil {
		return driver.ServerMethod{}, nil
	}
	if u.Path == "" {
		return driver.ServerMethod{}, errors.New("bad url: '" + uri + "'. no path to split")
	}
	index := strings.IndexByte(u.Path[1:], '/') + 1
	return driver.ServerMethod{
		Server: u.Scheme + "://" + u.Host + u.Path[:index],
		Method: u.Path[index:],
	}, nil
}

// parse is url.Parse, refusing a host or path that is not UTF-8 once unescaped (`%ff`), as
// guest-drivers/gourl does: Go keeps the bytes, but a wit `string` must be UTF-8 (the host
// fails a call that returns one that is not).
func parse(rawURL string) (*url.URL, error) {
	u, err := url.Parse(rawURL)
	if err == nil && !(utf8.ValidString(u.Host) && utf8.ValidString(u.Path)) {
		err = errors.New("invalid UTF-8 after unescaping")
	}
	return u, err
}

// Resolve answers the dial target's endpoint: the path without its leading `/`, else the host.
func (protocol1) Resolve(server, _ string) (driver.Resolution, error) {
	u, err := parse(server)
	if err != nil {
		return driver.Resolution{}, err
	}
	endpoint := strings.TrimPrefix(u.Path, "/")
	if endpoint == "" {
		endpoint = u.Host
	}
	if endpoint == "" {
		return driver.Resolution{}, errors.New("'" + server + "' names no endpoint")
	}
	return driver.Resolution{Endpoints: []string{endpoint}}, nil
}
