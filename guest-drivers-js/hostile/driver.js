// `dtm-driver-hostile` in JavaScript, for the host's sandbox tests only (tests/polyglot_drivers.rs):
// the JavaScript counterpart of the Rust guest `guest-drivers/hostile`. Its parse-server-method
// misbehaves on purpose when a URL starts with `loop/` (spins forever) or `grow/` (keeps
// allocating 8 MiB buffers until memory runs out: big steps, so the memory cap stops it long
// before the time limit could); any other URL splits at its first slash.

export function name() {
  return "dtm-driver-hostile";
}

export function activate() {
  return { schemes: ["hostile"], rewritesHttp: false, rewritesGrpc: false };
}

export function parseServerMethod(uri) {
  const kind = uri.split("/")[0];
  if (kind === "loop") {
    let spins = 0;
    for (;;) {
      spins = (spins + 1) | 0;
    }
  }
  if (kind === "grow") {
    const hoard = [];
    for (;;) {
      hoard.push(new Uint8Array(8 << 20).fill(1));
    }
  }
  const at = uri.indexOf("/");
  if (at < 0) {
    throw `bad url: '${uri}'. no '/' found`;
  }
  return { server: uri.slice(0, at), method: uri.slice(at) };
}

export function registerService(_target, _endpoint) {
  return { state: "", keepAliveMs: 0n };
}

export function keepAlive(state) {
  return { state, keepAliveMs: 0n };
}

export function deregister(_state) {}

export function resolve(server, _registry) {
  throw `'${server}': the hostile driver resolves nothing`;
}

export function rewriteHttp(_url, _registry) {
  return undefined;
}

export function rewriteGrpc(_server, _method, _payload) {
  return undefined;
}
