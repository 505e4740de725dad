// `{{name}}`: a dtm-host microservice driver in JavaScript (see README.md and wit/driver.wit).
// World functions are exported by their camelCase names, records are plain objects, and a
// `result`'s error is thrown as a string.

const SCHEME = "{{scheme}}";

export function name() {
  return "{{name}}";
}

export function activate() {
  return { schemes: [SCHEME], rewritesHttp: false, rewritesGrpc: false };
}

/** Splits a branch URL into the server to dial and the gRPC method. */
export function parseServerMethod(uri) {
  // TODO: the parse rule; vectors.json lists what it must return.
  throw `${uri}: parse-server-method is not written yet`;
}

/** Registers nothing: the coordinator is not announced anywhere. */
export function registerService(_target, _endpoint) {
  return { state: "", keepAliveMs: 0n };
}

export function keepAlive(state) {
  return { state, keepAliveMs: 0n };
}

export function deregister(_state) {}

/** `scheme:///host:port` or `scheme://host:port`: dial `host:port`. */
export function resolve(server, _registry) {
  const at = server.indexOf("://");
  const rest = at < 0 ? server : server.slice(at + 3);
  const endpoint = rest.replace(/^\/+/, "").split("/")[0];
  if (endpoint === "") {
    throw `'${server}' names no endpoint`;
  }
  return { endpoints: [endpoint], refreshMs: 0n };
}

export function rewriteHttp(_url, _registry) {
  return undefined;
}

export function rewriteGrpc(_server, _method, _payload) {
  return undefined;
}
