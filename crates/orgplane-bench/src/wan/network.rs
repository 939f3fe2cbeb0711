//! The simulated WAN: one-way delays between regions ([`WanDelays`]), the proxies that impose
//! them between each region's router and the other regions' nodes ([`WanNetwork`]), and the
//! three routers themselves ([`WanRouters`]), one per region as in production.
//!
//! A router reaches its own region's nodes directly and every node of another region through a
//! proxy of its own; all proxies between two regions share one [`OneWayDelay`], so the delays
//! can be switched (to zero and back) while connections stay open.

use std::collections::BTreeMap;
use std::fmt;
use std::net::SocketAddr;
use std::str::FromStr;
use std::time::Duration;

use anyhow::Context;
use orgplane_model::Region;
use orgplane_router::RouterConfig;
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::JoinHandle;

use super::proxy::{DelayProxy, OneWayDelay};
use crate::cli::BenchDuration;

/// The longest one-way delay accepted: beyond it a request would not fit the router's default
/// request timeout.
const MAX_ONE_WAY: Duration = Duration::from_secs(2);

/// How long a router may take to stop before it is left behind.
const ROUTER_STOP_TIMEOUT: Duration = Duration::from_secs(15);

/// One-way delays between every two distinct regions. Symmetric: US to EU is EU to US.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WanDelays {
    /// Keyed by the pair in [`Region::ALL`] order (smaller first).
    pairs: BTreeMap<(Region, Region), Duration>,
}

/// Two distinct regions in [`Region::ALL`] order.
fn pair(a: Region, b: Region) -> (Region, Region) {
    (a.min(b), a.max(b))
}

/// Every pair of distinct regions, in [`Region::ALL`] order.
fn all_pairs() -> impl Iterator<Item = (Region, Region)> {
    Region::ALL.into_iter().flat_map(|a| Region::ALL.into_iter().filter(move |b| a < *b).map(move |b| (a, b)))
}

impl WanDelays {
    /// No delay anywhere: the baseline the delayed runs are compared with.
    pub fn zero() -> WanDelays {
        WanDelays { pairs: all_pairs().map(|p| (p, Duration::ZERO)).collect() }
    }

    /// The one-way delay between `a` and `b`; zero within a region.
    pub fn between(&self, a: Region, b: Region) -> Duration {
        if a == b {
            return Duration::ZERO;
        }
        self.pairs.get(&pair(a, b)).copied().unwrap_or_default()
    }

    /// The round trip between `a` and `b`: twice the one-way delay.
    pub fn round_trip(&self, a: Region, b: Region) -> Duration {
        2 * self.between(a, b)
    }

    /// The longest one-way delay.
    pub fn max_one_way(&self) -> Duration {
        self.pairs.values().copied().max().unwrap_or_default()
    }

    /// Each pair as `us-eu` with its one-way delay in milliseconds, for reports.
    pub fn as_millis(&self) -> BTreeMap<String, f64> {
        self.pairs.iter().map(|((a, b), d)| (format!("{a}-{b}"), d.as_secs_f64() * 1000.0)).collect()
    }
}

impl FromStr for WanDelays {
    type Err = String;

    /// Parses `us-eu=40ms,us-apac=75ms,eu-apac=110ms`: every pair of distinct regions once,
    /// in either order.
    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let mut pairs = BTreeMap::new();
        for part in text.split(',').map(str::trim).filter(|p| !p.is_empty()) {
            let (link, delay) = part.split_once('=').ok_or_else(|| format!("{part:?} is not A-B=DELAY"))?;
            let (a, b) = link.split_once('-').ok_or_else(|| format!("{link:?} is not two regions, like us-eu"))?;
            let a: Region = a.parse().map_err(|e| format!("{part:?}: {e}"))?;
            let b: Region = b.parse().map_err(|e| format!("{part:?}: {e}"))?;
            if a == b {
                return Err(format!("{part:?}: a region has no delay to itself"));
            }
            let BenchDuration(delay) = delay.parse().map_err(|e| format!("{part:?}: {e}"))?;
            if delay > MAX_ONE_WAY {
                return Err(format!("{part:?}: a one-way delay above {MAX_ONE_WAY:?} would not fit a request"));
            }
            if pairs.insert(pair(a, b), delay).is_some() {
                return Err(format!("the delay between {a} and {b} is given twice"));
            }
        }
        let missing: Vec<String> =
            all_pairs().filter(|p| !pairs.contains_key(p)).map(|(a, b)| format!("{a}-{b}")).collect();
        if !missing.is_empty() {
            return Err(format!("no delay given for {}", missing.join(", ")));
        }
        Ok(WanDelays { pairs })
    }
}

impl fmt::Display for WanDelays {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let parts: Vec<String> =
            self.pairs.iter().map(|((a, b), d)| format!("{a}-{b}={}ms", d.as_secs_f64() * 1000.0)).collect();
        f.write_str(&parts.join(","))
    }
}

/// The proxies between each region's router and the other regions' nodes.
pub struct WanNetwork {
    /// One delay per pair of regions, shared by every proxy between them.
    links: BTreeMap<(Region, Region), OneWayDelay>,
    /// For each home region, what its router's `regions` setting is.
    router_regions: BTreeMap<Region, BTreeMap<String, Vec<String>>>,
    /// Kept so dropping the network closes them.
    proxies: Vec<DelayProxy>,
}

impl WanNetwork {
    /// Starts a proxy for every (home region, node of another region), with `delays` as the
    /// initial delays. `nodes` lists each region's node endpoints.
    pub async fn start(nodes: &BTreeMap<Region, Vec<String>>, delays: &WanDelays) -> anyhow::Result<WanNetwork> {
        let links: BTreeMap<(Region, Region), OneWayDelay> =
            all_pairs().map(|(a, b)| ((a, b), OneWayDelay::new(delays.between(a, b)))).collect();
        let mut proxies = Vec::new();
        let mut router_regions = BTreeMap::new();
        for home in Region::ALL {
            let mut regions = BTreeMap::new();
            for (region, endpoints) in nodes {
                let reachable = if *region == home {
                    endpoints.clone()
                } else {
                    let mut through = Vec::new();
                    for endpoint in endpoints {
                        let proxy = DelayProxy::start(endpoint.clone(), links[&pair(home, *region)].clone())
                            .await
                            .with_context(|| format!("cannot start the {home} -> {endpoint} proxy"))?;
                        tracing::debug!(%home, %proxy, "wan proxy started");
                        through.push(proxy.local_addr().to_string());
                        proxies.push(proxy);
                    }
                    through
                };
                regions.insert(region.to_string(), reachable);
            }
            router_regions.insert(home, regions);
        }
        Ok(WanNetwork { links, router_regions, proxies })
    }

    /// Sets every link's delay; connections already open take it from their next chunk.
    pub fn set_delays(&self, delays: &WanDelays) {
        for ((a, b), link) in &self.links {
            link.set(delays.between(*a, *b));
        }
    }

    /// The `regions` setting of the router in `home`: its own region's nodes, and the proxies
    /// in front of every other region's nodes.
    pub fn router_regions(&self, home: Region) -> BTreeMap<String, Vec<String>> {
        self.router_regions.get(&home).cloned().unwrap_or_default()
    }

    /// Every proxy (`RUST_LOG=orgplane_bench=debug` logs each as it starts).
    pub fn proxies(&self) -> &[DelayProxy] {
        &self.proxies
    }
}

/// The config of a router on `listen` serving `regions`. Its fan-out deadline is the default
/// plus twice the slowest round trip of `delays`, so the slowest region is waited for rather than
/// reported missing.
fn router_config(listen: SocketAddr, regions: BTreeMap<String, Vec<String>>, delays: &WanDelays) -> RouterConfig {
    let defaults = RouterConfig::default();
    let slowest_round_trip_ms = u64::try_from((2 * delays.max_one_way()).as_millis()).unwrap_or(u64::MAX);
    RouterConfig {
        listen,
        regions,
        fanout_timeout_ms: defaults.fanout_timeout_ms.saturating_add(slowest_round_trip_ms.saturating_mul(2)),
        // Like the embedded dev deployment behind it: the data path is measured, not tokens.
        allow_unauthenticated: true,
        ..defaults
    }
}

/// One router per region, each configured by [`WanNetwork::router_regions`].
pub struct WanRouters {
    routers: BTreeMap<Region, RunningRouter>,
}

struct RunningRouter {
    addr: SocketAddr,
    stop: watch::Sender<bool>,
    task: JoinHandle<()>,
}

impl WanRouters {
    /// Starts the three routers on loopback ports (see [`router_config`]).
    pub async fn start(network: &WanNetwork, delays: &WanDelays) -> anyhow::Result<WanRouters> {
        let mut routers = BTreeMap::new();
        for home in Region::ALL {
            let listener = TcpListener::bind("127.0.0.1:0").await.context("cannot bind a loopback port")?;
            let addr = listener.local_addr()?;
            let config = router_config(addr, network.router_regions(home), delays);
            config.validate().with_context(|| format!("the {home} router's config is invalid"))?;
            let (stop, mut stopped) = watch::channel(false);
            let task = tokio::spawn(async move {
                let shutdown = async move {
                    let _ = stopped.wait_for(|stop| *stop).await;
                };
                if let Err(e) = orgplane_router::run(config, listener, shutdown).await {
                    tracing::error!(%home, error = %e, "the wan router stopped with an error");
                }
            });
            routers.insert(home, RunningRouter { addr, stop, task });
        }
        Ok(WanRouters { routers })
    }

    /// The address of the router in `home`.
    pub fn addr(&self, home: Region) -> anyhow::Result<String> {
        self.routers.get(&home).map(|r| r.addr.to_string()).with_context(|| format!("no router in {home}"))
    }

    /// Stops every router.
    pub async fn shutdown(self) {
        for router in self.routers.values() {
            let _ = router.stop.send(true);
        }
        for (home, router) in self.routers {
            if tokio::time::timeout(ROUTER_STOP_TIMEOUT, router.task).await.is_err() {
                tracing::warn!(%home, "a wan router did not stop within {ROUTER_STOP_TIMEOUT:?}");
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    #[test]
    fn delays_parse_every_pair_once() {
        let delays: WanDelays = "us-eu=40ms, apac-us=75ms,eu-apac=0.11s".parse().unwrap();
        assert_eq!(delays.between(Region::Us, Region::Eu), ms(40));
        assert_eq!(delays.between(Region::Eu, Region::Us), ms(40));
        assert_eq!(delays.between(Region::Us, Region::Apac), ms(75));
        assert_eq!(delays.between(Region::Apac, Region::Eu), ms(110));
        assert_eq!(delays.between(Region::Eu, Region::Eu), Duration::ZERO);
        assert_eq!(delays.round_trip(Region::Eu, Region::Apac), ms(220));
        assert_eq!(delays.max_one_way(), ms(110));
        assert_eq!(delays.to_string(), "us-eu=40ms,us-apac=75ms,eu-apac=110ms");
        assert_eq!(delays.to_string().parse::<WanDelays>(), Ok(delays));

        for bad in [
            "",
            "us-eu=40ms,us-apac=75ms",
            "us-eu=40ms,us-apac=75ms,eu-apac=110ms,eu-us=1ms",
            "us-us=1ms,us-eu=40ms,us-apac=75ms,eu-apac=110ms",
            "us-mars=1ms,us-eu=40ms,us-apac=75ms,eu-apac=110ms",
            "us=1ms,us-eu=40ms,us-apac=75ms,eu-apac=110ms",
            "us-eu=fast,us-apac=75ms,eu-apac=110ms",
            "us-eu=3s,us-apac=75ms,eu-apac=110ms",
        ] {
            assert!(bad.parse::<WanDelays>().is_err(), "{bad:?} parsed");
        }
    }

    #[test]
    fn zero_delays_cover_every_pair() {
        let zero = WanDelays::zero();
        assert_eq!(zero.as_millis().len(), 3);
        assert!(zero.as_millis().values().all(|d| *d == 0.0));
    }

    /// Three fake nodes per region: the proxies dial them only when a connection comes.
    fn fake_nodes() -> BTreeMap<Region, Vec<String>> {
        let mut port = 1000;
        Region::ALL
            .into_iter()
            .map(|region| {
                let nodes = (0..3)
                    .map(|_| {
                        port += 1;
                        format!("127.0.0.1:{port}")
                    })
                    .collect();
                (region, nodes)
            })
            .collect()
    }

    #[tokio::test]
    async fn a_router_reaches_its_own_region_directly_and_the_others_through_delayed_proxies() {
        let nodes = fake_nodes();
        let delays: WanDelays = "us-eu=40ms,us-apac=75ms,eu-apac=110ms".parse().unwrap();
        let network = WanNetwork::start(&nodes, &delays).await.unwrap();
        // Two other regions of three nodes, for each of three routers.
        assert_eq!(network.proxies().len(), 3 * 2 * 3);
        let by_addr: BTreeMap<String, &DelayProxy> =
            network.proxies().iter().map(|p| (p.local_addr().to_string(), p)).collect();
        for home in Region::ALL {
            let regions = network.router_regions(home);
            assert_eq!(regions.len(), 3, "{home}: every region is served");
            for region in Region::ALL {
                let endpoints = &regions[region.as_str()];
                if region == home {
                    assert_eq!(endpoints, &nodes[&region], "{home} reaches its own nodes directly");
                    continue;
                }
                let upstreams: Vec<&str> = endpoints
                    .iter()
                    .map(|e| {
                        let proxy = by_addr.get(e).unwrap_or_else(|| panic!("{home} -> {region}: {e} is no proxy"));
                        assert_eq!(proxy.delay().get(), delays.between(home, region), "{home} -> {region}");
                        proxy.upstream()
                    })
                    .collect();
                assert_eq!(upstreams, nodes[&region], "{home} -> {region}: one proxy per node, in order");
            }
        }
        // Switching the delays reaches every proxy.
        network.set_delays(&WanDelays::zero());
        assert!(network.proxies().iter().all(|p| p.delay().get().is_zero()));
        network.set_delays(&delays);
        assert_eq!(by_addr[&network.router_regions(Region::Eu)["apac"][0]].delay().get(), ms(110));
    }

    #[tokio::test]
    async fn routers_get_their_own_regions_and_a_fanout_deadline_above_the_slowest_round_trip() {
        let nodes = fake_nodes();
        let delays: WanDelays = "us-eu=40ms,us-apac=75ms,eu-apac=1s".parse().unwrap();
        let network = WanNetwork::start(&nodes, &delays).await.unwrap();
        let listen: SocketAddr = "127.0.0.1:0".parse().unwrap();
        let config = router_config(listen, network.router_regions(Region::Apac), &delays);
        assert_eq!(config.regions["apac"], nodes[&Region::Apac]);
        assert_ne!(config.regions["us"], nodes[&Region::Us]);
        // The default 2 s, plus two round trips of the slowest link (2 x 2 s).
        assert_eq!(config.fanout_timeout_ms, 6_000);
        assert!(config.validate().is_ok());
        assert_eq!(router_config(listen, BTreeMap::new(), &WanDelays::zero()).fanout_timeout_ms, 2_000);

        let routers = WanRouters::start(&network, &delays).await.unwrap();
        let addrs: std::collections::BTreeSet<String> = Region::ALL.iter().map(|r| routers.addr(*r).unwrap()).collect();
        assert_eq!(addrs.len(), 3, "one router per region");
        routers.shutdown().await;
    }
}
