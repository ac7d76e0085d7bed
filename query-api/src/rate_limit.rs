//! A per-client rate on the public routes (`tower_governor`, a GCRA limiter): an anonymous caller
//! gets `VAXTRAIL_RATE_LIMIT_PER_SECOND` requests a second with bursts of
//! `VAXTRAIL_RATE_LIMIT_BURST`, then 429 problem+json with `Retry-After`.
//!
//! The client is the peer address, or, behind a reverse proxy (`VAXTRAIL_TRUST_FORWARDED_FOR`),
//! the last `X-Forwarded-For` entry: the one the proxy appended, which the client cannot forge
//! (the first entries are whatever the client sent). IPv6 clients are counted per /64, the block
//! one subscriber holds, so rotating addresses inside it does not reset the count. The limiter
//! forgets idle clients every minute, so its memory stays bounded.

use std::{
    net::{IpAddr, Ipv6Addr, SocketAddr},
    sync::Arc,
    time::Duration,
};

use axum::{Router, extract::ConnectInfo, response::IntoResponse};
use clap::Args;
use tower_governor::{GovernorError, GovernorLayer, governor::GovernorConfigBuilder, key_extractor::KeyExtractor};

/// Rate-limit settings.
#[derive(Clone, Debug, Args)]
pub struct RateLimitArgs {
    /// Requests per second one client may make to the public routes (sustained).
    #[arg(
        long = "rate-limit-per-second",
        env = "VAXTRAIL_RATE_LIMIT_PER_SECOND",
        default_value_t = 20
    )]
    pub per_second: u32,
    /// Requests one client may make at once before the rate applies.
    #[arg(long = "rate-limit-burst", env = "VAXTRAIL_RATE_LIMIT_BURST", default_value_t = 60)]
    pub burst: u32,
    /// Take the client from the last `X-Forwarded-For` entry (only behind a proxy that sets it).
    #[arg(
        long = "trust-forwarded-for",
        env = "VAXTRAIL_TRUST_FORWARDED_FOR",
        default_value_t = false,
        action = clap::ArgAction::Set
    )]
    pub trust_forwarded_for: bool,
}

/// The client a request counts against.
#[derive(Clone, Copy, Debug)]
pub struct ClientKey {
    trust_forwarded_for: bool,
}

fn bucket(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) if v6.to_ipv4_mapped().is_none() => {
            let s = v6.segments();
            IpAddr::V6(Ipv6Addr::new(s[0], s[1], s[2], s[3], 0, 0, 0, 0))
        }
        IpAddr::V6(v6) => IpAddr::V4(v6.to_ipv4_mapped().expect("checked")),
        v4 => v4,
    }
}

impl KeyExtractor for ClientKey {
    type Key = IpAddr;

    fn extract<T>(&self, request: &axum::http::Request<T>) -> Result<IpAddr, GovernorError> {
        let forwarded = self
            .trust_forwarded_for
            .then(|| {
                request
                    .headers()
                    .get_all("x-forwarded-for")
                    .iter()
                    .filter_map(|v| v.to_str().ok())
                    .flat_map(|v| v.split(','))
                    .filter_map(|s| s.trim().parse::<IpAddr>().ok())
                    .next_back()
            })
            .flatten();
        forwarded
            .or_else(|| request.extensions().get::<ConnectInfo<SocketAddr>>().map(|c| c.0.ip()))
            .map(bucket)
            .ok_or(GovernorError::UnableToExtractKey)
    }
}

/// `router` with the per-client rate; the limiter's sweep of idle clients ends with `shutdown`.
pub fn limit(router: Router, args: &RateLimitArgs, shutdown: &platform::Shutdown) -> Router {
    let per_second = args.per_second.max(1);
    let config = GovernorConfigBuilder::default()
        .period(Duration::from_nanos((1_000_000_000 / u64::from(per_second)).max(1)))
        .burst_size(args.burst.max(1))
        .key_extractor(ClientKey {
            trust_forwarded_for: args.trust_forwarded_for,
        })
        .finish()
        .expect("a positive period and burst");
    let config = Arc::new(config);
    let limiter = config.limiter().clone();
    let shutdown = shutdown.clone();
    tokio::spawn(async move {
        let mut every = tokio::time::interval(Duration::from_secs(60));
        loop {
            tokio::select! {
                () = shutdown.cancelled() => return,
                _ = every.tick() => {}
            }
            limiter.retain_recent();
            metrics::gauge!("vaxtrail_query_rate_limited_clients").set(limiter.len() as f64);
        }
    });
    router.layer(GovernorLayer::new(config).error_handler(|error| {
        match error {
            GovernorError::TooManyRequests { wait_time, .. } => {
                platform::problem::Problem::too_many_requests(u32::try_from(wait_time).unwrap_or(u32::MAX))
                    .into_response()
            }
            _ => platform::problem::Problem::new(
                axum::http::StatusCode::INTERNAL_SERVER_ERROR,
                "client-unknown",
                "The client's address could not be read",
            )
            .into_response(),
        }
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ipv6_clients_count_per_64_and_mapped_v4_as_v4() {
        let a: IpAddr = "2001:db8:1:2:aaaa::1".parse().unwrap();
        let b: IpAddr = "2001:db8:1:2:bbbb::9".parse().unwrap();
        assert_eq!(bucket(a), bucket(b));
        assert_ne!(bucket(a), bucket("2001:db8:1:3::1".parse().unwrap()));
        assert_eq!(
            bucket("::ffff:10.0.0.1".parse().unwrap()),
            "10.0.0.1".parse::<IpAddr>().unwrap()
        );
    }

    #[test]
    fn behind_a_proxy_the_entry_it_appended_counts_not_what_the_client_sent() {
        let request = axum::http::Request::builder()
            .header("x-forwarded-for", "1.2.3.4, 5.6.7.8")
            .body(())
            .unwrap();
        let trusted = ClientKey {
            trust_forwarded_for: true,
        };
        assert_eq!(trusted.extract(&request).unwrap(), "5.6.7.8".parse::<IpAddr>().unwrap());
        let untrusted = ClientKey {
            trust_forwarded_for: false,
        };
        assert!(
            untrusted.extract(&request).is_err(),
            "no peer address, no forwarded trust"
        );
    }
}
