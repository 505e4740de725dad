"""`dtm-driver-gozero` in Python, built with componentize-py against wit/driver.wit.

The same contract as the Rust guest `guest-drivers/gozero`, for go-zero's etcd layout:

* parse-server-method: go-zero's split (docs/drivers.md §4.3.1), the consul/nacos query cut
  included, on a port of Go's `url.Parse` (the fields dtm's drivers use, as `gourl` does); it
  passes every `dtm-driver-gozero` case of tests/data/parse-vectors.json.
* register-service / keep-alive / deregister at an `etcd://` or `discov://` target: key
  `<key>/<lease ID>` = the endpoint under a 10 s lease, renewed every 3.3 s (a lost lease is
  replaced, as go-zero does), revoked on deregistration; `?user=&password=` authenticate.
* resolve: `etcd://h1,h2/<key>` (and `discov://`) to the values under `<key>/`, re-read every
  5 s; `direct:///a:1,b:2` to its list.

Every registry request goes through the host's `send-http` import (etcd's v3 JSON gateway).
Consul and Nacos servers, which the Rust driver also resolves, are not claimed here.
"""

import base64
import json

import wit_world
from componentize_py_types import Err
from wit_world.imports import host
from wit_world.imports.types import (
    Activation,
    HttpRequest,
    LogLevel,
    Registration,
    Resolution,
    ServerMethod,
)

LEASE_TTL_SECS = 10
KEEP_ALIVE_MS = LEASE_TTL_SECS * 1000 // 3
REFRESH_MS = 5000
MAX_ENDPOINTS = 32


class UrlError(Exception):
    pass


# --- Go's url.Parse, for the fields drivers use (a port of guest-drivers/gourl) -------------


def _unescape(text, in_host):
    if "%" not in text:
        return text
    data = text.encode()
    out = bytearray()
    i = 0
    while i < len(data):
        if data[i] == ord("%"):
            pair = data[i + 1 : i + 3]
            try:
                if len(pair) != 2:
                    raise ValueError
                byte = int(pair.decode("ascii"), 16)
                if not all(chr(b) in "0123456789abcdefABCDEF" for b in pair):
                    raise ValueError
            except ValueError:
                raise UrlError('invalid URL escape "%s"' % data[i : i + 3].decode(errors="replace"))
            if in_host and byte < 0x80 and byte != ord("%"):
                raise UrlError('invalid URL escape "%s"' % data[i : i + 3].decode())
            out.append(byte)
            i += 3
        else:
            out.append(data[i])
            i += 1
    try:
        return out.decode()
    except UnicodeDecodeError:
        raise UrlError("invalid UTF-8 after unescaping")


_HOST_PUNCTUATION = set("-_.~!$&'()*+,;=:[]<>\"%")


def _check_host(host_text):
    if host_text.startswith("["):
        close = host_text.find("]")
        if close < 0:
            raise UrlError("missing ']' in host")
        after = host_text[close + 1 :]
        if not (after == "" or (after.startswith(":") and _digits(after[1:]))):
            raise UrlError('invalid port "%s" after host' % after)
        return
    colon = host_text.rfind(":")
    if colon >= 0 and not _digits(host_text[colon + 1 :]):
        raise UrlError('invalid port "%s" after host' % host_text[colon:])
    for c in host_text:
        if not (ord(c) >= 0x80 or (c.isascii() and c.isalnum()) or c in _HOST_PUNCTUATION):
            raise UrlError("invalid character %r in host name" % c)


def _digits(text):
    return all("0" <= c <= "9" for c in text)


class Url:
    def __init__(self):
        self.scheme = ""
        self.host = ""
        self.path = ""
        self.raw_query = ""

    def path_name(self):
        return self.path[1:] if self.path.startswith("/") else self.path

    def query(self):
        """Go's url.ParseQuery: (key, value) pairs in order."""
        pairs = []
        for piece in self.raw_query.split("&"):
            if not piece or ";" in piece:
                continue
            key, _, value = piece.partition("=")
            try:
                pairs.append(
                    (_unescape(key.replace("+", " "), False), _unescape(value.replace("+", " "), False))
                )
            except UrlError:
                continue
        return pairs


def _first(pairs, key):
    return next((v for k, v in pairs if k == key), "")


def parse_url(raw):
    raw = raw.split("#", 1)[0]
    if any(ord(c) < 0x20 or ord(c) == 0x7F for c in raw):
        raise UrlError("net/url: invalid control character in URL")
    url = Url()
    rest = raw
    for i, c in enumerate(raw):
        if c.isascii() and c.isalpha():
            continue
        if i > 0 and (("0" <= c <= "9") or c in "+-."):
            continue
        if c == ":":
            if i == 0:
                raise UrlError("missing protocol scheme")
            url.scheme = raw[:i].lower()
            rest = raw[i + 1 :]
        break
    if rest.endswith("?") and rest.count("?") == 1:
        rest = rest[:-1]
    elif "?" in rest:
        q = rest.index("?")
        url.raw_query = rest[q + 1 :]
        rest = rest[:q]
    if not rest.startswith("/"):
        if url.scheme:
            return url  # opaque: no host, no path
        if ":" in rest.split("/", 1)[0]:
            raise UrlError("first path segment in URL cannot contain colon")
    if rest.startswith("//") and (url.scheme or not rest.startswith("///")):
        after = rest[2:]
        slash = after.find("/")
        authority, path = (after, "") if slash < 0 else (after[:slash], after[slash:])
        host_text = authority[authority.rfind("@") + 1 :]
        _check_host(host_text)
        url.host = _unescape(host_text, True)
        rest = path
    url.path = _unescape(rest, False)
    return url


def split_first_slash(uri):
    at = uri.find("/")
    if at < 0:
        raise Err("bad url: '%s'. no '/' found" % uri)
    return uri[:at], uri[at:]


def split_service_segment(uri):
    try:
        url = parse_url(uri)
    except UrlError:
        return "", ""  # Go's driver swallows the parse error
    path = url.path
    if not path:
        raise Err("bad url: '%s'. no path to split" % uri)
    k = path[1:].find("/")
    segment, method = ("", path) if k < 0 else (path[: k + 1], path[k + 1 :])
    return url.scheme + "://" + url.host + segment, method


def split_gozero(uri):
    """§4.3.1: a URI naming consul or nacos loses its registry query before the split."""
    if "//" not in uri:
        return split_first_slash(uri)
    if ("consul" in uri or "nacos" in uri) and "?" in uri:
        parts = uri.split("?")
        slash = parts[1].find("/")
        if slash < 0:
            raise Err("bad url: '%s'. no '/' found" % uri)
        return split_service_segment(parts[0] + parts[1][slash:])
    return split_service_segment(uri)


# --- etcd's v3 JSON gateway over the host's send-http ---------------------------------------


def _b64(text):
    return base64.b64encode(text.encode()).decode()


def _prefix_end(prefix):
    end = bytearray(prefix.encode())
    while end:
        last = end.pop()
        if last < 0xFF:
            end.append(last + 1)
            return bytes(end)
    return b"\0"


def _int64_text(value):
    if value is None:
        return "0"
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return str(value)
    if isinstance(value, str):
        try:
            int(value)
            return value
        except ValueError:
            return None
    return None


def _error_text(answer):
    if not isinstance(answer, dict):
        return None
    error = answer.get("error", answer.get("Error"))
    if error is None:
        return None
    if isinstance(error, str):
        text = error
    elif isinstance(error, dict) and isinstance(error.get("message"), str):
        text = error["message"]
    else:
        text = json.dumps(error)
    code = answer.get("code", answer.get("Code"))
    if code is None and isinstance(error, dict):
        code = error.get("grpc_code")
    return text if code is None else "%s (code %s)" % (text, code)


class Etcd:
    def __init__(self, hosts, credentials=None):
        self.endpoints = []
        for piece in hosts.split(","):
            piece = piece.strip()
            if not piece:
                continue
            if piece.startswith("http://") or piece.startswith("https://"):
                self.endpoints.append(piece.rstrip("/"))
            else:
                self.endpoints.append("http://" + piece)
        if not self.endpoints:
            raise Err("etcd: no endpoint in '%s'" % hosts)
        self.token = None
        if credentials:
            answer = self.call(
                "auth/authenticate",
                {"name": credentials["user"], "password": credentials["password"]},
            )
            token = answer.get("token")
            if not token:
                raise Err("etcd: authenticating as '%s' gave no token: %s" % (credentials["user"], answer))
            self.token = token

    def call(self, path, body):
        headers = [("content-type", "application/json")]
        if self.token:
            headers.append(("authorization", self.token))
        unreachable = []
        for endpoint in self.endpoints:
            request = HttpRequest("POST", "%s/v3/%s" % (endpoint, path), headers, json.dumps(body).encode())
            try:
                response = host.send_http(request)
            except Err as e:
                unreachable.append("%s: %s" % (endpoint, e.value))
                continue
            text = bytes(response.body).decode(errors="replace")
            try:
                # Streamed calls (keep-alive) may send more than one message.
                answer, _ = json.JSONDecoder().raw_decode(text.lstrip())
            except ValueError:
                answer = None
            error = _error_text(answer)
            if error is not None:
                raise Err("etcd %s /v3/%s: %s" % (endpoint, path, error))
            if response.status == 200 and answer is not None:
                return answer
            raise Err("etcd %s /v3/%s: HTTP %d: %s" % (endpoint, path, response.status, text))
        raise Err("etcd /v3/%s: no endpoint answered (%s)" % (path, "; ".join(unreachable)))

    def grant(self, ttl):
        answer = self.call("lease/grant", {"TTL": ttl, "ID": 0})
        lease = _int64_text(answer.get("ID"))
        if lease is None or lease == "0":
            raise Err("etcd: a lease grant gave no lease ID: %s" % answer)
        return lease

    def put(self, key, value, lease=None):
        body = {"key": _b64(key), "value": _b64(value)}
        if lease is not None:
            body["lease"] = lease
        self.call("kv/put", body)

    def keep_alive(self, lease):
        try:
            answer = self.call("lease/keepalive", {"ID": lease})
        except Err as e:
            if "requested lease not found" in str(e.value):
                return False
            raise
        result = answer.get("result", answer)
        ttl = _int64_text(result.get("TTL"))
        if ttl is None:
            raise Err("etcd: unexpected keep-alive answer: %s" % answer)
        return ttl != "0" and not ttl.startswith("-")

    def revoke(self, lease):
        try:
            self.call("lease/revoke", {"ID": lease})
        except Err as e:
            if "requested lease not found" not in str(e.value):
                raise

    def range_prefix(self, prefix):
        body = {"key": _b64(prefix), "range_end": base64.b64encode(_prefix_end(prefix)).decode()}
        answer = self.call("kv/range", body)
        kvs = answer.get("kvs")
        if kvs is None:
            return []
        if not isinstance(kvs, list):
            raise Err("etcd: unexpected range answer: %s" % answer)
        try:
            return [
                (
                    base64.b64decode(kv.get("key", "")).decode(errors="replace"),
                    base64.b64decode(kv.get("value", "")).decode(errors="replace"),
                )
                for kv in kvs
            ]
        except ValueError as e:
            raise Err("etcd sent a key or value that is not base64 (%s)" % e)


def _credentials(pairs):
    user = _first(pairs, "user")
    return {"user": user, "password": _first(pairs, "password")} if user else None


def _cluster(hosts):
    return sorted(h for h in hosts.split(",") if h)


def _registry_credentials(hosts, registry):
    """go-zero keeps the registration's account per cluster: a server on the coordinator's own
    etcd cluster is read with it."""
    try:
        url = parse_url(registry)
    except UrlError:
        return None
    if url.scheme in ("etcd", "discov") and _cluster(url.host) == _cluster(hosts):
        return _credentials(url.query())
    return None


def _registration(state):
    return Registration(json.dumps(state), KEEP_ALIVE_MS)


def _publish(etcd, state):
    lease = etcd.grant(LEASE_TTL_SECS)
    etcd.put("%s/%s" % (state["key"], lease), state["value"], lease)
    state["lease"] = lease


def _parse_or_err(text, what):
    try:
        return parse_url(text)
    except UrlError as e:
        raise Err("%s '%s': %s" % (what, text, e))


class WitWorld(wit_world.WitWorld):
    def name(self) -> str:
        return "dtm-driver-gozero"

    def activate(self) -> Activation:
        return Activation(["etcd", "discov", "direct"], False, False)

    def parse_server_method(self, uri: str) -> ServerMethod:
        server, method = split_gozero(uri)
        return ServerMethod(server, method)

    def register_service(self, target: str, endpoint: str) -> Registration:
        if not target:
            return Registration("", 0)
        url = _parse_or_err(target, "target")
        if url.scheme not in ("etcd", "discov"):
            raise Err("unknown scheme: %s (this driver registers at etcd)" % url.scheme)
        state = {
            "registry": "etcd",
            "hosts": url.host,
            "key": url.path_name(),
            "value": endpoint,
            "credentials": _credentials(url.query()),
            "lease": "",
        }
        _publish(Etcd(state["hosts"], state["credentials"]), state)
        return _registration(state)

    def keep_alive(self, state: str) -> Registration:
        if not state:
            return Registration("", 0)
        registered = json.loads(state)
        etcd = Etcd(registered["hosts"], registered.get("credentials"))
        if not etcd.keep_alive(registered["lease"]):
            host.log(
                LogLevel.WARN,
                "etcd lost lease %s of '%s/%s'; registering again"
                % (registered["lease"], registered["key"], registered["lease"]),
            )
            _publish(etcd, registered)
        return _registration(registered)

    def deregister(self, state: str) -> None:
        if not state:
            return
        registered = json.loads(state)
        Etcd(registered["hosts"], registered.get("credentials")).revoke(registered["lease"])

    def resolve(self, server: str, registry: str) -> Resolution:
        url = _parse_or_err(server, "server")
        if url.scheme in ("etcd", "discov"):
            key = url.path.strip("/")
            etcd = Etcd(url.host, _registry_credentials(url.host, registry))
            # The trailing slash keeps `trans` from matching `transfer/…`.
            values = sorted(set(value for _, value in etcd.range_prefix(key + "/")))
            return Resolution(values[:MAX_ENDPOINTS], REFRESH_MS)
        if url.scheme == "direct":
            endpoints = [e for e in url.path.strip("/").split(",") if e]
            if not endpoints:
                raise Err("'%s' lists no endpoint (direct:///host:port,host:port)" % server)
            return Resolution(endpoints[:MAX_ENDPOINTS], 0)
        raise Err("unknown scheme: %s" % url.scheme)

    def rewrite_http(self, url: str, registry: str):
        return None

    def rewrite_grpc(self, server: str, method: str, payload: bytes):
        return None
