// `dtm-driver-protocol1` in JavaScript, built with jco / ComponentizeJS against wit/driver.wit.
//
// The same behaviour as the Rust guest `guest-drivers/protocol1` (docs/drivers.md §4.2): scheme
// `protocol1`; a URL without `//` splits at its first slash, any other by its first path
// segment (on a port of Go's `url.Parse`, the fields dtm's drivers use, as `gourl` does);
// `protocol1:///host:port` and `protocol1://host:port` resolve to `host:port`. It registers
// nothing.
//
// Exports follow jco's conventions: world functions are exported by their camelCase names,
// records are plain objects, an `option` is a value or `undefined`, and a `result`'s error is
// thrown (here always as a string).

class UrlError extends Error {}

function unescape(text, inHost) {
  if (!text.includes("%")) {
    return text;
  }
  const bytes = new TextEncoder().encode(text);
  const out = [];
  const hex = (b) =>
    (b >= 0x30 && b <= 0x39) || (b >= 0x41 && b <= 0x46) || (b >= 0x61 && b <= 0x66);
  for (let i = 0; i < bytes.length; ) {
    if (bytes[i] === 0x25) {
      if (i + 2 >= bytes.length || !hex(bytes[i + 1]) || !hex(bytes[i + 2])) {
        const bad = new TextDecoder().decode(bytes.subarray(i, i + 3));
        throw new UrlError(`invalid URL escape "${bad}"`);
      }
      const byte = parseInt(String.fromCharCode(bytes[i + 1], bytes[i + 2]), 16);
      if (inHost && byte < 0x80 && byte !== 0x25) {
        const bad = new TextDecoder().decode(bytes.subarray(i, i + 3));
        throw new UrlError(`invalid URL escape "${bad}"`);
      }
      out.push(byte);
      i += 3;
    } else {
      out.push(bytes[i]);
      i += 1;
    }
  }
  try {
    return new TextDecoder("utf-8", { fatal: true }).decode(new Uint8Array(out));
  } catch {
    throw new UrlError("invalid UTF-8 after unescaping");
  }
}

const digits = (text) => /^[0-9]*$/.test(text);
const HOST_PUNCTUATION = new Set("-_.~!$&'()*+,;=:[]<>\"%");

function checkHost(host) {
  if (host.startsWith("[")) {
    const close = host.indexOf("]");
    if (close < 0) {
      throw new UrlError("missing ']' in host");
    }
    const after = host.slice(close + 1);
    if (!(after === "" || (after.startsWith(":") && digits(after.slice(1))))) {
      throw new UrlError(`invalid port "${after}" after host`);
    }
    return;
  }
  const colon = host.lastIndexOf(":");
  if (colon >= 0 && !digits(host.slice(colon + 1))) {
    throw new UrlError(`invalid port "${host.slice(colon)}" after host`);
  }
  for (const c of host) {
    if (!(c.codePointAt(0) >= 0x80 || /^[A-Za-z0-9]$/.test(c) || HOST_PUNCTUATION.has(c))) {
      throw new UrlError(`invalid character '${c}' in host name`);
    }
  }
}

/** Go's `url.Parse`: `{scheme, host, path, rawQuery}`; throws a `UrlError` where Go fails. */
export function parseUrl(input) {
  const raw = input.split("#")[0];
  if (/[\x00-\x1f\x7f]/.test(raw)) {
    throw new UrlError("net/url: invalid control character in URL");
  }
  const url = { scheme: "", host: "", path: "", rawQuery: "" };
  let rest = raw;
  for (let i = 0; i < raw.length; i++) {
    const c = raw[i];
    if (/[A-Za-z]/.test(c) || (i > 0 && /[0-9+\-.]/.test(c))) {
      continue;
    }
    if (c === ":") {
      if (i === 0) {
        throw new UrlError("missing protocol scheme");
      }
      url.scheme = raw.slice(0, i).toLowerCase();
      rest = raw.slice(i + 1);
    }
    break;
  }
  if (rest.endsWith("?") && rest.indexOf("?") === rest.length - 1) {
    rest = rest.slice(0, -1);
  } else if (rest.includes("?")) {
    const q = rest.indexOf("?");
    url.rawQuery = rest.slice(q + 1);
    rest = rest.slice(0, q);
  }
  if (!rest.startsWith("/")) {
    if (url.scheme !== "") {
      return url; // opaque: no host, no path
    }
    if (rest.split("/")[0].includes(":")) {
      throw new UrlError("first path segment in URL cannot contain colon");
    }
  }
  if (rest.startsWith("//") && (url.scheme !== "" || !rest.startsWith("///"))) {
    const after = rest.slice(2);
    const slash = after.indexOf("/");
    const authority = slash < 0 ? after : after.slice(0, slash);
    const host = authority.slice(authority.lastIndexOf("@") + 1);
    checkHost(host);
    url.host = unescape(host, true);
    rest = slash < 0 ? "" : after.slice(slash);
  }
  url.path = unescape(rest, false);
  return url;
}

/** S1: everything before the first `/` is the server, the rest (query included) the method. */
function splitFirstSlash(uri) {
  const at = uri.indexOf("/");
  if (at < 0) {
    throw `bad url: '${uri}'. no '/' found`;
  }
  return { server: uri.slice(0, at), method: uri.slice(at) };
}

/** S2: the first path segment stays with `scheme://host`, the rest is the method. A URL Go
 * cannot parse gives an empty pair, as in Go; an empty path is an error (Go panics). */
function splitServiceSegment(uri) {
  let url;
  try {
    url = parseUrl(uri);
  } catch (e) {
    if (e instanceof UrlError) {
      return { server: "", method: "" };
    }
    throw e;
  }
  const path = url.path;
  if (path === "") {
    throw `bad url: '${uri}'. no path to split`;
  }
  const k = path.slice(1).indexOf("/");
  const [segment, method] = k < 0 ? ["", path] : [path.slice(0, k + 1), path.slice(k + 1)];
  return { server: `${url.scheme}://${url.host}${segment}`, method };
}

export function name() {
  return "dtm-driver-protocol1";
}

export function activate() {
  return { schemes: ["protocol1"], rewritesHttp: false, rewritesGrpc: false };
}

export function parseServerMethod(uri) {
  return uri.includes("//") ? splitServiceSegment(uri) : splitFirstSlash(uri);
}

export function registerService(_target, _endpoint) {
  return { state: "", keepAliveMs: 0n };
}

export function keepAlive(state) {
  return { state, keepAliveMs: 0n };
}

export function deregister(_state) {}

/** The dial target's endpoint: the path without its leading `/`, else the host. */
export function resolve(server, _registry) {
  let url;
  try {
    url = parseUrl(server);
  } catch (e) {
    throw e instanceof UrlError ? e.message : String(e);
  }
  const path = url.path.startsWith("/") ? url.path.slice(1) : url.path;
  const endpoint = path === "" ? url.host : path;
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
