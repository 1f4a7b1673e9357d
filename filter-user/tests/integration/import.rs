//! FlowSpec routes in, end to end: BIRD 2 in the router's namespace
//! announces FlowSpec routes to the victim's GoBGP; `filterctl serve` on
//! the victim imports them (`[upstream.import]`). A valid route becomes a
//! `flowspec-...` rule that drops a spoofed flood and counts it in `stats`;
//! withdrawn in BIRD, the rule goes within seconds; routes outside the
//! configured destinations, shorter than the minimum, without a port, or
//! without an allowed community are refused with their reason in the log.
//! Needs root.

use crate::common;

use std::{
    net::{IpAddr, Ipv4Addr, SocketAddr},
    time::Duration,
};

use common::{
    cli::{TempDir, command, ok, run},
    lab::{free_port, poll},
};
use filter_testkit::{
    bgp::{Bird, Daemon, gobgpd},
    net::{Router, TestNet, VICTIM_V4, send_udp},
};
use serde_json::Value;

/// traffic-rate 0 (discard) and the community the victim accepts.
const DISCARD: &str = "bgp_ext_community.add((generic, 0x80060000, 0x0));";
const ALLOWED: &str = "bgp_community.add((65000, 666));";

/// One static protocol per route, so that `birdc disable NAME` withdraws it.
fn statics() -> String {
    let routes = [
        // Valid: the one to enforce.
        ("fs_good", "dst 192.0.2.1/32; proto 17; sport 4500;", true),
        (
            "fs_outside",
            "dst 203.0.113.1/32; proto 17; sport 4501;",
            true,
        ),
        ("fs_short", "dst 192.0.2.0/23; proto 17; sport 4502;", true),
        ("fs_portless", "dst 192.0.2.1/32; proto 17;", true),
        (
            "fs_stranger",
            "dst 192.0.2.1/32; proto 17; sport 4503;",
            false,
        ),
    ];
    routes
        .iter()
        .map(|(name, nlri, allowed)| {
            let community = if *allowed { ALLOWED } else { "" };
            format!(
                "protocol static {name} {{\n  flow4 {{ table flowtab4; }};\n  route flow4 {{ {nlri} }} {{ {DISCARD} {community} }};\n}}\n"
            )
        })
        .collect()
}

fn rules(api_port: u16) -> String {
    format!(
        r#"
[[rule]]
name = "ssdp-reflection"
protocol = "udp"
src_port = 1900
action = "drop"

[upstream]
speaker = "gobgp"
api = "127.0.0.1:{api_port}"

[upstream.import]
destinations = ["192.0.2.0/24"]
min_prefix_v4 = 24
communities = ["65000:666"]
max_routes = 10
interval = "1s"
"#
    )
}

/// `filterctl stats --json` packets of each rule.
fn rule_packets(net: &TestNet) -> Vec<(String, u64)> {
    let out = ok(run(net, &["stats", "--iface", &net.victim_if, "--json"]));
    let v: Value = serde_json::from_str(&out).expect("stats --json is JSON");
    v["interfaces"][0]["rules"]
        .as_array()
        .expect("rules")
        .iter()
        .map(|r| {
            (
                r["name"].as_str().unwrap_or_default().to_string(),
                r["packets"].as_u64().unwrap_or(0),
            )
        })
        .collect()
}

fn packets_of(net: &TestNet, rule: &str) -> Option<u64> {
    rule_packets(net)
        .into_iter()
        .find(|(n, _)| n == rule)
        .map(|(_, p)| p)
}

const RULE: &str = "flowspec-udp-s4500";

/// Removes serve's upstream state file, which a serve killed by a failed
/// test leaves behind.
struct StateFiles(std::path::PathBuf);

impl Drop for StateFiles {
    fn drop(&mut self) {
        let root = filterctl::state::PinRoot::new(&self.0);
        let _ = std::fs::remove_dir_all(filterctl::upstream::state::state_dir(&root));
    }
}

#[test]
fn flowspec_routes_from_a_peer_are_enforced_and_the_wrong_ones_refused() {
    common::require_bpf();
    let net = TestNet::new("imp");
    let net = net.expect("test hosts");
    let _state = StateFiles(net.pin_root.clone());
    let router: Router = net.add_router().expect("router host");
    let files = TempDir::new("import");
    let api_port = free_port(&net);
    let _gobgp: Daemon = gobgpd(&net, files.path(), api_port).expect("start gobgpd");
    let mut bird =
        Bird::start_announcing(&router.ns, files.path(), &statics()).expect("start bird");
    poll("BGP session between GoBGP and BIRD", 30, || {
        bird.daemon.assert_running();
        bird.established()
    });
    let path = files.write("import.toml", &rules(api_port));
    ok(run(
        &net,
        &["load", "--iface", &net.victim_if, "--rules", &path],
    ));
    let listen = format!("127.0.0.1:{}", free_port(&net));
    let mut cmd = command(
        &net,
        &[
            "serve",
            "--listen",
            &listen,
            "--iface",
            &net.victim_if,
            "--rules",
            &path,
        ],
    );
    cmd.env("RUST_LOG", "info");
    let mut serve =
        Daemon::spawn("filterctl serve", cmd, files.path().join("serve.log")).expect("serve");

    poll("the imported rule in stats", 20, || {
        serve.assert_running();
        packets_of(&net, RULE).is_some()
    });
    let status = ok(run(&net, &["status", "--json"]));
    assert!(
        status.contains("flowspec_imports") && status.contains(RULE),
        "{status}"
    );
    assert!(
        !std::fs::read_to_string(&path)
            .unwrap()
            .contains("flowspec-"),
        "the rule file is never written"
    );

    // A spoofed flood from port 4500, which no file rule drops.
    let before = packets_of(&net, RULE).unwrap_or(0);
    TestNet::in_ns(&net.attacker_ns, || {
        let from = SocketAddr::new(IpAddr::V4(Ipv4Addr::new(198, 51, 100, 10)), 4500);
        let to = SocketAddr::new(IpAddr::V4(VICTIM_V4), 5000);
        send_udp(from, to, b"spoofed flood", 200).expect("send the flood");
    })
    .expect("enter the attacker namespace");
    poll("the flood counted under the imported rule", 10, || {
        packets_of(&net, RULE).unwrap_or(0) >= before + 150
    });

    let log = serve.log();
    for (route, reason) in [
        ("203.0.113.1/32", "outside the configured destinations"),
        ("192.0.2.0/23", "shorter than /24"),
        (
            "[destination: 192.0.2.1/32][protocol: ==udp]",
            "no port or packet-length",
        ),
        ("==4503", "neither is in peers nor communities"),
    ] {
        assert!(
            log.lines()
                .any(|l| l.contains("refused") && l.contains(route) && l.contains(reason)),
            "no refusal of {route} for {reason:?} in:\n{log}"
        );
    }
    let names: Vec<String> = rule_packets(&net).into_iter().map(|(n, _)| n).collect();
    assert_eq!(
        names.iter().filter(|n| n.starts_with("flowspec-")).count(),
        1,
        "{names:?}"
    );

    bird.birdc(&["disable", "fs_good"]);
    let took = poll("the rule removed after the withdrawal", 15, || {
        packets_of(&net, RULE).is_none()
    });
    assert!(took < Duration::from_secs(15));

    // SAFETY: a signal to our own child, not yet reaped.
    assert_eq!(unsafe { libc::kill(serve.pid() as i32, libc::SIGTERM) }, 0);
    let st = serve.wait();
    assert!(st.success(), "serve exited with {st}:\n{}", serve.log());
}
