//! Request checks: which peers, hosts and browsers may reach the server.
//!
//! A local credential server is reachable by anything that can open a
//! socket to it, including a web page through DNS rebinding or a form post.
//! These checks run before a request touches the session:
//! - the `Host` header must name an address the server is really reached
//!   by, so a rebound attacker domain is rejected;
//! - requests that carry a browser `Origin` or `Sec-Fetch-*` header are
//!   rejected, because no SDK sends them;
//! - peers must be on loopback or link-local unless a listen address was
//!   deliberately set to something else.

use std::net::{IpAddr, SocketAddr};

use warp::http::{HeaderMap, StatusCode, header};

use super::{HttpResponse, text};

/// The address SDKs use by default, allowed as a `Host` with or without
/// port 80 for set-ups that redirect it to this server.
pub const METADATA_HOST: &str = "169.254.169.254";

/// The request checks for one server.
#[derive(Debug, Clone)]
pub struct Guard {
    /// Lowercase host names and IP literals (IPv6 in brackets), without port.
    hosts: Vec<String>,
    /// Ports a `Host` header may name.
    ports: Vec<u16>,
    allow_remote_peers: bool,
}

impl Guard {
    /// Builds the guard for a server listening on `listen`, allowing `extra_hosts`
    /// (from `--allow-host`) as well.
    pub fn new(listen: &[SocketAddr], extra_hosts: &[String]) -> Self {
        let mut hosts: Vec<String> = [METADATA_HOST, "localhost", "127.0.0.1", "[::1]"]
            .iter()
            .map(|h| (*h).to_owned())
            .collect();
        for addr in listen {
            hosts.push(host_literal(addr.ip()));
        }
        // A port given with a name is ignored: the listen ports apply.
        hosts.extend(extra_hosts.iter().map(|h| {
            let host = h.trim().to_ascii_lowercase();
            split_host_port(&host).0.to_owned()
        }));
        hosts.sort();
        hosts.dedup();
        let mut ports: Vec<u16> = listen.iter().map(SocketAddr::port).collect();
        ports.push(80);
        ports.sort_unstable();
        ports.dedup();
        let allow_remote_peers = listen.iter().any(|addr| !is_local(addr.ip()));
        Self {
            hosts,
            ports,
            allow_remote_peers,
        }
    }

    /// Adds the real ports once port-0 listeners are bound.
    pub fn allow_ports(&mut self, ports: impl IntoIterator<Item = u16>) {
        self.ports.extend(ports);
        self.ports.sort_unstable();
        self.ports.dedup();
    }

    /// Returns whether a connection from `peer` is accepted at all.
    pub fn allows_peer(&self, peer: IpAddr) -> bool {
        self.allow_remote_peers || is_local(peer)
    }

    /// Returns the response that rejects a request, or `None` to let it in.
    ///
    /// NOTE: only the `Host` header is checked. An absolute-form request
    /// line (`GET http://other.example/...`) naming another authority is
    /// judged by its `Host` header alone.
    pub fn check(&self, headers: &HeaderMap) -> Option<HttpResponse> {
        if headers.contains_key(header::ORIGIN)
            || headers
                .keys()
                .any(|name| name.as_str().starts_with("sec-fetch-"))
        {
            return Some(text(
                StatusCode::FORBIDDEN,
                "requests from web browsers are rejected: this server hands out AWS credentials",
            ));
        }
        let mut hosts = headers.get_all(header::HOST).iter();
        let (Some(host), None) = (hosts.next(), hosts.next()) else {
            return Some(text(
                StatusCode::BAD_REQUEST,
                "a request needs exactly one Host header",
            ));
        };
        match host.to_str() {
            Ok(host) if self.allows_host(host) => None,
            Ok(_) => Some(text(
                StatusCode::FORBIDDEN,
                "Host header names an address this server does not serve; add it with --allow-host if it is yours",
            )),
            Err(_) => Some(text(StatusCode::BAD_REQUEST, "Host header is not ASCII")),
        }
    }

    fn allows_host(&self, host: &str) -> bool {
        let (name, port) = split_host_port(host.trim());
        let port_ok = match port {
            None => true,
            Some(port) => port.parse::<u16>().is_ok_and(|p| self.ports.contains(&p)),
        };
        port_ok
            && self
                .hosts
                .iter()
                .any(|allowed| allowed.eq_ignore_ascii_case(name))
    }
}

/// Splits `host[:port]`, keeping IPv6 brackets on the host.
fn split_host_port(host: &str) -> (&str, Option<&str>) {
    if host.starts_with('[') {
        return match host.find(']') {
            Some(end) => {
                let port = host[end + 1..].strip_prefix(':');
                (&host[..=end], port)
            }
            None => (host, None),
        };
    }
    match host.rsplit_once(':') {
        Some((name, port)) => (name, Some(port)),
        None => (host, None),
    }
}

fn host_literal(ip: IpAddr) -> String {
    match ip {
        IpAddr::V4(v4) => v4.to_string(),
        IpAddr::V6(v6) => format!("[{v6}]"),
    }
}

/// Loopback or link-local, including IPv4 addresses mapped into IPv6.
pub fn is_local(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => v4.is_loopback() || v4.is_link_local(),
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => v4.is_loopback() || v4.is_link_local(),
            None => v6.is_loopback() || (v6.segments()[0] & 0xffc0) == 0xfe80,
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn guard() -> Guard {
        Guard::new(
            &["127.0.0.1:45000".parse().unwrap()],
            &["imds.internal".to_owned()],
        )
    }

    fn with_host(host: &str) -> HeaderMap {
        let mut headers = HeaderMap::new();
        headers.insert(header::HOST, host.parse().unwrap());
        headers
    }

    #[test]
    fn allowed_hosts() {
        let guard = guard();
        for host in [
            "169.254.169.254",
            "169.254.169.254:80",
            "127.0.0.1:45000",
            "localhost:45000",
            "LOCALHOST:45000",
            "[::1]:45000",
            "localhost",
            "imds.internal:45000",
        ] {
            assert!(guard.check(&with_host(host)).is_none(), "{host}");
        }
    }

    #[test]
    fn rebinding_and_wrong_ports_are_rejected() {
        let guard = guard();
        for host in [
            "attacker.example",
            "attacker.example:45000",
            "127.0.0.1:8080",
            "169.254.169.254:8080",
            "127.0.0.1.nip.io",
            "[::1",
        ] {
            let response = guard.check(&with_host(host)).expect(host);
            assert_eq!(response.status(), StatusCode::FORBIDDEN, "{host}");
        }
        assert_eq!(
            guard.check(&HeaderMap::new()).unwrap().status(),
            StatusCode::BAD_REQUEST
        );
        let mut twice = with_host("127.0.0.1:45000");
        twice.append(header::HOST, "attacker.example".parse().unwrap());
        assert_eq!(
            guard.check(&twice).unwrap().status(),
            StatusCode::BAD_REQUEST
        );
    }

    #[test]
    fn browser_headers_are_rejected() {
        let guard = guard();
        for (name, value) in [
            ("origin", "https://attacker.example"),
            ("sec-fetch-site", "cross-site"),
            ("sec-fetch-mode", "no-cors"),
        ] {
            let mut headers = with_host("127.0.0.1:45000");
            headers.insert(name, value.parse().unwrap());
            assert_eq!(
                guard.check(&headers).unwrap().status(),
                StatusCode::FORBIDDEN,
                "{name}"
            );
        }
    }

    #[test]
    fn only_local_peers_unless_listening_elsewhere() {
        let local = guard();
        assert!(local.allows_peer("127.0.0.1".parse().unwrap()));
        assert!(local.allows_peer("169.254.10.1".parse().unwrap()));
        assert!(local.allows_peer("::1".parse().unwrap()));
        assert!(local.allows_peer("::ffff:127.0.0.1".parse().unwrap()));
        assert!(local.allows_peer("fe80::1".parse().unwrap()));
        assert!(!local.allows_peer("192.168.1.20".parse().unwrap()));
        assert!(!local.allows_peer("2001:db8::1".parse().unwrap()));
        let lan = Guard::new(&["0.0.0.0:45000".parse().unwrap()], &[]);
        assert!(lan.allows_peer("192.168.1.20".parse().unwrap()));
    }
}
