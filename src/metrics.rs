//! The Prometheus text endpoint (off by default, loopback only): the kernel's counters, read
//! from the pinned maps at each scrape.

use std::fmt::Write as _;
use std::net::SocketAddr;
use std::sync::Arc;
use std::thread;

use anyhow::{anyhow, bail, Context, Result};
use tracing::warn;

use crate::delivery::Counters;
use crate::pins::{Pinned, Snapshot};

/// Refuses addresses other hosts could reach: the counters describe the node's defences.
pub fn check_addr(addr: SocketAddr) -> Result<()> {
    if !addr.ip().is_loopback() {
        bail!("--metrics-addr {addr}: the metrics endpoint binds only to loopback addresses (127.0.0.1 or [::1])");
    }
    Ok(())
}

/// Serves `/metrics` from a thread of its own until the process exits.
pub fn serve(addr: SocketAddr, delivery: Arc<Counters>) -> Result<()> {
    check_addr(addr)?;
    let pinned = Pinned::open()?.context("no pinned maps to read metrics from")?;
    let server =
        tiny_http::Server::http(addr).map_err(|e| anyhow!("serving metrics on {addr}: {e}"))?;
    thread::Builder::new()
        .name("metrics".into())
        .spawn(move || {
            for request in server.incoming_requests() {
                let response = if request.url() != "/metrics" {
                    tiny_http::Response::from_string("see /metrics\n").with_status_code(404)
                } else {
                    match pinned.snapshot() {
                        Ok(s) => {
                            tiny_http::Response::from_string(render(&s, delivery.undelivered()))
                                .with_header(
                                    tiny_http::Header::from_bytes(
                                        &b"Content-Type"[..],
                                        &b"text/plain; version=0.0.4"[..],
                                    )
                                    .expect("a constant, valid header"),
                                )
                        }
                        Err(e) => {
                            warn!(
                                error = format!("{e:#}"),
                                "cannot read the counters for a scrape"
                            );
                            tiny_http::Response::from_string("cannot read the kernel counters\n")
                                .with_status_code(500)
                        }
                    }
                };
                if let Err(e) = request.respond(response) {
                    warn!(error = %e, "cannot answer a metrics request");
                }
            }
        })
        .context("starting the metrics thread")?;
    Ok(())
}

/// The Prometheus text exposition of a snapshot.
pub fn render(s: &Snapshot, undelivered: u64) -> String {
    let mut out = String::new();
    let counters = s.counters.unwrap_or_default();
    let mut metric = |name: &str, kind: &str, help: &str, value: u64| {
        let _ = write!(
            out,
            "# HELP {name} {help}\n# TYPE {name} {kind}\n{name} {value}\n"
        );
    };
    metric(
        "minerguard_execs_checked_total",
        "counter",
        "Execs the LSM hook checked.",
        counters.checked,
    );
    metric(
        "minerguard_execs_blocked_total",
        "counter",
        "Execs of a listed name denied (enforce mode).",
        counters.blocked,
    );
    metric(
        "minerguard_execs_audited_total",
        "counter",
        "Execs of a listed name allowed and reported (audit mode).",
        counters.audited,
    );
    metric(
        "minerguard_events_lost_total",
        "counter",
        "Events the ring buffer had no room for (the exec was still enforced).",
        counters.lost,
    );
    metric(
        "minerguard_events_undelivered_total",
        "counter",
        "Events the agent read but could not write to stdout (output queue full, write failed, undecodable).",
        undelivered,
    );
    metric(
        "minerguard_policy_names",
        "gauge",
        "Names in the kernel's policy map.",
        s.names as u64,
    );
    metric(
        "minerguard_enforcing",
        "gauge",
        "1 while the LSM program is attached.",
        u64::from(s.enforcing),
    );
    metric(
        "minerguard_enforce_mode",
        "gauge",
        "1 in enforce mode, 0 in audit mode.",
        u64::from(s.mode == Some(crate::policy::Mode::Enforce)),
    );
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::maps::Stats;
    use crate::policy::Mode;

    #[test]
    fn exposition_names_follow_prometheus_conventions() {
        let text = render(
            &Snapshot {
                enforcing: true,
                mode: Some(Mode::Audit),
                names: 39,
                counters: Some(Stats {
                    checked: 10,
                    blocked: 2,
                    audited: 3,
                    lost: 1,
                }),
                agent_pid: Some(7),
            },
            4,
        );
        assert!(text.contains(
            "# TYPE minerguard_execs_blocked_total counter\nminerguard_execs_blocked_total 2\n"
        ));
        assert!(text.contains("minerguard_events_lost_total 1\n"));
        assert!(text.contains("minerguard_events_undelivered_total 4\n"));
        assert!(text.contains("minerguard_policy_names 39\n"));
        assert!(text.contains("minerguard_enforce_mode 0\n"));
        for line in text.lines().filter(|l| !l.starts_with('#')) {
            let name = line.split(' ').next().unwrap();
            assert!(name.starts_with("minerguard_"), "{line}");
            let counter = text.contains(&format!("# TYPE {name} counter"));
            assert_eq!(counter, name.ends_with("_total"), "{line}");
        }
    }

    #[test]
    fn only_loopback_addresses() {
        assert!(check_addr("127.0.0.1:9464".parse().unwrap()).is_ok());
        assert!(check_addr("[::1]:9464".parse().unwrap()).is_ok());
        assert!(check_addr("0.0.0.0:9464".parse().unwrap()).is_err());
        assert!(check_addr("10.1.2.3:9464".parse().unwrap()).is_err());
    }
}
