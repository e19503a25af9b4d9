//! Which web pages may open sessions: the `Origin` a browser sends with every WebSocket upgrade,
//! checked against `[auth] allowed_origins`. Without it, any page the user visits could stream
//! through the user's browser to a voxgate it can reach (cross-site WebSocket hijacking), e.g. an
//! anonymous one on the user's own loopback.
//!
//! - No `Origin` header: not a browser; allowed (credentials still apply).
//! - `allowed_origins` empty: same-origin only (the origin's host and port are the request's
//!   `Host`), and only while the `Host` is an IP literal or `localhost`. A name could be
//!   rebound (DNS rebinding): a page at `http://evil.example:8080` whose name the attacker then
//!   points at voxgate's address sends `Origin: http://evil.example:8080` *and*
//!   `Host: evil.example:8080`, which match. So pages served under a real domain name must be
//!   listed in `allowed_origins`.
//! - Otherwise exactly the listed origins (`scheme://host[:port]`, case-insensitive, default ports
//!   implied), or any with `"*"`. The opaque origin `null` matches only `"*"`.

/// An allow-list entry: `*`, or `http(s)://host[:port]` without path, query or user.
pub fn parse_allowed(entry: &str) -> Result<String, String> {
    if entry == "*" {
        return Ok("*".to_string());
    }
    normalize(entry).ok_or_else(|| {
        format!("`{entry}` is not an origin (`https://host[:port]`, no path), nor `*`")
    })
}

/// `scheme://host[:port]` lower-cased, default port removed; `None` if it is not one.
fn normalize(origin: &str) -> Option<String> {
    let origin = origin.trim().to_ascii_lowercase();
    let (scheme, authority) = origin.split_once("://")?;
    let default_port = match scheme {
        "http" => "80",
        "https" => "443",
        _ => return None,
    };
    let valid = !authority.is_empty()
        && authority
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | ':' | '[' | ']'));
    if !valid {
        return None;
    }
    Some(format!(
        "{scheme}://{}",
        strip_port(authority, default_port)
    ))
}

/// `host:port` without `:port` when it is `default_port`.
fn strip_port<'a>(authority: &'a str, default_port: &str) -> &'a str {
    match authority.rsplit_once(':') {
        Some((host, port)) if port == default_port && !host.ends_with('[') => host,
        _ => authority,
    }
}

/// The checked allow-list.
#[derive(Debug, Clone)]
pub struct OriginPolicy {
    /// `"*"` was listed.
    any: bool,
    /// Normalised origins.
    allowed: Vec<String>,
}

impl OriginPolicy {
    pub fn new(entries: &[String]) -> Result<OriginPolicy, String> {
        let mut allowed = Vec::new();
        let mut any = false;
        for entry in entries {
            match parse_allowed(entry)? {
                star if star == "*" => any = true,
                origin => allowed.push(origin),
            }
        }
        Ok(OriginPolicy { any, allowed })
    }

    /// Whether a request with `origin` (its `Origin` header, if any) to `host` (its `Host`
    /// header) may proceed.
    pub fn allows(&self, origin: Option<&str>, host: Option<&str>) -> bool {
        let Some(origin) = origin else {
            return true;
        };
        if self.any {
            return true;
        }
        let Some(origin) = normalize(origin) else {
            return false;
        };
        if !self.allowed.is_empty() {
            return self.allowed.contains(&origin);
        }
        let Some(host) = host else {
            return false;
        };
        let (scheme, authority) = origin.split_once("://").unwrap_or_default();
        let default_port = if scheme == "https" { "443" } else { "80" };
        let host = host.trim().to_ascii_lowercase();
        is_literal_or_localhost(&host) && authority == strip_port(&host, default_port)
    }
}

/// Whether a `Host` header (`host[:port]`) names an IP address literally, or `localhost`: the
/// hosts that no DNS answer can make point elsewhere.
fn is_literal_or_localhost(host: &str) -> bool {
    if let Some(bracketed) = host.strip_prefix('[') {
        let Some((ip, rest)) = bracketed.split_once(']') else {
            return false;
        };
        let port_ok = rest.is_empty()
            || rest
                .strip_prefix(':')
                .is_some_and(|p| !p.is_empty() && p.bytes().all(|b| b.is_ascii_digit()));
        return port_ok && ip.parse::<std::net::Ipv6Addr>().is_ok();
    }
    let name = match host.rsplit_once(':') {
        Some((name, port)) if !port.is_empty() && port.bytes().all(|b| b.is_ascii_digit()) => name,
        Some(_) => return false,
        None => host,
    };
    name == "localhost" || name.parse::<std::net::Ipv4Addr>().is_ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy(entries: &[&str]) -> OriginPolicy {
        let entries: Vec<String> = entries.iter().map(|e| e.to_string()).collect();
        OriginPolicy::new(&entries).unwrap_or_else(|e| panic!("{e}"))
    }

    #[test]
    fn no_origin_is_not_a_browser_and_passes() {
        assert!(policy(&[]).allows(None, Some("x")));
        assert!(policy(&["https://a.example"]).allows(None, None));
    }

    #[test]
    fn empty_list_means_same_origin() {
        let p = policy(&[]);
        assert!(p.allows(Some("http://127.0.0.1:8080"), Some("127.0.0.1:8080")));
        assert!(p.allows(Some("http://LOCALHOST:3000"), Some("localhost:3000")));
        assert!(p.allows(Some("http://localhost"), Some("localhost:80")));
        assert!(p.allows(Some("http://[::1]:8080"), Some("[::1]:8080")));
        assert!(!p.allows(Some("https://evil.example"), Some("app.example")));
        assert!(!p.allows(Some("http://127.0.0.1:9"), Some("127.0.0.1:8080")));
        assert!(!p.allows(Some("null"), Some("app.example")));
        assert!(!p.allows(Some("http://a.example"), None));
    }

    /// DNS rebinding: the attacker's name now points at voxgate, so Origin and Host agree; a
    /// name is never same-origin, only a listed origin.
    #[test]
    fn same_origin_needs_an_ip_literal_or_localhost_host() {
        let p = policy(&[]);
        for (origin, host) in [
            ("http://evil.example:8080", "evil.example:8080"),
            ("https://App.Example", "app.example:443"),
            ("http://localhost.evil.example", "localhost.evil.example"),
            ("http://127.0.0.1.nip.io:8080", "127.0.0.1.nip.io:8080"),
            ("http://[::1]", "[::1]x"),
        ] {
            assert!(!p.allows(Some(origin), Some(host)), "{origin} / {host}");
        }
        let listed = policy(&["http://app.example:8080"]);
        assert!(listed.allows(Some("http://app.example:8080"), Some("app.example:8080")));
        assert!(is_literal_or_localhost("10.1.2.3:9"));
        assert!(is_literal_or_localhost("localhost"));
        assert!(!is_literal_or_localhost("10.1.2.3:"));
        assert!(!is_literal_or_localhost("[::1"));
    }

    #[test]
    fn a_list_allows_exactly_its_origins() {
        let p = policy(&["https://app.example", "http://localhost:3000"]);
        assert!(p.allows(Some("https://app.example"), Some("voxgate.example")));
        assert!(p.allows(Some("https://app.example:443"), Some("voxgate.example")));
        assert!(p.allows(Some("HTTP://LOCALHOST:3000"), Some("voxgate.example")));
        assert!(!p.allows(Some("http://app.example"), Some("voxgate.example")));
        assert!(!p.allows(Some("https://app.example.evil"), Some("voxgate.example")));
        assert!(
            !p.allows(Some("https://voxgate.example"), Some("voxgate.example")),
            "a list replaces same-origin"
        );
        assert!(policy(&["*"]).allows(Some("null"), None));
    }

    #[test]
    fn entries_must_be_origins() {
        for bad in [
            "app.example",
            "ftp://a",
            "https://a/path",
            "https://",
            "https://a?x",
        ] {
            assert!(parse_allowed(bad).is_err(), "{bad}");
        }
        assert_eq!(
            parse_allowed("https://A.example:443"),
            Ok("https://a.example".to_string())
        );
    }

    proptest::proptest! {
        /// Any `Origin` and `Host` header: an answer, never a panic; an origin that is not
        /// `http(s)://…` is never same-origin.
        #[test]
        fn any_origin_is_answered(origin in "\\PC{0,60}", host in "\\PC{0,40}") {
            let same_origin = policy(&[]);
            let allowed = same_origin.allows(Some(&origin), Some(&host));
            let lower = origin.trim().to_ascii_lowercase();
            if !(lower.starts_with("http://") || lower.starts_with("https://")) {
                proptest::prop_assert!(!allowed);
            }
            let _ = policy(&["https://a.example"]).allows(Some(&origin), Some(&host));
            let _ = parse_allowed(&origin);
        }
    }
}
