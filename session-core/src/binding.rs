//! Binding a session to the client's IP address and User-Agent.
//!
//! The fingerprint is a keyed MAC (HMAC-SHA256, truncated to 128 bits) of
//! the masked IP and of the normalised User-Agent, so stored records reveal
//! neither, and comparisons run in constant time.

use std::net::IpAddr;

use ipnet::IpNet;
use serde::{Deserialize, Serialize};

use crate::keys::{constant_time_eq, KeyRing, Purpose};

/// The action taken when a loaded session's fingerprint does not match the client.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum BindingPolicy {
    /// Serve the session and report a `BindingMismatch` event (default), so
    /// users switching networks are not logged out.
    #[default]
    Detect,
    /// Treat the session as absent and delete it server-side.
    Strict,
}

/// The client facts a session can be bound to, as seen by the server.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ClientInfo {
    /// The client IP: the socket peer, or the first untrusted hop of
    /// `X-Forwarded-For` when the peer is a trusted proxy.
    pub ip: Option<IpAddr>,
    /// The `User-Agent` header.
    pub user_agent: Option<String>,
}

/// A keyed fingerprint of the client, stored in the record.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Fingerprint {
    ip: Option<[u8; 16]>,
    user_agent: Option<[u8; 16]>,
}

/// The parts of a fingerprint that differ.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct BindingMismatch {
    /// The IP address (after masking) differs.
    pub ip: bool,
    /// The normalised User-Agent differs.
    pub user_agent: bool,
}

impl BindingMismatch {
    /// Returns true when any part differs.
    pub fn any(self) -> bool {
        self.ip || self.user_agent
    }
}

impl Fingerprint {
    /// Computes the fingerprint of `client`, including only the parts enabled
    /// in `binding`.
    pub(crate) fn compute(
        keys: &KeyRing,
        binding: &crate::config::Binding,
        client: &ClientInfo,
    ) -> Self {
        let ip = binding.ip.then(|| {
            let masked = client
                .ip
                .map(|ip| mask_ip(ip, binding.ipv4_prefix, binding.ipv6_prefix));
            let text = masked.map(|ip| ip.to_string()).unwrap_or_default();
            truncate(
                keys.sign(Purpose::BindingFingerprint, &[b"ip", text.as_bytes()])
                    .as_ref(),
            )
        });
        let user_agent = binding.user_agent.then(|| {
            let normalised = normalise_user_agent(client.user_agent.as_deref().unwrap_or(""));
            truncate(
                keys.sign(Purpose::BindingFingerprint, &[b"ua", normalised.as_bytes()])
                    .as_ref(),
            )
        });
        Self { ip, user_agent }
    }

    /// Compares the enabled parts in constant time. A part missing on either
    /// side (binding switched on after the session was created) is not a
    /// mismatch.
    pub fn compare(&self, current: &Fingerprint) -> BindingMismatch {
        let differs = |a: &Option<[u8; 16]>, b: &Option<[u8; 16]>| match (a, b) {
            (Some(a), Some(b)) => !constant_time_eq(a, b),
            _ => false,
        };
        BindingMismatch {
            ip: differs(&self.ip, &current.ip),
            user_agent: differs(&self.user_agent, &current.user_agent),
        }
    }
}

fn truncate(tag: &[u8]) -> [u8; 16] {
    let mut out = [0u8; 16];
    out.copy_from_slice(&tag[..16]);
    out
}

fn mask_ip(ip: IpAddr, ipv4_prefix: u8, ipv6_prefix: u8) -> IpAddr {
    let prefix = match ip {
        IpAddr::V4(_) => ipv4_prefix,
        IpAddr::V6(_) => ipv6_prefix,
    };
    IpNet::new(ip, prefix)
        .map(|net| net.network())
        .unwrap_or(ip)
}

/// Reduces a User-Agent to its product names and major versions, dropping
/// comments in parentheses, so that a browser's patch update keeps the
/// session: `ExampleBrowser/120.0.1 (X11)` becomes `examplebrowser/120`.
pub(crate) fn normalise_user_agent(user_agent: &str) -> String {
    let mut out = String::new();
    let mut depth = 0usize;
    let mut without_comments = String::with_capacity(user_agent.len());
    for ch in user_agent.chars() {
        match ch {
            '(' => depth += 1,
            ')' => depth = depth.saturating_sub(1),
            _ if depth == 0 => without_comments.push(ch),
            _ => {}
        }
    }
    for product in without_comments.split_whitespace() {
        let (name, version) = product.split_once('/').unwrap_or((product, ""));
        let major: String = version.chars().take_while(|c| c.is_ascii_digit()).collect();
        if !out.is_empty() {
            out.push(' ');
        }
        out.push_str(&name.to_ascii_lowercase());
        if !major.is_empty() {
            out.push('/');
            out.push_str(&major);
        }
    }
    out
}

/// The proxies whose `X-Forwarded-For` header is believed.
///
/// With none configured (the default) the client IP is always the socket
/// peer and forwarding headers are ignored.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TrustedProxies {
    networks: Vec<IpNet>,
}

impl TrustedProxies {
    /// Trusts the given networks, such as `10.0.0.0/8` for a load balancer.
    pub fn new(networks: impl IntoIterator<Item = IpNet>) -> Self {
        Self {
            networks: networks.into_iter().collect(),
        }
    }

    /// Returns true when no proxy is trusted.
    pub fn is_empty(&self) -> bool {
        self.networks.is_empty()
    }

    fn trusts(&self, ip: IpAddr) -> bool {
        self.networks.iter().any(|net| net.contains(&ip))
    }

    /// Determines the client IP from the socket peer and the
    /// `X-Forwarded-For` values, walking the chain from the right and
    /// stopping at the first address that is not a trusted proxy.
    pub fn client_ip<'a>(
        &self,
        peer: IpAddr,
        forwarded_for: impl IntoIterator<Item = &'a str>,
    ) -> IpAddr {
        if !self.trusts(peer) {
            return peer;
        }
        let hops: Vec<&str> = forwarded_for
            .into_iter()
            .flat_map(|value| value.split(','))
            .collect();
        let mut client = peer;
        for hop in hops.iter().rev() {
            let Ok(ip) = hop.trim().parse::<IpAddr>() else {
                // An unparsable hop ends the trusted chain.
                return client;
            };
            client = ip;
            if !self.trusts(ip) {
                return ip;
            }
        }
        client
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Binding;
    use crate::Secret;

    fn keys() -> KeyRing {
        KeyRing::new(Secret::try_from_bytes(&[4u8; 32]).unwrap())
    }

    fn client(ip: &str, ua: &str) -> ClientInfo {
        ClientInfo {
            ip: Some(ip.parse().unwrap()),
            user_agent: Some(ua.into()),
        }
    }

    fn both() -> Binding {
        Binding {
            ip: true,
            user_agent: true,
            ..Binding::default()
        }
    }

    #[test]
    fn user_agent_patch_update_keeps_the_fingerprint() {
        assert_eq!(
            normalise_user_agent("ExampleBrowser/120.0.1 (X11)"),
            "examplebrowser/120"
        );
        let keys = keys();
        let a = Fingerprint::compute(
            &keys,
            &both(),
            &client("198.51.100.10", "ExampleBrowser/120.0.1 (X11)"),
        );
        let b = Fingerprint::compute(
            &keys,
            &both(),
            &client("198.51.100.10", "ExampleBrowser/120.0.2 (X11)"),
        );
        let c = Fingerprint::compute(&keys, &both(), &client("198.51.100.10", "OtherBrowser/5"));
        assert!(!a.compare(&b).any());
        assert_eq!(
            a.compare(&c),
            BindingMismatch {
                ip: false,
                user_agent: true
            }
        );
    }

    #[test]
    fn ip_change_is_a_mismatch_unless_inside_the_prefix() {
        let keys = keys();
        let a = Fingerprint::compute(&keys, &both(), &client("198.51.100.10", "X/1"));
        let b = Fingerprint::compute(&keys, &both(), &client("203.0.113.20", "X/1"));
        assert_eq!(
            a.compare(&b),
            BindingMismatch {
                ip: true,
                user_agent: false
            }
        );

        let tolerant = Binding {
            ipv4_prefix: 24,
            ..both()
        };
        let c = Fingerprint::compute(&keys, &tolerant, &client("198.51.100.10", "X/1"));
        let d = Fingerprint::compute(&keys, &tolerant, &client("198.51.100.99", "X/1"));
        assert!(!c.compare(&d).any());
    }

    #[test]
    fn forwarded_for_is_ignored_from_an_untrusted_peer() {
        let none = TrustedProxies::default();
        let peer: IpAddr = "203.0.113.20".parse().unwrap();
        assert_eq!(none.client_ip(peer, ["198.51.100.10"]), peer);
    }

    #[test]
    fn forwarded_for_is_walked_through_trusted_proxies() {
        let proxies = TrustedProxies::new(["10.0.0.0/8".parse().unwrap()]);
        let peer: IpAddr = "10.0.0.1".parse().unwrap();
        let client: IpAddr = "198.51.100.10".parse().unwrap();
        assert_eq!(
            proxies.client_ip(peer, ["203.0.113.5, 198.51.100.10, 10.0.0.2"]),
            client
        );
        assert_eq!(proxies.client_ip(peer, ["garbage"]), peer);
    }
}
