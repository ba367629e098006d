//! The client address behind a call, which sign-up and login limits go by: a gRPC client's is
//! its TCP peer; a gateway's client's is the address the gateway saw, which the gateway stamps
//! on its call together with its own service token vouching for it. A client cannot stamp an
//! address (it holds no service token), and a stamp whose token does not verify is ignored.
//!
//! Behind proxies (a Kubernetes Gateway, a sidecar) that peer is a proxy, shared by every
//! client. When it is one of the configured trusted proxies, the client is read from the chain
//! the proxies append to (`X-Forwarded-For`, else the `for=` of `Forwarded`), walked from its
//! right end past the entries that are themselves trusted proxies: the first other one is the
//! address the outermost trusted proxy saw. Everything left of it the client could have
//! written, so it is never read; an entry on the walk that is no address leaves the peer.

use std::net::{IpAddr, SocketAddr};

use ipnet::IpNet;
use serde::{Deserialize, Serialize};

use crate::{
    auth::{Authenticator, Caller},
    grpc::ServiceAuth,
};

/// Metadata carrying the client's address, as the gateway saw it.
pub const CLIENT_ADDR: &str = "x-chatmesh-client-addr";
/// Metadata carrying the stamping gateway's service token.
pub const STAMPED_BY: &str = "x-chatmesh-client-addr-by";
/// Metadata carrying the forwarding chain the gateway's client arrived with (in
/// `X-Forwarded-For` form), vouched for by the same token.
pub const STAMPED_CHAIN: &str = "x-chatmesh-client-forwarded-for";
/// The header (and gRPC metadata) proxies append their peer's address to.
pub const X_FORWARDED_FOR: &str = "x-forwarded-for";
/// The standard header of the same (RFC 7239), read only when no `X-Forwarded-For` came.
pub const FORWARDED: &str = "forwarded";
/// Entries of a forwarding chain kept, nearest first: far more proxies than any deployment
/// chains, and what lies beyond them the client wrote.
const MAX_HOPS: usize = 32;

/// The proxies whose forwarding headers are believed (`limits.trusted_proxies`): address
/// ranges (`10.0.0.0/8`, `fc00::/7`) or single addresses. Empty: none, the peer is the client.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "Vec<String>", into = "Vec<String>")]
pub struct TrustedProxies(Vec<IpNet>);

impl TryFrom<Vec<String>> for TrustedProxies {
    type Error = String;

    fn try_from(ranges: Vec<String>) -> Result<Self, String> {
        let range = |text: &str| {
            let text = text.trim();
            text.parse::<IpNet>()
                .or_else(|_| text.parse::<IpAddr>().map(IpNet::from))
                .map_err(|_| format!("`{text}` is not an address range such as 10.0.0.0/8 or fc00::/7"))
        };
        ranges.iter().map(|text| range(text)).collect::<Result<_, _>>().map(Self)
    }
}

impl From<TrustedProxies> for Vec<String> {
    fn from(proxies: TrustedProxies) -> Self {
        proxies.0.iter().map(IpNet::to_string).collect()
    }
}

impl TrustedProxies {
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// Whether `addr` (an IPv4-mapped IPv6 address as its IPv4 one) is a trusted proxy.
    pub fn trusts(&self, addr: IpAddr) -> bool {
        let addr = addr.to_canonical();
        self.0.iter().any(|range| range.contains(&addr))
    }

    /// The client behind a connection from `peer` whose request carried the forwarding `chain`
    /// (see [`forwarded_chain`]): `peer` itself unless it is trusted; else the rightmost entry
    /// that is not, or, when every entry is, the leftmost; `peer` when the walk meets an entry
    /// that is no address, or there is no chain.
    pub fn client(&self, peer: IpAddr, chain: &str) -> IpAddr {
        if !self.trusts(peer) {
            return peer;
        }
        let mut farthest = peer;
        for entry in chain.rsplit(',') {
            let Some(addr) = hop(entry) else { return peer };
            if !self.trusts(addr) {
                return addr;
            }
            farthest = addr;
        }
        farthest
    }
}

/// One entry of a chain: an address, with or without a port (`203.0.113.7:4711`,
/// `[2001:db8::1]:443`), quoted as `Forwarded` quotes it; `None` for anything else (`unknown`,
/// an obfuscated `_name`, garbage).
fn hop(entry: &str) -> Option<IpAddr> {
    let entry = entry.trim();
    let entry = entry.strip_prefix('"').and_then(|e| e.strip_suffix('"')).unwrap_or(entry);
    entry
        .parse::<IpAddr>()
        .ok()
        .or_else(|| entry.parse::<SocketAddr>().ok().map(|socket| socket.ip()))
        .or_else(|| entry.strip_prefix('[')?.strip_suffix(']')?.parse().ok())
}

/// The chain of addresses the proxies of a request appended, nearest last, in
/// `X-Forwarded-For` form: the entries of every `X-Forwarded-For` header in order, or without
/// one the `for=` of each `Forwarded` element (an element without one, or a value that is not
/// text, stays as an entry that is no address). Empty: no forwarding header.
pub fn forwarded_chain(headers: &http::HeaderMap) -> String {
    fn text(value: &http::HeaderValue) -> &str {
        value.to_str().unwrap_or("unknown")
    }
    let mut entries: Vec<&str> = headers.get_all(X_FORWARDED_FOR).iter().flat_map(|v| text(v).split(',')).collect();
    if entries.is_empty() {
        for element in headers.get_all(FORWARDED).iter().flat_map(|v| text(v).split(',')) {
            let of = element.split(';').find_map(|pair| {
                let (name, value) = pair.split_once('=')?;
                name.trim().eq_ignore_ascii_case("for").then_some(value)
            });
            entries.push(of.unwrap_or("unknown"));
        }
    }
    let nearest = entries.len().saturating_sub(MAX_HOPS);
    entries[nearest..].iter().map(|entry| entry.trim()).collect::<Vec<_>>().join(", ")
}

/// Stamps the client a gateway serves on the call it makes for that client: `peer`, the
/// address the gateway's connection comes from, and the forwarding chain in `headers`, which
/// the service reads as [`client_source`] says.
pub fn stamp<T>(request: &mut tonic::Request<T>, peer: IpAddr, headers: &http::HeaderMap, gateway: &ServiceAuth) {
    let (Ok(addr), Ok(token)) = (peer.to_string().parse(), gateway.token().parse()) else { return };
    request.metadata_mut().insert(CLIENT_ADDR, addr);
    request.metadata_mut().insert(STAMPED_BY, token);
    let chain = forwarded_chain(headers);
    if !chain.is_empty()
        && let Ok(chain) = chain.parse()
    {
        request.metadata_mut().insert(STAMPED_CHAIN, chain);
    }
}

/// Where `request` comes from, as limits count it (an IPv6 address by its /64, see
/// [`crate::connections::source_of`]): the stamp of a gateway whose token verifies, else the
/// TCP peer — either one, when `proxies` trusts it, followed down its forwarding chain (the
/// stamped one, or the call's own `x-forwarded-for`/`forwarded` metadata); `None` for an
/// in-process call nobody stamped.
pub fn client_source<T>(request: &tonic::Request<T>, auth: &Authenticator, proxies: &TrustedProxies) -> Option<IpAddr> {
    let metadata = request.metadata();
    let stamped = metadata
        .get(STAMPED_BY)
        .and_then(|token| token.to_str().ok())
        .filter(|token| matches!(auth.verify(token), Ok(Caller::Service { .. })))
        .and_then(|_| metadata.get(CLIENT_ADDR)?.to_str().ok()?.parse::<IpAddr>().ok());
    let client = match stamped {
        Some(peer) => {
            let chain = metadata.get(STAMPED_CHAIN).and_then(|chain| chain.to_str().ok()).unwrap_or_default();
            proxies.client(peer, chain)
        }
        None => {
            let peer = request.remote_addr()?.ip();
            proxies.client(peer, &forwarded_chain(metadata.as_ref()))
        }
    };
    Some(crate::connections::source_of(client))
}

#[cfg(test)]
// why: figment's Jail closures return its large error type by design.
#[allow(clippy::result_large_err)]
mod tests {
    use std::sync::Arc;

    use tonic::transport::server::TcpConnectInfo;

    use super::*;
    use crate::config::{AuthConfig, Config};

    fn authenticator() -> (tempfile::TempDir, Arc<Authenticator>) {
        let dir = tempfile::tempdir().unwrap();
        let auth = Authenticator::from_data_dir(AuthConfig::default(), dir.path()).unwrap();
        (dir, Arc::new(auth))
    }

    fn from_peer(peer: &str) -> tonic::Request<()> {
        let mut request = tonic::Request::new(());
        let info = TcpConnectInfo { local_addr: None, remote_addr: Some(peer.parse().unwrap()) };
        request.extensions_mut().insert(info);
        request
    }

    fn ip(text: &str) -> Option<IpAddr> {
        Some(text.parse().unwrap())
    }

    fn addr(text: &str) -> IpAddr {
        text.parse().unwrap()
    }

    fn trusting(ranges: &[&str]) -> TrustedProxies {
        TrustedProxies::try_from(ranges.iter().map(|r| r.to_string()).collect::<Vec<_>>()).unwrap()
    }

    fn headers(pairs: &[(&'static str, &str)]) -> http::HeaderMap {
        let mut map = http::HeaderMap::new();
        for (name, value) in pairs {
            map.append(*name, value.parse().unwrap());
        }
        map
    }

    #[test]
    fn a_direct_client_is_its_tcp_peer_with_ipv6_counted_by_its_64() {
        let (_dir, auth) = authenticator();
        let none = TrustedProxies::default();
        assert_eq!(client_source(&from_peer("192.0.2.7:5000"), &auth, &none), ip("192.0.2.7"));
        assert_eq!(client_source(&from_peer("[2001:db8:1:2:3:4:5:6]:5000"), &auth, &none), ip("2001:db8:1:2::"));
        assert_eq!(client_source(&from_peer("[::ffff:192.0.2.7]:5000"), &auth, &none), ip("192.0.2.7"));
        assert_eq!(client_source(&tonic::Request::new(()), &auth, &none), None, "in process, unstamped");
    }

    #[test]
    fn a_gateway_stamp_counts_only_with_a_service_token_that_verifies() {
        let (_dir, auth) = authenticator();
        let none = TrustedProxies::default();
        let gateway = ServiceAuth::new(auth.clone(), "rest");
        let mut stamped = from_peer("10.0.0.9:5000");
        stamp(&mut stamped, addr("198.51.100.4"), &http::HeaderMap::new(), &gateway);
        assert_eq!(client_source(&stamped, &auth, &none), ip("198.51.100.4"));
        let mut in_process = tonic::Request::new(());
        stamp(&mut in_process, addr("198.51.100.4"), &http::HeaderMap::new(), &gateway);
        assert_eq!(client_source(&in_process, &auth, &none), ip("198.51.100.4"));

        // a client's own stamp: no token, a user's token, a stranger's service token
        let (_other_dir, stranger) = authenticator();
        let forged =
            [String::new(), auth.issue_access(7, "s7").token, stranger.issue_service("rest"), "garbage".to_owned()];
        let trusted = trusting(&["0.0.0.0/0"]);
        for token in forged {
            let mut request = from_peer("203.0.113.9:5000");
            request.metadata_mut().insert(CLIENT_ADDR, "198.51.100.4".parse().unwrap());
            request.metadata_mut().insert(STAMPED_CHAIN, "198.51.100.5".parse().unwrap());
            if let Ok(token) = token.parse() {
                request.metadata_mut().insert(STAMPED_BY, token);
            }
            assert_eq!(client_source(&request, &auth, &none), ip("203.0.113.9"), "the peer, not the stamp");
            // nor is a forged stamped chain read as the call's forwarding chain
            assert_eq!(client_source(&request, &auth, &trusted), ip("203.0.113.9"), "no chain of its own");
        }
    }

    #[test]
    fn an_untrusted_or_unconfigured_peer_is_the_client_whatever_it_forwards() {
        let chain = "198.51.100.1, 198.51.100.2";
        assert_eq!(TrustedProxies::default().client(addr("10.0.0.1"), chain), addr("10.0.0.1"));
        let proxies = trusting(&["10.0.0.0/8"]);
        assert_eq!(proxies.client(addr("192.0.2.1"), chain), addr("192.0.2.1"));
        assert_eq!(proxies.client(addr("::ffff:192.0.2.1"), chain), addr("::ffff:192.0.2.1"));
    }

    #[test]
    fn behind_trusted_proxies_the_client_is_the_rightmost_untrusted_entry() {
        let proxies = trusting(&["10.0.0.0/8", "fc00::/7", "127.0.0.1"]);
        let peer = addr("10.1.2.3");
        let cases = [
            ("203.0.113.7", "203.0.113.7"),
            // what the client wrote itself lies left of what the proxy appended
            ("198.51.100.66, 203.0.113.7", "203.0.113.7"),
            ("10.9.9.9, 203.0.113.7", "203.0.113.7"),
            // trusted hops on the right are walked past
            ("198.51.100.66, 203.0.113.7, 10.0.0.5, 127.0.0.1", "203.0.113.7"),
            ("203.0.113.7,fd00::1", "203.0.113.7"),
            // ports, brackets, IPv6
            ("203.0.113.7:4711", "203.0.113.7"),
            ("[2001:db8::1]:443", "2001:db8::1"),
            ("2001:db8::1", "2001:db8::1"),
            ("[2001:db8::1]", "2001:db8::1"),
            ("::ffff:203.0.113.7", "::ffff:203.0.113.7"),
            // garbage the client put left of the proxy's entry is never read
            ("not an address, 203.0.113.7", "203.0.113.7"),
            // every entry a trusted proxy: the farthest one
            ("10.0.0.7, 10.0.0.5", "10.0.0.7"),
            // no chain, or an entry on the walk that is no address: the peer
            ("", "10.1.2.3"),
            ("203.0.113.7, unknown", "10.1.2.3"),
            ("203.0.113.7, 10.0.0.5, _hidden", "10.1.2.3"),
            ("203.0.113.7, ", "10.1.2.3"),
            ("203.0.113.7 10.0.0.5", "10.1.2.3"),
            ("300.0.113.7", "10.1.2.3"),
        ];
        for (chain, client) in cases {
            assert_eq!(proxies.client(peer, chain), addr(client), "{chain:?}");
        }
        let mapped = addr("::ffff:10.1.2.3");
        assert_eq!(proxies.client(mapped, "203.0.113.7"), addr("203.0.113.7"), "an IPv4-mapped peer");
    }

    #[test]
    fn the_chain_is_every_x_forwarded_for_in_order_else_forwarded_for() {
        let chain = |pairs: &[(&'static str, &str)]| forwarded_chain(&headers(pairs));
        assert_eq!(chain(&[]), "");
        assert_eq!(
            chain(&[("x-forwarded-for", "198.51.100.1 ,198.51.100.2"), ("x-forwarded-for", "203.0.113.7")]),
            "198.51.100.1, 198.51.100.2, 203.0.113.7"
        );
        let forwarded = r#"for=192.0.2.60;proto=http;by=203.0.113.43, For="[2001:db8:cafe::17]:4711""#;
        assert_eq!(chain(&[("forwarded", forwarded)]), r#"192.0.2.60, "[2001:db8:cafe::17]:4711""#);
        assert_eq!(chain(&[("forwarded", "proto=https, for=unknown")]), "unknown, unknown");
        assert_eq!(
            chain(&[("forwarded", "for=192.0.2.60"), ("x-forwarded-for", "203.0.113.7")]),
            "203.0.113.7",
            "X-Forwarded-For, which the usual proxies append to, wins"
        );
        let proxies = trusting(&["10.0.0.0/8"]);
        let resolve = |pairs: &[(&'static str, &str)]| proxies.client(addr("10.0.0.1"), &chain(pairs));
        assert_eq!(resolve(&[("forwarded", forwarded)]), addr("2001:db8:cafe::17"));
        assert_eq!(resolve(&[("forwarded", "for=203.0.113.7;proto=https")]), addr("203.0.113.7"));
        assert_eq!(resolve(&[("forwarded", "for=203.0.113.7, proto=https")]), addr("10.0.0.1"));
        // a value that is not text is an entry that is no address
        let mut binary = headers(&[("x-forwarded-for", "203.0.113.7")]);
        binary.append("x-forwarded-for", http::HeaderValue::from_bytes(b"\xff").unwrap());
        assert_eq!(proxies.client(addr("10.0.0.1"), &forwarded_chain(&binary)), addr("10.0.0.1"));
    }

    #[test]
    fn only_the_nearest_hops_of_a_long_chain_are_kept() {
        let mut entries: Vec<String> = (0..1000).map(|i| format!("198.51.{}.{}", i / 250, i % 250)).collect();
        entries.push("203.0.113.7".into());
        let chain = forwarded_chain(&headers(&[("x-forwarded-for", &entries.join(","))]));
        assert_eq!(chain.split(", ").count(), MAX_HOPS);
        assert!(chain.ends_with("203.0.113.7"), "{chain}");
        assert_eq!(trusting(&["10.0.0.0/8"]).client(addr("10.0.0.1"), &chain), addr("203.0.113.7"));
    }

    #[test]
    fn a_direct_grpc_peer_that_is_trusted_forwards_its_client_in_metadata() {
        let (_dir, auth) = authenticator();
        let proxies = trusting(&["10.0.0.0/8"]);
        let mut request = from_peer("10.0.0.9:5000");
        request.metadata_mut().insert(X_FORWARDED_FOR, "198.51.100.66, 2001:db8:1:2:3:4:5:6".parse().unwrap());
        assert_eq!(client_source(&request, &auth, &proxies), ip("2001:db8:1:2::"), "by its /64");
        assert_eq!(client_source(&request, &auth, &TrustedProxies::default()), ip("10.0.0.9"));
        let mut untrusted = from_peer("192.0.2.7:5000");
        untrusted.metadata_mut().insert(X_FORWARDED_FOR, "198.51.100.66".parse().unwrap());
        assert_eq!(client_source(&untrusted, &auth, &proxies), ip("192.0.2.7"));
        let mut forwarded = from_peer("10.0.0.9:5000");
        forwarded.metadata_mut().insert(FORWARDED, "for=198.51.100.67".parse().unwrap());
        assert_eq!(client_source(&forwarded, &auth, &proxies), ip("198.51.100.67"));
    }

    #[test]
    fn a_gateway_stamps_the_chain_it_received_and_only_that_is_read() {
        let (_dir, auth) = authenticator();
        let proxies = trusting(&["10.0.0.0/8"]);
        let gateway = ServiceAuth::new(auth.clone(), "rest");
        let received = headers(&[("x-forwarded-for", "198.51.100.66, 203.0.113.7")]);
        // the gateway's own peer is a trusted proxy: the chain it received names the client
        let mut request = from_peer("10.0.0.3:5000");
        stamp(&mut request, addr("10.0.0.2"), &received, &gateway);
        assert_eq!(client_source(&request, &auth, &proxies), ip("203.0.113.7"));
        assert_eq!(client_source(&request, &auth, &TrustedProxies::default()), ip("10.0.0.2"));
        // the gateway's peer is the client itself: what it forwarded is not read
        let mut direct = tonic::Request::new(());
        stamp(&mut direct, addr("192.0.2.7"), &received, &gateway);
        assert_eq!(client_source(&direct, &auth, &proxies), ip("192.0.2.7"));
        // a stamped call's own x-forwarded-for is not the gateway's word
        let mut unforwarded = from_peer("10.0.0.3:5000");
        unforwarded.metadata_mut().insert(X_FORWARDED_FOR, "198.51.100.66".parse().unwrap());
        stamp(&mut unforwarded, addr("10.0.0.2"), &http::HeaderMap::new(), &gateway);
        assert_eq!(client_source(&unforwarded, &auth, &proxies), ip("10.0.0.2"));
    }

    #[test]
    fn trusted_proxies_load_as_ranges_or_addresses_and_a_bad_one_is_refused_naming_the_key() {
        figment::Jail::expect_with(|jail| {
            assert!(Config::load(None, serde_json::json!({})).expect("loads").limits.trusted_proxies.is_empty());
            jail.create_file("chatmesh.toml", "[limits]\ntrusted_proxies = [\"10.0.0.0/8\", \"fc00::/7\"]\n")?;
            let file = Some(std::path::Path::new("chatmesh.toml"));
            let proxies = Config::load(file, serde_json::json!({})).expect("loads").limits.trusted_proxies;
            assert_eq!(proxies, trusting(&["10.0.0.0/8", "fc00::/7"]));
            jail.set_env("CHATMESH_LIMITS__TRUSTED_PROXIES", r#"["192.168.0.0/16", "::1"]"#);
            let proxies = Config::load(file, serde_json::json!({})).expect("loads").limits.trusted_proxies;
            assert!(proxies.trusts(addr("::1")) && proxies.trusts(addr("192.168.4.5")));
            assert!(
                !proxies.trusts(addr("::2")) && !proxies.trusts(addr("10.0.0.1")),
                "the environment replaces the file"
            );
            jail.set_env("CHATMESH_LIMITS__TRUSTED_PROXIES", r#"["10.0.0.0/33"]"#);
            let message = Config::load(None, serde_json::json!({})).unwrap_err().to_string().to_lowercase();
            assert!(message.contains("limits.trusted_proxies") && message.contains("10.0.0.0/33"), "{message}");
            Ok(())
        });
        assert!(TrustedProxies::try_from(vec!["*".to_owned()]).is_err());
        assert!(TrustedProxies::try_from(vec!["10.0.0.0/8 ".to_owned(), " ::1".to_owned()]).is_ok(), "spaces trimmed");
    }
}
