// Package driver turns a Go type into a dtm-host driver: a core module that, made a component
// with wasm-tools and the WASI reactor adapter (tests/common/polyglot.rs, README "Drivers in
// Python, JavaScript and Go"), targets the world `driver` of wit/driver.wit. A driver package
// implements [Driver] (and [Registrar] if it registers the coordinator) and hands it to
// [Export] from an init function; its main function is empty, as a reactor's is:
//
//	func init() { driver.Export(mine{}) }
//	func main() {}
//
// The canonical ABI between the world's functions and Go is written by hand in abi.go: no
// bindings generator is used (wit-bindgen-go serves TinyGo; these drivers are built with Go's
// own toolchain). Only the exports are bound; a driver cannot call the host's imports (log,
// now-ms, send-http, env, local-ipv4) yet, and it asks for no call hooks (rewrite-http and
// rewrite-grpc leave every call as it is).
package driver

// ServerMethod is a branch URL split for gRPC (wit `server-method`).
type ServerMethod struct {
	Server string
	Method string
}

// Registration is what the host keeps registered for the coordinator (wit `registration`).
type Registration struct {
	State       string
	KeepAliveMs uint64
}

// Resolution is the endpoints a server resolves to (wit `resolution`).
type Resolution struct {
	Endpoints []string
	RefreshMs uint64
}

// Driver is what every driver answers. An error's text is the call's error (wit `string`).
type Driver interface {
	// Name is dtm's name for the driver, e.g. `dtm-driver-protocol1`.
	Name() string
	// Schemes are the URL schemes whose servers the driver resolves.
	Schemes() []string
	// ParseServerMethod splits a gRPC branch URL into server and method.
	ParseServerMethod(uri string) (ServerMethod, error)
	// Resolve resolves a server with one of [Driver.Schemes] to its endpoints.
	Resolve(server, registry string) (Resolution, error)
}

// Registrar is implemented by a driver that registers the coordinator in a registry; a driver
// without it registers nothing.
type Registrar interface {
	RegisterService(target, endpoint string) (Registration, error)
	KeepAlive(state string) (Registration, error)
	Deregister(state string) error
}

var exported Driver

// Export makes d the driver the world's functions call. Call it from an init function: the
// runtime runs those when the host instantiates the component, before any call.
func Export(d Driver) {
	exported = d
}

func registerService(target, endpoint string) (Registration, error) {
	if r, ok := exported.(Registrar); ok {
		return r.RegisterService(target, endpoint)
	}
	return Registration{}, nil
}

func keepAlive(state string) (Registration, error) {
	if r, ok := exported.(Registrar); ok {
		return r.KeepAlive(state)
	}
	return Registration{State: state}, nil
}

func deregister(state string) error {
	if r, ok := exported.(Registrar); ok {
		return r.Deregister(state)
	}
	return nil
}
