//! Which addresses a webhook may reach. An app with an API key chooses the URL the endpoint POSTs to: left
//! unchecked, that is a way into the endpoint's own network (server-side request forgery): its loopback
//! services, a cloud's metadata service at 169.254.169.254, the private network behind it. So webhooks reach
//! public addresses only, unless `webhooks.allow_networks` names a network; the check runs on every
//! connection, on the addresses a name resolves to then (a name that resolved to a public address at
//! registration may resolve to a private one later).

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::Arc;

use ipnet::IpNet;

/// The networks webhooks may reach although they are not public.
#[derive(Debug, Clone, Default)]
pub struct AddressPolicy {
    allowed: Vec<IpNet>,
}

impl AddressPolicy {
    /// A policy allowing `networks` (CIDR, or a bare address) besides public addresses.
    pub fn new(networks: &[String]) -> anyhow::Result<Self> {
        let allowed = networks
            .iter()
            .map(|text| {
                text.parse::<IpNet>().or_else(|_| text.parse::<IpAddr>().map(IpNet::from)).map_err(|_| {
                    anyhow::anyhow!(
                        "webhooks.allow_networks: '{text}' is not a network (CIDR such as 10.1.0.0/16) or an address"
                    )
                })
            })
            .collect::<anyhow::Result<_>>()?;
        Ok(Self { allowed })
    }

    /// `Ok` when a webhook may reach `ip`; else why not, naming the setting that would allow it.
    pub fn check(&self, ip: IpAddr) -> Result<(), String> {
        if self.allowed.iter().any(|network| network.contains(&ip)) {
            return Ok(());
        }
        match not_public(ip) {
            None => Ok(()),
            Some(kind) => Err(format!(
                "{ip} is a {kind} address, which webhooks do not reach unless webhooks.allow_networks names \
                 its network"
            )),
        }
    }
}

/// What kind of non-public address `ip` is, if it is one. IPv6 addresses that carry an IPv4 address
/// (mapped, NAT64, 6to4) are judged by it.
fn not_public(ip: IpAddr) -> Option<&'static str> {
    match ip {
        IpAddr::V4(ip) => not_public_v4(ip),
        IpAddr::V6(ip) => not_public_v6(ip),
    }
}

fn not_public_v4(ip: Ipv4Addr) -> Option<&'static str> {
    let [a, b, c, _] = ip.octets();
    if ip.is_loopback() {
        Some("loopback")
    } else if ip.is_private() {
        Some("private")
    } else if ip.is_link_local() {
        Some("link-local")
    } else if a == 0 || ip.is_unspecified() {
        Some("unspecified")
    } else if a == 100 && (64..128).contains(&b) {
        Some("shared (carrier-grade NAT)")
    } else if ip.is_multicast() || ip.is_broadcast() || a >= 240 {
        Some("multicast or reserved")
    } else if (a == 192 && b == 0 && c == 0) || (a == 198 && (b == 18 || b == 19)) {
        Some("special-purpose")
    } else if ip.is_documentation() {
        Some("documentation")
    } else {
        None
    }
}

fn not_public_v6(ip: Ipv6Addr) -> Option<&'static str> {
    let segments = ip.segments();
    if let Some(v4) = ip.to_ipv4_mapped() {
        return not_public_v4(v4).map(|_| "non-public IPv4-mapped");
    }
    let embedded = |high: u16, low: u16| Ipv4Addr::from((u32::from(high) << 16) | u32::from(low));
    if segments[..6] == [0x64, 0xff9b, 0, 0, 0, 0] {
        return not_public_v4(embedded(segments[6], segments[7])).map(|_| "non-public NAT64");
    }
    if segments[0] == 0x2002 {
        return not_public_v4(embedded(segments[1], segments[2])).map(|_| "non-public 6to4");
    }
    if ip.is_loopback() {
        Some("loopback")
    } else if ip.is_unspecified() || segments[..6] == [0; 6] {
        Some("unspecified")
    } else if segments[0] & 0xfe00 == 0xfc00 {
        Some("private (unique local)")
    } else if segments[0] & 0xffc0 == 0xfe80 || segments[0] & 0xffc0 == 0xfec0 {
        Some("link-local")
    } else if ip.is_multicast() {
        Some("multicast or reserved")
    } else if segments[0] == 0x2001 && segments[1] == 0x0db8 {
        Some("documentation")
    } else if segments[0] == 0x2001 && segments[1] == 0 {
        Some("special-purpose (Teredo)")
    } else {
        None
    }
}

/// reqwest's name resolution for webhooks: the system resolver, then only the addresses the policy allows.
/// (A URL with an address rather than a name is checked before the request, see `client.rs`.)
pub(crate) struct GuardedResolver {
    pub policy: Arc<AddressPolicy>,
}

impl reqwest::dns::Resolve for GuardedResolver {
    fn resolve(&self, name: reqwest::dns::Name) -> reqwest::dns::Resolving {
        let policy = self.policy.clone();
        let host = name.as_str().to_owned();
        Box::pin(async move {
            let resolved: Vec<SocketAddr> = tokio::net::lookup_host((host.as_str(), 0)).await?.collect();
            let mut refused = Vec::new();
            let allowed: Vec<SocketAddr> = resolved
                .into_iter()
                .filter(|address| match policy.check(address.ip()) {
                    Ok(()) => true,
                    Err(why) => {
                        refused.push(why);
                        false
                    }
                })
                .collect();
            if allowed.is_empty() {
                let why = refused.first().cloned().unwrap_or_else(|| "no address".to_owned());
                return Err(format!("{host} resolves to no address webhooks may reach: {why}").into());
            }
            let addresses: reqwest::dns::Addrs = Box::new(allowed.into_iter());
            Ok(addresses)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_public_addresses_unless_allowed() {
        let policy = AddressPolicy::new(&[]).unwrap();
        for public in ["93.184.215.14", "8.8.8.8", "2606:4700:4700::1111", "100.128.0.1", "172.32.0.1"] {
            assert!(policy.check(public.parse().unwrap()).is_ok(), "{public}");
        }
        for (address, kind) in [
            ("127.0.0.1", "loopback"),
            ("10.1.2.3", "private"),
            ("172.16.0.1", "private"),
            ("192.168.1.1", "private"),
            ("169.254.169.254", "link-local"),
            ("0.0.0.0", "unspecified"),
            ("100.64.0.1", "shared"),
            ("224.0.0.1", "multicast"),
            ("255.255.255.255", "multicast"),
            ("198.18.0.1", "special"),
            ("::1", "loopback"),
            ("::", "unspecified"),
            ("fd00::1", "unique local"),
            ("fe80::1", "link-local"),
            ("::ffff:127.0.0.1", "IPv4-mapped"),
            ("::ffff:169.254.169.254", "IPv4-mapped"),
            ("64:ff9b::a00:1", "NAT64"),
            ("2002:a00:1::1", "6to4"),
            ("ff02::1", "multicast"),
        ] {
            let error = policy.check(address.parse().unwrap()).unwrap_err();
            assert!(error.contains(kind), "{address}: {error}");
            assert!(error.contains("webhooks.allow_networks"), "{error}");
        }
        let allowing =
            AddressPolicy::new(&["127.0.0.0/8".to_owned(), "10.1.0.0/16".to_owned(), "::1".to_owned()])
                .unwrap();
        assert!(allowing.check("127.0.0.1".parse().unwrap()).is_ok());
        assert!(allowing.check("10.1.200.3".parse().unwrap()).is_ok());
        assert!(allowing.check("::1".parse().unwrap()).is_ok());
        assert!(allowing.check("10.2.0.1".parse().unwrap()).is_err());
        let error = AddressPolicy::new(&["10.0.0.0/33".to_owned()]).unwrap_err();
        assert!(error.to_string().contains("webhooks.allow_networks"), "{error}");
    }

    #[tokio::test]
    async fn names_are_resolved_then_checked() {
        use reqwest::dns::Resolve as _;
        let strict = GuardedResolver { policy: Arc::new(AddressPolicy::new(&[]).unwrap()) };
        let error = strict.resolve("localhost".parse().unwrap()).await.err().unwrap().to_string();
        assert!(error.contains("localhost resolves to no address webhooks may reach"), "{error}");
        assert!(error.contains("loopback"), "{error}");
        let policy = AddressPolicy::new(&["127.0.0.0/8".to_owned(), "::1".to_owned()]).unwrap();
        let allowing = GuardedResolver { policy: Arc::new(policy) };
        let addresses: Vec<SocketAddr> =
            allowing.resolve("localhost".parse().unwrap()).await.unwrap().collect();
        assert!(!addresses.is_empty() && addresses.iter().all(|address| address.ip().is_loopback()));
    }
}
