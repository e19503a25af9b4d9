//! Limits per client: new connections per second per address (a token bucket each), and open
//! sessions per address and per API key (a count each, released when the session ends).
//!
//! A client *address* is an IPv4 address or an IPv6 /64 (one subscriber's usual allocation, so an
//! IPv6 client cannot dodge the limits by rotating through its addresses). Behind a proxy it is
//! read from `X-Forwarded-For`, but only when the TCP peer is one of `[server] trusted_proxies`:
//! from anyone else the header is the client's to forge.
//!
//! The tables are bounded: session counts hold only clients with sessions open; the rate table
//! forgets clients whose bucket has refilled, and when it is still full of active clients new ones
//! are refused rather than the table growing.

use std::collections::HashMap;
use std::hash::Hash;
use std::net::{IpAddr, Ipv6Addr};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use actix_web::HttpRequest;
use voxgate_actors::token_bucket::TokenBucket;

/// Most client addresses the rate table tracks at once.
const MAX_TRACKED: usize = 100_000;

/// One client address for the limits.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ClientAddr {
    V4([u8; 4]),
    /// The first 64 bits.
    V6Prefix([u8; 8]),
}

impl ClientAddr {
    pub fn of(ip: IpAddr) -> ClientAddr {
        match ip {
            IpAddr::V4(v4) => ClientAddr::V4(v4.octets()),
            IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
                Some(v4) => ClientAddr::V4(v4.octets()),
                None => {
                    let mut prefix = [0u8; 8];
                    prefix.copy_from_slice(&v6.octets()[..8]);
                    ClientAddr::V6Prefix(prefix)
                }
            },
        }
    }
}

impl std::fmt::Display for ClientAddr {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ClientAddr::V4(o) => write!(f, "{}.{}.{}.{}", o[0], o[1], o[2], o[3]),
            ClientAddr::V6Prefix(p) => {
                let mut octets = [0u8; 16];
                octets[..8].copy_from_slice(p);
                write!(f, "{}/64", Ipv6Addr::from(octets))
            }
        }
    }
}

/// The client's IP: the TCP peer — or, when the peer is one of `trusted_proxies`, what the
/// proxies' `X-Forwarded-For` says (see [`forwarded_client`]).
pub fn client_ip(req: &HttpRequest, trusted_proxies: &[IpAddr]) -> Option<IpAddr> {
    let peer = req.peer_addr()?.ip();
    if !is_trusted(peer, trusted_proxies) {
        return Some(peer);
    }
    let entries: Vec<&str> = req
        .headers()
        .get_all("x-forwarded-for")
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .collect();
    Some(forwarded_client(peer, &entries, trusted_proxies))
}

/// Whether `ip` is a trusted proxy (an IPv4-mapped IPv6 peer counts as its IPv4 address).
fn is_trusted(ip: IpAddr, trusted_proxies: &[IpAddr]) -> bool {
    let ip = ip.to_canonical();
    trusted_proxies.iter().any(|p| p.to_canonical() == ip)
}

/// The client behind a chain of trusted proxies: walking `X-Forwarded-For` from the right (each
/// proxy appends the address it saw), the first entry that is not a trusted proxy. Entries to its
/// left are the client's own claims. An entry that is not an address ends the walk at the last
/// trusted hop: nothing left of it can be believed.
pub fn forwarded_client(peer: IpAddr, entries: &[&str], trusted_proxies: &[IpAddr]) -> IpAddr {
    let mut client = peer;
    for entry in entries.iter().rev() {
        if !is_trusted(client, trusted_proxies) {
            break;
        }
        match entry.trim().parse::<IpAddr>() {
            Ok(ip) => client = ip,
            Err(_) => break,
        }
    }
    client
}

/// New connections per second per client address.
pub struct ConnectionRate {
    buckets: Mutex<HashMap<ClientAddr, TokenBucket>>,
    /// Connections per second.
    rate: f64,
    /// Bucket depth.
    burst: f64,
}

impl ConnectionRate {
    pub fn new(rate: f64, burst: u32) -> ConnectionRate {
        ConnectionRate {
            buckets: Mutex::new(HashMap::new()),
            rate,
            burst: f64::from(burst),
        }
    }

    /// Takes one connection for `client` at `now`: `Err(wait)` when over its rate.
    pub fn allow(&self, client: ClientAddr, now: Instant) -> Result<(), Duration> {
        let mut buckets = self.buckets.lock().unwrap_or_else(PoisonError::into_inner);
        if buckets.len() >= MAX_TRACKED && !buckets.contains_key(&client) {
            // Forget the clients whose buckets are full again: they are as if new.
            buckets.retain(|_, bucket| !bucket.is_full_at(now));
            if buckets.len() >= MAX_TRACKED {
                return Err(Duration::from_secs(1));
            }
        }
        buckets
            .entry(client)
            .or_insert_with(|| TokenBucket::full(self.burst, self.rate, now))
            .try_take(1.0, now)
    }

    #[cfg(test)]
    fn tracked(&self) -> usize {
        self.buckets
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .len()
    }
}

/// Open sessions per client (address or key), at most `max` each.
pub struct SessionCounts<K: Hash + Eq + Clone + Send + 'static> {
    counts: Arc<Mutex<HashMap<K, usize>>>,
    max: usize,
}

/// One session of a client; dropping it releases the session.
pub struct CountGuard<K: Hash + Eq + Clone + Send + 'static> {
    counts: Arc<Mutex<HashMap<K, usize>>>,
    key: K,
}

impl<K: Hash + Eq + Clone + Send + 'static> SessionCounts<K> {
    pub fn new(max: usize) -> SessionCounts<K> {
        SessionCounts {
            counts: Arc::new(Mutex::new(HashMap::new())),
            max,
        }
    }

    /// One more session for `key`, if it has fewer than the maximum.
    pub fn acquire(&self, key: K) -> Option<CountGuard<K>> {
        let mut counts = self.counts.lock().unwrap_or_else(PoisonError::into_inner);
        let count = counts.entry(key.clone()).or_insert(0);
        if *count >= self.max {
            return None;
        }
        *count += 1;
        Some(CountGuard {
            counts: self.counts.clone(),
            key,
        })
    }

    /// The limit.
    pub fn max(&self) -> usize {
        self.max
    }

    /// Sessions `key` has open.
    #[cfg(test)]
    pub fn open(&self, key: &K) -> usize {
        self.counts
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .get(key)
            .copied()
            .unwrap_or(0)
    }
}

impl<K: Hash + Eq + Clone + Send + 'static> Drop for CountGuard<K> {
    fn drop(&mut self) {
        let mut counts = self.counts.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(count) = counts.get_mut(&self.key) {
            *count = count.saturating_sub(1);
            if *count == 0 {
                counts.remove(&self.key);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn v4(last: u8) -> ClientAddr {
        ClientAddr::of(IpAddr::from([10, 0, 0, last]))
    }

    #[test]
    fn ipv6_clients_are_their_64_prefix_and_mapped_v4_is_v4() {
        let a: IpAddr = "2001:db8:1:2:aaaa::1"
            .parse()
            .unwrap_or(IpAddr::from([0; 4]));
        let b: IpAddr = "2001:db8:1:2:bbbb::9"
            .parse()
            .unwrap_or(IpAddr::from([0; 4]));
        let c: IpAddr = "2001:db8:1:3::1".parse().unwrap_or(IpAddr::from([0; 4]));
        assert_eq!(ClientAddr::of(a), ClientAddr::of(b));
        assert_ne!(ClientAddr::of(a), ClientAddr::of(c));
        assert_eq!(ClientAddr::of(a).to_string(), "2001:db8:1:2::/64");
        let mapped: IpAddr = "::ffff:10.0.0.7".parse().unwrap_or(IpAddr::from([0; 4]));
        assert_eq!(ClientAddr::of(mapped), v4(7));
    }

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap_or(IpAddr::from([0; 4]))
    }

    /// `X-Forwarded-For` counts only from a trusted proxy, and only as far as trusted hops go.
    #[test]
    fn forwarded_addresses_are_believed_from_trusted_proxies_only() {
        let proxies = [ip("10.0.0.5"), ip("10.0.0.6")];
        let client = ip("203.0.113.7");
        // From a trusted proxy: the entry it appended.
        assert_eq!(
            forwarded_client(ip("10.0.0.5"), &["1.2.3.4", "203.0.113.7"], &proxies),
            client
        );
        // Through two trusted proxies.
        assert_eq!(
            forwarded_client(ip("10.0.0.5"), &["203.0.113.7", "10.0.0.6"], &proxies),
            client
        );
        // No header, or garbage where the proxy's entry should be: the proxy itself.
        assert_eq!(
            forwarded_client(ip("10.0.0.5"), &[], &proxies),
            ip("10.0.0.5")
        );
        assert_eq!(
            forwarded_client(ip("10.0.0.5"), &["1.2.3.4", "junk"], &proxies),
            ip("10.0.0.5")
        );
        assert!(
            is_trusted(ip("::ffff:10.0.0.5"), &proxies),
            "v4-mapped peer"
        );
        assert!(!is_trusted(ip("10.0.0.7"), &proxies));
        assert!(!is_trusted(ip("10.0.0.5"), &[]));
    }

    #[test]
    fn connections_beyond_the_burst_wait_for_the_rate() {
        let rate = ConnectionRate::new(10.0, 3);
        let t0 = Instant::now();
        for _ in 0..3 {
            assert_eq!(rate.allow(v4(1), t0), Ok(()));
        }
        let wait = rate.allow(v4(1), t0).err();
        assert_eq!(wait, Some(Duration::from_millis(100)));
        assert_eq!(
            rate.allow(v4(2), t0),
            Ok(()),
            "another client is not affected"
        );
        assert_eq!(rate.allow(v4(1), t0 + Duration::from_millis(100)), Ok(()));
        // Ten per second for a minute is fine.
        for i in 1..600u64 {
            let at = t0 + Duration::from_millis(100 + 100 * i);
            assert_eq!(rate.allow(v4(1), at), Ok(()));
        }
    }

    /// Rates far outside what validation allows still give an answer, never a panic.
    #[test]
    fn extreme_rates_do_not_panic() {
        let t0 = Instant::now();
        for rate in [1e-300, f64::MIN_POSITIVE, 1e300] {
            let limits = ConnectionRate::new(rate, 1);
            assert_eq!(limits.allow(v4(1), t0), Ok(()));
            let _ = limits.allow(v4(1), t0);
        }
    }

    #[test]
    fn the_rate_table_forgets_idle_clients_when_full() {
        let rate = ConnectionRate::new(1_000.0, 1);
        let t0 = Instant::now();
        for i in 0..MAX_TRACKED as u32 {
            let addr = ClientAddr::V4(i.to_be_bytes());
            assert_eq!(rate.allow(addr, t0), Ok(()));
        }
        assert!(
            rate.allow(ClientAddr::V6Prefix([1; 8]), t0).is_err(),
            "full"
        );
        let later = t0 + Duration::from_millis(10);
        assert_eq!(rate.allow(ClientAddr::V6Prefix([1; 8]), later), Ok(()));
        assert_eq!(rate.tracked(), 1, "the idle ones were forgotten");
    }

    #[test]
    fn session_counts_are_bounded_and_released() {
        let counts = SessionCounts::new(2);
        let a = counts.acquire(v4(1));
        let b = counts.acquire(v4(1));
        assert!(a.is_some() && b.is_some());
        assert!(counts.acquire(v4(1)).is_none());
        assert!(counts.acquire(v4(2)).is_some(), "per client");
        drop(a);
        assert_eq!(counts.open(&v4(1)), 1);
        assert!(counts.acquire(v4(1)).is_some());
        drop(b);
        assert_eq!(counts.open(&v4(2)), 0, "released on drop");
    }
}
