//! The parts of Go's `net/url.Parse` that dtm's drivers depend on (docs/drivers.md §2.1), and the
//! two split procedures several drivers share (§3). Go's rules differ from WHATWG URLs in many
//! corners, and the drivers' conformance vectors pin Go's.

use std::borrow::Cow;

/// The fields of a parsed URL the drivers use, borrowed from the input where Go would not
/// change them (drivers parse on every call, so allocations count).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Url<'a> {
    /// Lower-cased.
    pub scheme: Cow<'a, str>,
    pub host: Cow<'a, str>,
    /// Percent-decoded.
    pub path: Cow<'a, str>,
    pub raw_query: &'a str,
}

fn unhex(b: u8) -> Option<u8> {
    match b {
        b'0'..=b'9' => Some(b - b'0'),
        b'a'..=b'f' => Some(b - b'a' + 10),
        b'A'..=b'F' => Some(b - b'A' + 10),
        _ => None,
    }
}

/// Percent-decodes `s`; `host` mode allows only `%25` for ASCII bytes.
fn unescape(s: &str, host: bool) -> Result<Cow<'_, str>, String> {
    if !s.contains('%') {
        return Ok(Cow::Borrowed(s));
    }
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hex = bytes
                .get(i + 1)
                .and_then(|&h| unhex(h))
                .zip(bytes.get(i + 2).and_then(|&l| unhex(l)));
            let Some((h, l)) = hex else {
                let end = (i + 3).min(bytes.len());
                return Err(format!("invalid URL escape \"{}\"", &s[i..end]));
            };
            let byte = h * 16 + l;
            if host && byte < 0x80 && byte != b'%' {
                return Err(format!("invalid URL escape \"{}\"", &s[i..i + 3]));
            }
            out.push(byte);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8(out)
        .map(Cow::Owned)
        .map_err(|_| "invalid UTF-8 after unescaping".to_owned())
}

fn check_host(host: &str) -> Result<(), String> {
    if let Some(rest) = host.strip_prefix('[') {
        let Some(close) = rest.find(']') else {
            return Err("missing ']' in host".into());
        };
        let after = &rest[close + 1..];
        if !(after.is_empty()
            || (after.starts_with(':') && after[1..].bytes().all(|b| b.is_ascii_digit())))
        {
            return Err(format!("invalid port \"{after}\" after host"));
        }
        return Ok(());
    }
    if let Some(colon) = host.rfind(':') {
        let port = &host[colon..];
        if !port[1..].bytes().all(|b| b.is_ascii_digit()) {
            return Err(format!("invalid port \"{port}\" after host"));
        }
    }
    let allowed = |b: u8| {
        b >= 0x80
            || b.is_ascii_alphanumeric()
            || matches!(
                b,
                b'-' | b'_'
                    | b'.'
                    | b'~'
                    | b'!'
                    | b'$'
                    | b'&'
                    | b'\''
                    | b'('
                    | b')'
                    | b'*'
                    | b'+'
                    | b','
                    | b';'
                    | b'='
                    | b':'
                    | b'['
                    | b']'
                    | b'<'
                    | b'>'
                    | b'"'
                    | b'%'
            )
    };
    match host.bytes().find(|&b| !allowed(b)) {
        Some(b) => Err(format!("invalid character {:?} in host name", b as char)),
        None => Ok(()),
    }
}

/// Go's `url.Parse`, for the fields drivers use.
pub fn parse(raw: &str) -> Result<Url<'_>, String> {
    let raw = raw.split('#').next().unwrap_or_default();
    if raw.bytes().any(|b| b < 0x20 || b == 0x7f) {
        return Err("net/url: invalid control character in URL".into());
    }
    let mut url = Url::default();
    let mut rest = raw;
    for (i, b) in raw.bytes().enumerate() {
        match b {
            b'a'..=b'z' | b'A'..=b'Z' => {}
            b'0'..=b'9' | b'+' | b'-' | b'.' if i > 0 => {}
            b':' if i == 0 => return Err("missing protocol scheme".into()),
            b':' => {
                let scheme = &raw[..i];
                url.scheme = if scheme.bytes().any(|b| b.is_ascii_uppercase()) {
                    Cow::Owned(scheme.to_ascii_lowercase())
                } else {
                    Cow::Borrowed(scheme)
                };
                rest = &raw[i + 1..];
                break;
            }
            _ => break,
        }
    }
    if rest.ends_with('?') && rest.matches('?').count() == 1 {
        rest = &rest[..rest.len() - 1];
    } else if let Some(q) = rest.find('?') {
        url.raw_query = &rest[q + 1..];
        rest = &rest[..q];
    }
    if !rest.starts_with('/') {
        if !url.scheme.is_empty() {
            return Ok(url); // opaque: no host, no path
        }
        let first_segment = rest.split('/').next().unwrap_or_default();
        if first_segment.contains(':') {
            return Err("first path segment in URL cannot contain colon".into());
        }
    }
    if rest.starts_with("//") && (!url.scheme.is_empty() || !rest.starts_with("///")) {
        let after = &rest[2..];
        let (authority, path) = match after.find('/') {
            Some(slash) => (&after[..slash], &after[slash..]),
            None => (after, ""),
        };
        let host = match authority.rfind('@') {
            Some(at) => &authority[at + 1..],
            None => authority,
        };
        check_host(host)?;
        url.host = unescape(host, true)?;
        rest = path;
    }
    url.path = unescape(rest, false)?;
    Ok(url)
}

impl Url<'_> {
    /// Go's `Hostname()`: the host without its port and without IPv6 brackets.
    pub fn hostname(&self) -> &str {
        split_host_port(&self.host).0
    }

    /// Go's `Port()`: the digits after the host's last `:`, or empty.
    pub fn port(&self) -> &str {
        split_host_port(&self.host).1
    }

    /// Go's `Query()` (§2.2).
    pub fn query(&self) -> Query {
        Query::parse(self.raw_query)
    }

    /// The path without its leading `/`: the service a `scheme://host/<name>` or
    /// `scheme:///<name>` URL names.
    pub fn path_name(&self) -> &str {
        self.path.strip_prefix('/').unwrap_or(&self.path)
    }
}

fn split_host_port(host: &str) -> (&str, &str) {
    if let Some(rest) = host.strip_prefix('[') {
        return match rest.split_once(']') {
            Some((name, after)) => (name, after.strip_prefix(':').unwrap_or_default()),
            None => (host, ""),
        };
    }
    match host.rsplit_once(':') {
        Some((name, port)) if port.bytes().all(|b| b.is_ascii_digit()) => (name, port),
        Some((name, _)) => (name, ""),
        None => (host, ""),
    }
}

/// A parsed query string: keys with their values in order (Go's `url.Values`).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Query {
    pairs: Vec<(String, String)>,
}

impl Query {
    /// Go's `url.ParseQuery`, keeping what it keeps: pieces with `;` or a bad escape are
    /// skipped, `+` means space.
    pub fn parse(raw: &str) -> Self {
        let decode = |s: &str| unescape(&s.replace('+', " "), false).map(Cow::into_owned);
        let pairs = raw
            .split('&')
            .filter(|piece| !piece.is_empty() && !piece.contains(';'))
            .filter_map(|piece| {
                let (key, value) = piece.split_once('=').unwrap_or((piece, ""));
                Some((decode(key).ok()?, decode(value).ok()?))
            })
            .collect();
        Self { pairs }
    }

    /// The first value of `key`, or `""` (Go's `Get`).
    pub fn get(&self, key: &str) -> &str {
        self.pairs
            .iter()
            .find(|(k, _)| k == key)
            .map_or("", |(_, v)| v.as_str())
    }

    /// Every value of `key`, in order.
    pub fn all<'q>(&'q self, key: &'q str) -> impl Iterator<Item = &'q str> + 'q {
        self.pairs
            .iter()
            .filter(move |(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }
}

/// S1: everything before the first `/` is the server, the rest (query included) the method.
pub fn split_first_slash(uri: &str) -> Result<(String, String), String> {
    match uri.find('/') {
        Some(at) => Ok((uri[..at].to_owned(), uri[at..].to_owned())),
        None => Err(format!("bad url: '{uri}'. no '/' found")),
    }
}

/// S2: the first path segment stays with `scheme://host`, the rest is the method. A URL Go
/// cannot parse gives an empty pair, as in Go; an empty path is an error (Go panics).
pub fn split_service_segment(uri: &str) -> Result<(String, String), String> {
    let Ok(url) = parse(uri) else {
        return Ok((String::new(), String::new()));
    };
    let path = url.path.as_ref();
    if path.is_empty() {
        return Err(format!("bad url: '{uri}'. no path to split"));
    }
    // Bytes, as Go indexes `path[1:]`: a path may start with a multi-byte character, and a
    // split at a '/' is always on a character boundary.
    let (segment, method) = match path.as_bytes()[1..].iter().position(|&b| b == b'/') {
        Some(k) => path.split_at(k + 1),
        None => ("", path),
    };
    let mut server = String::with_capacity(url.scheme.len() + 3 + url.host.len() + segment.len());
    for part in [url.scheme.as_ref(), "://", url.host.as_ref(), segment] {
        server.push_str(part);
    }
    Ok((server, method.to_owned()))
}

/// The split most of dtm's drivers start with: S1 for a URL without `//`, S2 otherwise.
pub fn split_server_method(uri: &str) -> Result<(String, String), String> {
    if uri.contains("//") {
        split_service_segment(uri)
    } else {
        split_first_slash(uri)
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn a_path_that_starts_with_a_multibyte_character_splits_as_in_go() {
        // Go: url.Parse("é//x") has path "é//x"; strings.Index(path[1:], "/") is 1.
        assert_eq!(
            super::split_service_segment("é//x"),
            Ok(("://é".to_owned(), "//x".to_owned()))
        );
    }

    use super::*;

    #[test]
    fn parses_like_go() {
        let u = parse("etcd://user:pw@localhost:2379/dtmservice?x=1#frag").unwrap();
        assert_eq!(
            (
                u.scheme.as_ref(),
                u.host.as_ref(),
                u.path.as_ref(),
                u.raw_query
            ),
            ("etcd", "localhost:2379", "/dtmservice", "x=1")
        );
        assert_eq!(parse("localhost:8080/a").unwrap().path, "", "opaque");
        assert!(parse("127.0.0.1:8080/a").is_err());
        assert!(parse("etcd://h:abc/x").is_err());
        assert!(parse("a\u{1}b").is_err());
        assert_eq!(
            parse("direct:///1.2.3.4:80/p.S/M").unwrap().path,
            "/1.2.3.4:80/p.S/M"
        );
        assert_eq!(parse("etcd://h/a%2Fb").unwrap().path, "/a/b");
    }

    #[test]
    fn service_segment_split() {
        let s = |u: &str| split_service_segment(u).unwrap();
        assert_eq!(
            s("etcd://localhost:2379/dtmservice/dtmgimp.Dtm/Submit"),
            (
                "etcd://localhost:2379/dtmservice".into(),
                "/dtmgimp.Dtm/Submit".into()
            )
        );
        assert_eq!(
            s("direct:///1.2.3.4:80/p.S/M"),
            ("direct:///1.2.3.4:80".into(), "/p.S/M".into())
        );
        assert_eq!(s("etcd://h/svc"), ("etcd://h".into(), "/svc".into()));
        assert_eq!(s("etcd://h/"), ("etcd://h".into(), "/".into()));
        assert_eq!(s("host/a//b"), ("://host".into(), "/a//b".into()));
        assert!(split_service_segment("etcd://h").is_err());
    }

    #[test]
    fn hostname_port_and_query_follow_go() {
        let url =
            parse("etcd://h1:2379,h2:2379/svc?user=root&password=a%2Bb+c&x&;bad=1&user=2").unwrap();
        assert_eq!((url.hostname(), url.port()), ("h1:2379,h2", "2379"));
        let query = url.query();
        assert_eq!(query.get("user"), "root");
        assert_eq!(query.all("user").collect::<Vec<_>>(), ["root", "2"]);
        assert_eq!(query.get("password"), "a+b c");
        assert_eq!(query.get("x"), "");
        assert_eq!(query.get("bad"), "");
        let v6 = parse("polaris://[::1]:8090/svc").unwrap();
        assert_eq!((v6.hostname(), v6.port()), ("::1", "8090"));
        let named = parse("nacos://localhost/svc").unwrap();
        assert_eq!((named.hostname(), named.port()), ("localhost", ""));
        assert_eq!(url.path_name(), "svc");
        assert_eq!(parse("direct:///a:1,b:2").unwrap().path_name(), "a:1,b:2");
        assert_eq!(parse("etcd://h").unwrap().path_name(), "");
    }
}
