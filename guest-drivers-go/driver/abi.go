package driver

// The component model's canonical ABI for the world `driver` (wit/driver.wit), by hand, for
// wasm32: each world function is a `//go:wasmexport` of its name. Strings arrive as (pointer,
// length) pairs in memory the host allocated through `cabi_realloc`; every result is more than
// one flat value, so each function returns a pointer to a block holding it, laid out as the ABI
// says (a record's fields in order, each at its alignment; a result or option is a one-byte
// case, then its payload at the payload's alignment; a string or list is pointer and length).
// The layouts are written out beside each function; a change to the contract's types must be
// mirrored here by hand, and `dtm-host driver check` is what catches a mistake.
//
// Memory: Go's garbage collector does not move objects, so a block the host reads is a Go
// allocation kept reachable in `pinned` until the host calls the function's post-return
// (`cabi_post_<name>`), after it has copied the results out; then the call's blocks are let go.
//
// `cabi_realloc` must not allocate from Go's heap: the host calls it to place a call's arguments,
// at a point where the component may not call the host (the canonical ABI forbids it, and the
// host traps with "cannot leave component instance"), yet an allocation can start a garbage
// collection or a heap growth, and both read the clock through WASI. So it hands out space in
// `arguments`, a buffer made ready by the previous call once it had copied its own arguments
// out (at load for the first), where calling the host is allowed. 128 KiB holds any call's
// arguments but a longer branch URL (states are at most 64 KiB, servers 1 KiB): those fall
// back to the heap, which traps as above when it must grow for them (a 1 MB URL does on a new
// instance; the call fails alone), and the next buffer is made twice their size.

import "unsafe"

// pinned holds the current call's result blocks (and arguments too large for `arguments`).
var pinned [][]byte

// alloc returns size bytes aligned to align (a power of two), zeroed, pinned until post.
func alloc(size, align uint32) unsafe.Pointer {
	block := make([]byte, size+align)
	pinned = append(pinned, block)
	p := unsafe.Pointer(unsafe.SliceData(block))
	return unsafe.Add(p, -uintptr(p)&uintptr(align-1))
}

var (
	// arguments is where cabi_realloc places the next call's arguments; argumentsUsed of it
	// is taken.
	arguments     = make([]byte, 128<<10)
	argumentsUsed uintptr
	// argumentsWanted is the size of the next buffer.
	argumentsWanted = len(arguments)
)

//go:wasmexport cabi_realloc
func cabiRealloc(old unsafe.Pointer, oldSize, align, newSize uint32) unsafe.Pointer {
	base := unsafe.Pointer(unsafe.SliceData(arguments))
	start := argumentsUsed + (-(uintptr(base) + argumentsUsed) & uintptr(align-1))
	var p unsafe.Pointer
	if start+uintptr(newSize) <= uintptr(len(arguments)) {
		p = unsafe.Add(base, start)
		argumentsUsed = start + uintptr(newSize)
	} else {
		p = alloc(newSize, align)
		argumentsWanted = max(argumentsWanted, 2*int(newSize))
	}
	if old != nil && oldSize > 0 {
		copy(unsafe.Slice((*byte)(p), newSize), unsafe.Slice((*byte)(old), min(oldSize, newSize)))
	}
	return p
}

// prepare readies the arguments buffer for the next call, once the current call's arguments
// are copied out (lift).
func prepare() {
	argumentsUsed = 0
	if len(arguments) < argumentsWanted {
		arguments = make([]byte, argumentsWanted)
	}
}

func post() {
	clear(pinned)
	pinned = pinned[:0]
}

// lift copies a string argument out of the arguments buffer; each export lifts its arguments,
// then calls prepare.
func lift(p unsafe.Pointer, n uint32) string {
	if n == 0 {
		return ""
	}
	return string(unsafe.Slice((*byte)(p), n))
}

func store8(base unsafe.Pointer, off uintptr, v uint8) {
	*(*uint8)(unsafe.Add(base, off)) = v
}

func store32(base unsafe.Pointer, off uintptr, v uint32) {
	*(*uint32)(unsafe.Add(base, off)) = v
}

func store64(base unsafe.Pointer, off uintptr, v uint64) {
	*(*uint64)(unsafe.Add(base, off)) = v
}

// address is p as the 32-bit offset into linear memory the ABI stores.
func address(p unsafe.Pointer) uint32 {
	return uint32(uintptr(p))
}

// storeString writes a `string` (pointer, length: 8 bytes, align 4) at base+off.
func storeString(base unsafe.Pointer, off uintptr, s string) {
	var p unsafe.Pointer
	if len(s) > 0 {
		p = alloc(uint32(len(s)), 1)
		copy(unsafe.Slice((*byte)(p), len(s)), s)
	}
	store32(base, off, address(p))
	store32(base, off+4, uint32(len(s)))
}

// storeStrings writes a `list<string>` (pointer, length: 8 bytes, align 4) at base+off; its
// elements are strings, 8 bytes each.
func storeStrings(base unsafe.Pointer, off uintptr, list []string) {
	var p unsafe.Pointer
	if len(list) > 0 {
		p = alloc(uint32(8*len(list)), 4)
		for i, s := range list {
			storeString(p, uintptr(8*i), s)
		}
	}
	store32(base, off, address(p))
	store32(base, off+4, uint32(len(list)))
}

// storeError writes the `err` case of a `result<_, string>` whose payload sits at off.
func storeError(r unsafe.Pointer, off uintptr, err error) {
	store8(r, 0, 1)
	storeString(r, off, err.Error())
}

// `name: func() -> string`: string at 0; 8 bytes, align 4.
//
//go:wasmexport name
func exportName() unsafe.Pointer {
	r := alloc(8, 4)
	storeString(r, 0, exported.Name())
	return r
}

// `activate: func() -> activation`: schemes (list<string>) at 0, rewrites-http (bool) at 8,
// rewrites-grpc (bool) at 9; 12 bytes, align 4.
//
//go:wasmexport activate
func exportActivate() unsafe.Pointer {
	r := alloc(12, 4)
	storeStrings(r, 0, exported.Schemes())
	store8(r, 8, 0)
	store8(r, 9, 0)
	return r
}

// `parse-server-method: func(uri: string) -> result<server-method, string>`: case at 0;
// ok: server at 4, method at 12; err: string at 4; 20 bytes, align 4.
//
//go:wasmexport parse-server-method
func exportParseServerMethod(uri unsafe.Pointer, uriLen uint32) unsafe.Pointer {
	arg := lift(uri, uriLen)
	prepare()
	r := alloc(20, 4)
	sm, err := exported.ParseServerMethod(arg)
	if err != nil {
		storeError(r, 4, err)
		return r
	}
	storeString(r, 4, sm.Server)
	storeString(r, 12, sm.Method)
	return r
}

// `result<registration, string>`: case at 0; ok: state (string) at 8, keep-alive-ms (u64) at
// 16; err: string at 8; 24 bytes, align 8.
func storeRegistration(reg Registration, err error) unsafe.Pointer {
	r := alloc(24, 8)
	if err != nil {
		storeError(r, 8, err)
		return r
	}
	storeString(r, 8, reg.State)
	store64(r, 16, reg.KeepAliveMs)
	return r
}

//go:wasmexport register-service
func exportRegisterService(target unsafe.Pointer, targetLen uint32, endpoint unsafe.Pointer, endpointLen uint32) unsafe.Pointer {
	t, e := lift(target, targetLen), lift(endpoint, endpointLen)
	prepare()
	return storeRegistration(registerService(t, e))
}

//go:wasmexport keep-alive
func exportKeepAlive(state unsafe.Pointer, stateLen uint32) unsafe.Pointer {
	arg := lift(state, stateLen)
	prepare()
	return storeRegistration(keepAlive(arg))
}

// `deregister: func(state: string) -> result<_, string>`: case at 0; err: string at 4; 12
// bytes, align 4.
//
//go:wasmexport deregister
func exportDeregister(state unsafe.Pointer, stateLen uint32) unsafe.Pointer {
	arg := lift(state, stateLen)
	prepare()
	r := alloc(12, 4)
	if err := deregister(arg); err != nil {
		storeError(r, 4, err)
	}
	return r
}

// `resolve: func(server: string, registry: string) -> result<resolution, string>`: case at 0;
// ok: endpoints (list<string>) at 8, refresh-ms (u64) at 16; err: string at 8; 24 bytes,
// align 8.
//
//go:wasmexport resolve
func exportResolve(server unsafe.Pointer, serverLen uint32, registry unsafe.Pointer, registryLen uint32) unsafe.Pointer {
	s, reg := lift(server, serverLen), lift(registry, registryLen)
	prepare()
	r := alloc(24, 8)
	res, err := exported.Resolve(s, reg)
	if err != nil {
		storeError(r, 8, err)
		return r
	}
	storeStrings(r, 8, res.Endpoints)
	store64(r, 16, res.RefreshMs)
	return r
}

// `rewrite-http: func(url: string, registry: string) -> result<option<http-target>, string>`,
// never called (activate asks for no rewrites): ok(none), the case bytes at 0 and 4 zero; 24
// bytes, align 4.
//
//go:wasmexport rewrite-http
func exportRewriteHTTP(unsafe.Pointer, uint32, unsafe.Pointer, uint32) unsafe.Pointer {
	prepare()
	return alloc(24, 4)
}

// `rewrite-grpc: func(server: string, method: string, payload: list<u8>) ->
// result<option<grpc-call>, string>`, never called: ok(none) as above; 32 bytes, align 4.
//
//go:wasmexport rewrite-grpc
func exportRewriteGRPC(unsafe.Pointer, uint32, unsafe.Pointer, uint32, unsafe.Pointer, uint32) unsafe.Pointer {
	prepare()
	return alloc(32, 4)
}

// The post-returns: the host has copied the call's results; its blocks are let go.

//go:wasmexport cabi_post_name
func postName(unsafe.Pointer) { post() }

//go:wasmexport cabi_post_activate
func postActivate(unsafe.Pointer) { post() }

//go:wasmexport cabi_post_parse-server-method
func postParseServerMethod(unsafe.Pointer) { post() }

//go:wasmexport cabi_post_register-service
func postRegisterService(unsafe.Pointer) { post() }

//go:wasmexport cabi_post_keep-alive
func postKeepAlive(unsafe.Pointer) { post() }

//go:wasmexport cabi_post_deregister
func postDeregister(unsafe.Pointer) { post() }

//go:wasmexport cabi_post_resolve
func postResolve(unsafe.Pointer) { post() }

//go:wasmexport cabi_post_rewrite-http
func postRewriteHTTP(unsafe.Pointer) { post() }

//go:wasmexport cabi_post_rewrite-grpc
func postRewriteGRPC(unsafe.Pointer) { post() }

// adapterMemory is the memory of the WASI adapter (which turns the WASI calls of Go's runtime
// into WASI 0.2 imports): its state, and what the host's WASI calls return to it. wasm-tools
// has the adapter ask cabi_realloc_adapter for it. It must not come from memory.grow (wasm-tools
// `--realloc-via-memory-grow`): Go's heap takes every page past its own last one as free, so it
// would later hand out the adapter's page again, and the two overwrite each other (the first
// driver built that way crashed at about its 18,000th call, once the heap had grown). Nor can
// it come from Go's heap: the adapter first asks while Go's runtime is still starting. So it is
// static memory behind a bump allocator that needs nothing of the runtime. The adapter asks
// once, for 128 KiB (the one tests/common/polyglot.rs pins); a request that does not fit gets
// a null pointer, and the adapter stops the component at load ("assertion failed").
var (
	adapterMemory [256 << 10]byte
	adapterUsed   uintptr
)

//go:wasmexport cabi_realloc_adapter
//go:nosplit
func cabiReallocAdapter(old unsafe.Pointer, oldSize, align, newSize uint32) unsafe.Pointer {
	base := unsafe.Pointer(&adapterMemory)
	start := adapterUsed + (-(uintptr(base) + adapterUsed) & uintptr(align-1))
	if start+uintptr(newSize) > uintptr(len(adapterMemory)) {
		return nil
	}
	adapterUsed = start + uintptr(newSize)
	p := unsafe.Add(base, start)
	if old != nil && oldSize > 0 {
		copy(unsafe.Slice((*byte)(p), newSize), unsafe.Slice((*byte)(old), min(oldSize, newSize)))
	}
	return p
}
