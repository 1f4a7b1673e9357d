//! `cargo xtask bench`: what the filter costs, measured side by side with
//! floors in the same run (these machines are shared and noisy, so figures
//! are reported as differences and ratios against a baseline of the same
//! run, never alone).
//!
//! 1. In-kernel ns per frame (BPF_PROG_TEST_RUN, large repeat counts, median
//!    and spread of several runs) per frame kind, against XDP_DROP and
//!    XDP_PASS floor programs; then the reply guard: a guarded reflection
//!    frame, a solicited reply and an unrelated benign frame, guard on and
//!    off, against the XDP_DROP floor. Then (1c) the surge counters (UDP by source
//!    port): their cost per frame, as floor programs that only count and
//!    drop (a shared mmapable array with atomic adds, as the filter does,
//!    and per-CPU arrays), and the cost of reading all 65536 each way. Then
//!    (1e) a server's port: requests and reflections aimed at a bound
//!    port 53, where the request shape check decides.
//! 2. A spoofed flood: frames from a million distinct sources through the
//!    limiter, against the same number from one source.
//! 3. Rules at scale: 100,000 deny and 10,000 allow prefixes, scattered
//!    like published blocklists, and 1,000 rules, against the default file,
//!    for every frame kind.
//! 4. Control plane: load and reload with 100,000 prefixes, reading all
//!    counters.
//! 5. On a live interface: load and reload with 100,000 prefixes.
//! 6. On a veth pair between two test namespaces, a flood from the
//!    kernel's live frames (or from AF_PACKET sockets, where the kernel
//!    refuses those or BENCH_NO_LIVE_FRAMES=1 asks): drop rates of the
//!    filter, plain XDP_DROP, nftables, no filter, and the kernel's own run
//!    time per packet of the filter and of XDP_DROP.
//! 7. `filterctl capture`: the drop and pass paths with no capture running,
//!    with one running that samples the frame out, and with one copying
//!    every frame (until the ring is full, as under a flood).
//! 8. Kernel memory per interface, map by map, at this host's CPUs and at
//!    2, 64 and 192 (computed from the map definitions, the figure here
//!    beside the kernel's own count).
//!
//! Section 1 also reports the program's size as the kernel holds it
//! (translated instructions, JIT bytes), so that growth shows when it
//! happens.
//!
//! Each section stands alone: one the kernel cannot run (a refused feature,
//! a missing tool) prints why, is listed at the end and in the JSON
//! output under "skipped", and the others still run.

#[path = "bench/generator.rs"]
mod generator;
#[path = "bench/memory.rs"]
mod memory;

use std::{
    fmt::Write as _,
    path::{Path, PathBuf},
    time::{Duration, Instant},
};

use anyhow::{Context as _, anyhow};
use std::process::Command;

use aya::{
    Ebpf, EbpfLoader,
    programs::{ProgramInfo, TestRun as _, TestRunOptions, Xdp},
    sys::{Stats, enable_stats},
};
use filter_testkit::{
    frames::{
        ETH_IPV4, ETH_IPV6, Frag, SRC4, TCP, TPID_8021Q, UDP, dns_query, ether, ext_options, ipv4,
        ipv6, ntp_monlist_reply, tcp_syn, udp, with_src4,
    },
    net::TestNet,
};
use filterctl::{filter::simulator::Simulator, rules};
use generator::{Choice, Generator};
use serde_json::{Value, json};

struct Opts {
    quick: bool,
    json: Option<PathBuf>,
    /// Run only this section (per-frame, flood, scale, control, veth,
    /// capture, memory).
    only: Option<String>,
    /// Another build's eBPF object: measure this build against it, only.
    against: Option<PathBuf>,
    /// Section 6's generator (`--generator auto|live|afpacket`, not in the
    /// usage line: it is for trying the fallback where live frames work).
    generator: Choice,
}

impl Opts {
    fn runs(&self, section: &str) -> bool {
        self.against.is_none() && self.only.as_deref().is_none_or(|o| o == section)
    }

    /// Repeats per kernel-timed run, and runs per figure.
    fn repeat_runs(&self) -> (u32, usize) {
        if self.quick {
            (200_000, 3)
        } else {
            (2_000_000, 5)
        }
    }
}

fn opts() -> anyhow::Result<Opts> {
    let mut o = Opts {
        quick: false,
        json: None,
        only: None,
        against: None,
        generator: Choice::from_env(),
    };
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        match a.as_str() {
            "--quick" => o.quick = true,
            "--json" => o.json = Some(args.next().context("--json needs a file")?.into()),
            "--only" => o.only = Some(args.next().context("--only needs a section")?),
            "--generator" => {
                o.generator = Choice::parse(&args.next().context("--generator needs a name")?)?
            }
            "--against" => {
                o.against = Some(
                    args.next()
                        .context("--against needs an object file")?
                        .into(),
                )
            }
            other => anyhow::bail!(
                "unknown argument {other}: use --quick, --json FILE, --only SECTION, --against OBJECT"
            ),
        }
    }
    Ok(o)
}

// ---- frames ---------------------------------------------------------------

fn frame_kinds() -> Vec<(&'static str, Vec<u8>)> {
    let ntp = udp(123, 40000, &ntp_monlist_reply());
    let ssdp = udp(
        1900,
        40000,
        b"HTTP/1.1 200 OK\r\nST: upnp:rootdevice\r\n\r\n",
    );
    let dns = udp(53000, 53, &dns_query());
    let v4 = |l4: &[u8]| ether(&[], ETH_IPV4, &ipv4(UDP, &[], Frag::default(), l4));
    let first = Frag {
        more: true,
        offset: 0,
        id: 0x1234,
    };
    let later = Frag {
        more: false,
        offset: 25,
        id: 0x1234,
    };
    vec![
        ("ntp_ipv4", v4(&ntp)),
        ("ssdp_ipv4", v4(&ssdp)),
        ("ntp_ipv6", ether(&[], ETH_IPV6, &ipv6(UDP, &[], &ntp))),
        (
            "ntp_ipv6_ext",
            ether(
                &[],
                ETH_IPV6,
                &ipv6(UDP, &[(0, ext_options()), (60, ext_options())], &ntp),
            ),
        ),
        (
            "ntp_vlan",
            ether(
                &[TPID_8021Q],
                ETH_IPV4,
                &ipv4(UDP, &[], Frag::default(), &ntp),
            ),
        ),
        (
            "ntp_ipv4_options",
            ether(&[], ETH_IPV4, &ipv4(UDP, &[1; 12], Frag::default(), &ntp)),
        ),
        (
            "ntp_first_fragment",
            ether(&[], ETH_IPV4, &ipv4(UDP, &[], first, &ntp[..200])),
        ),
        (
            "later_fragment",
            ether(&[], ETH_IPV4, &ipv4(UDP, &[], later, &[0; 200])),
        ),
        ("dns_query_benign", v4(&dns)),
        (
            "tcp_syn_benign",
            ether(
                &[],
                ETH_IPV4,
                &ipv4(TCP, &[], Frag::default(), &tcp_syn(50000, 80)),
            ),
        ),
        ("truncated", v4(&ntp)[..40].to_vec()),
    ]
}

// ---- measuring ------------------------------------------------------------

/// Median and spread (min, max) of `runs` kernel-timed runs of `repeat`.
fn measure(prog: &Xdp, frame: &[u8], repeat: u32, runs: usize) -> anyhow::Result<(f64, f64, f64)> {
    let mut v = Vec::with_capacity(runs);
    for _ in 0..runs {
        let r = prog
            .test_run(TestRunOptions {
                data_in: Some(frame),
                repeat,
                ..TestRunOptions::new()
            })
            .context("BPF_PROG_TEST_RUN")?;
        v.push(r.duration.as_nanos() as f64);
    }
    v.sort_by(|a, b| a.total_cmp(b));
    Ok((v[v.len() / 2], v[0], v[v.len() - 1]))
}

fn program<'a>(ebpf: &'a Ebpf, name: &str) -> anyhow::Result<&'a Xdp> {
    Ok(ebpf
        .program(name)
        .ok_or_else(|| anyhow!("no program {name}"))?
        .try_into()?)
}

fn load_floors() -> anyhow::Result<Ebpf> {
    let mut floors = Ebpf::load(filter_testkit::FLOORS_OBJECT)?;
    for name in ["drop_all", "pass_all"] {
        let p: &mut Xdp = floors
            .program_mut(name)
            .ok_or_else(|| anyhow!("no {name}"))?
            .try_into()?;
        p.load()?;
    }
    Ok(floors)
}

fn default_rules() -> String {
    std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../rules/default.toml"
    ))
    .expect("rules/default.toml")
}

/// The default profile with a per-source limit far above what the test
/// loop can send, so benign frames take the whole pass path every time.
fn bench_rules() -> String {
    default_rules()
        .replace("pps = 20000", "pps = 100000000")
        .replace("bps = \"200Mbit\"", "bps = \"10Tbit\"")
}

fn filter_prog(runner: &Simulator) -> anyhow::Result<&Xdp> {
    runner.program()
}

struct Report {
    text: String,
    json: serde_json::Map<String, Value>,
    /// Sections measured.
    measured: usize,
    /// Sections (or parts of one) not measured, and why.
    skipped: Vec<(String, String)>,
    /// Sections measured another way than usual, and why.
    fallbacks: Vec<(String, String)>,
}

impl Report {
    /// Runs one section. Its error becomes a line of the report and an
    /// entry in `skipped`, in place of whatever it had written, and the run
    /// goes on: a kernel that refuses one feature costs one section.
    fn section<T>(
        &mut self,
        name: &str,
        f: impl FnOnce(&mut Report) -> anyhow::Result<T>,
    ) -> Option<T> {
        let text = self.text.len();
        let keys: Vec<String> = self.json.keys().cloned().collect();
        let (skipped, fallbacks) = (self.skipped.len(), self.fallbacks.len());
        match f(self) {
            Ok(v) => {
                self.measured += 1;
                Some(v)
            }
            Err(e) => {
                // All of the section or none of it.
                self.text.truncate(text);
                self.json.retain(|k, _| keys.contains(k));
                self.skipped.truncate(skipped);
                self.fallbacks.truncate(fallbacks);
                self.skip(name, &e);
                None
            }
        }
    }

    /// Reports `section` as not measured, because of `e`.
    fn skip(&mut self, section: &str, e: &anyhow::Error) {
        let why = self.not_measured(section, e);
        let _ = writeln!(self.text, "\n{section}: not measured: {why}");
    }

    /// Records `what` as not measured; returns why, in one short line (the
    /// JSON output keeps the whole error: a verifier log can be long).
    fn not_measured(&mut self, what: &str, e: &anyhow::Error) -> String {
        let full = format!("{e:#}");
        let why = short(&full);
        self.skipped.push((what.into(), full));
        why
    }

    /// One line: what was not measured and why, and what was measured
    /// another way.
    fn summary(&self) -> String {
        let list = |v: &[(String, String)]| {
            v.iter()
                .map(|(what, why)| format!("{what} ({})", short(why)))
                .collect::<Vec<_>>()
                .join("; ")
        };
        let mut line = if self.skipped.is_empty() {
            "summary: every section measured".to_string()
        } else {
            format!("summary: not measured: {}", list(&self.skipped))
        };
        if !self.fallbacks.is_empty() {
            let _ = write!(line, "; measured differently: {}", list(&self.fallbacks));
        }
        line
    }
}

/// The first line of `why`, at most 300 characters of it.
fn short(why: &str) -> String {
    let line = why.lines().next().unwrap_or_default();
    match line.char_indices().nth(300) {
        Some((at, _)) => format!("{}...", &line[..at]),
        None if line.len() < why.len() => format!("{line}..."),
        None => line.into(),
    }
}

/// Loads of the filter that the rounds of sections 1 and 3 go round.
const INSTANCES: usize = 4;

/// The filter with `set`, loaded [`INSTANCES`] times over: the JIT places
/// each image at a random offset, and the same program measured 1 ns apart
/// between two loads here (code alignment).
fn loads(set: &rules::RuleSet) -> anyhow::Result<Vec<Simulator>> {
    (0..INSTANCES).map(|_| Simulator::new(set)).collect()
}

fn per_frame(report: &mut Report, o: &Opts) -> anyhow::Result<(f64, f64)> {
    let (repeat, runs) = o.repeat_runs();
    let floors = load_floors()?;
    let set = rules::parse("bench.toml", &bench_rules()).map_err(|e| anyhow!("{e}"))?;
    let runners = loads(&set)?;
    let runner = &runners[0];
    size(report, &filter_prog(runner)?.info()?);
    let kinds = frame_kinds();
    let (drop_floor, dmin, dmax) =
        measure(program(&floors, "drop_all")?, &kinds[0].1, repeat, runs)?;
    let (pass_floor, pmin, pmax) =
        measure(program(&floors, "pass_all")?, &kinds[0].1, repeat, runs)?;
    // Odd, for a middle value.
    let rounds = runs * INSTANCES + 1;
    let _ = writeln!(
        report.text,
        "\n1. in-kernel cost per frame (BPF_PROG_TEST_RUN, {repeat} repeats, median of {runs})\n   floor XDP_DROP {drop_floor:.1} ns [{dmin:.1}-{dmax:.1}], floor XDP_PASS {pass_floor:.1} ns [{pmin:.1}-{pmax:.1}]\n   each frame interleaved with the drop floor, {rounds} rounds over {INSTANCES} loads of the filter: median of the differences, their interquartile mean\n   (the kernel times in whole ns: the mean of the middle half resolves less) and [spread]\n   {:<20} {:>8} {:>17} {:>12} {:>6} {:>9}",
        "frame", "ns", "spread", "- drop floor", "iqm", "x floor"
    );
    let mut rows = Vec::new();
    for (name, frame) in &kinds {
        let (med, lo, hi) = measure(filter_prog(runner)?, frame, repeat, runs)?;
        // The floor and the frame one after the other, round by round: a
        // neighbour's noise then hits both sides of a difference.
        let mut diffs = Vec::with_capacity(rounds);
        for round in 0..rounds {
            let floor = measure(program(&floors, "drop_all")?, frame, repeat, 1)?.0;
            let filter = filter_prog(&runners[round % INSTANCES])?;
            diffs.push(measure(filter, frame, repeat, 1)?.0 - floor);
        }
        diffs.sort_by(|a, b| a.total_cmp(b));
        let (d, dlo, dhi) = (diffs[rounds / 2], diffs[0], diffs[rounds - 1]);
        let iqm = interquartile_mean(&diffs);
        let _ = writeln!(
            report.text,
            "   {name:<20} {med:>8.1} {:>17} {:>+12.1} {iqm:>+6.1} {:>9.2}   [{dlo:+.0} .. {dhi:+.0}]",
            format!("[{lo:.1}-{hi:.1}]"),
            d,
            med / drop_floor
        );
        rows.push(json!({"frame": name, "ns": med, "min": lo, "max": hi, "above_drop_floor_ns": d, "above_drop_floor_iqm_ns": iqm, "above_drop_floor_min": dlo, "above_drop_floor_max": dhi, "ratio_to_drop_floor": med / drop_floor}));
    }
    report.json.insert(
        "per_frame".into(),
        json!({"repeat": repeat, "runs": runs, "rounds": rounds, "instances": INSTANCES, "drop_floor_ns": drop_floor, "pass_floor_ns": pass_floor, "frames": rows}),
    );
    Ok((drop_floor, pass_floor))
}

/// A reply from SRC4:`sport` to DST4:`dport`, and the request it answers.
fn reply_and_request(sport: u16, dport: u16, payload: &[u8]) -> (Vec<u8>, Vec<u8>) {
    let reply = ether(
        &[],
        ETH_IPV4,
        &ipv4(UDP, &[], Frag::default(), &udp(sport, dport, payload)),
    );
    let mut ip = ipv4(UDP, &[], Frag::default(), &udp(dport, sport, &dns_query()));
    let (src, dst) = (ip[12..16].to_vec(), ip[16..20].to_vec());
    ip[12..16].copy_from_slice(&dst);
    ip[16..20].copy_from_slice(&src);
    (reply, ether(&[], ETH_IPV4, &ip))
}

/// What the reply guard adds: three frames through the default profile with
/// the guard on and with it off, over the XDP_DROP floor of the same run.
fn reply_guard_cost(report: &mut Report, o: &Opts, drop_floor: f64) -> anyhow::Result<()> {
    let (repeat, runs) = o.repeat_runs();
    // A budget no run can spend, so the solicited reply stays solicited.
    let on = format!(
        "{}\n[reply_guard.port.53]\npackets = 4000000000\n",
        bench_rules()
    );
    let off = on.replace("[reply_guard]", "[reply_guard]\nenabled = false");
    let mut memcached = b"VALUE a 0 1400\r\n".to_vec();
    memcached.resize(1400, b'x');
    // A flood sprays the host's ports: most have no request open.
    let (reflection, _) = reply_and_request(11211, 40000, &memcached);
    let (at_open_port, _) = reply_and_request(11211, 40053, &memcached);
    let (answer, request) = reply_and_request(53, 40053, &dns_query());
    let benign = ether(
        &[],
        ETH_IPV4,
        &ipv4(UDP, &[], Frag::default(), &udp(53000, 53, &dns_query())),
    );
    let frames = [
        ("guarded_reflection", &reflection),
        ("reflection_open_port", &at_open_port),
        ("solicited_reply", &answer),
        ("unrelated_benign", &benign),
    ];
    let _ = writeln!(
        report.text,
        "\n1b. reply guard (ns per frame over the XDP_DROP floor {drop_floor:.1} ns)\n   {:<20} {:>10} {:>10} {:>8}",
        "frame", "guard on", "guard off", "on-off"
    );
    let mut rows = Vec::new();
    let sims = [on, off].map(|text| -> anyhow::Result<Simulator> {
        let set = rules::parse("bench.toml", &text).map_err(|e| anyhow!("{e}"))?;
        let sim = Simulator::new(&set)?;
        sim.record_request(&request)?;
        Ok(sim)
    });
    let [on, off] = sims;
    let (on, off) = (on?, off?);
    for (name, frame) in frames {
        let (a, _, _) = measure(filter_prog(&on)?, frame, repeat, runs)?;
        let (b, _, _) = measure(filter_prog(&off)?, frame, repeat, runs)?;
        let (a, b) = (a - drop_floor, b - drop_floor);
        let _ = writeln!(
            report.text,
            "   {name:<20} {a:>+10.1} {b:>+10.1} {:>+8.1}",
            a - b
        );
        rows.push(
            json!({"frame": name, "guard_on_above_floor_ns": a, "guard_off_above_floor_ns": b}),
        );
    }
    report.json.insert(
        "reply_guard".into(),
        json!({"drop_floor_ns": drop_floor, "frames": rows}),
    );
    Ok(())
}

/// What the request shape check costs where the host serves: frames from
/// a guarded port to port 53, with a DNS server's socket bound there (in a
/// network namespace of the bench's own, where nothing else is), against
/// the same frames to a port where nothing serves (the early verdict's
/// reflection drop). The reflection fast path never sees a served port:
/// its figure is section 1's.
fn served_port_cost(report: &mut Report, o: &Opts, drop_floor: f64) -> anyhow::Result<()> {
    let (repeat, runs) = o.repeat_runs();
    let mut answer = dns_query();
    answer[2] |= 0x80; // QR: an answer
    answer[7] = 1; // ANCOUNT
    let mut memcached = b"VALUE a 0 1400\r\n".to_vec();
    memcached.resize(1400, b'x');
    let v4 = |sport, dport, payload: &[u8]| {
        ether(
            &[],
            ETH_IPV4,
            &ipv4(UDP, &[], Frag::default(), &udp(sport, dport, payload)),
        )
    };
    let frames = [
        ("query_53_to_53", v4(53, 53, &dns_query())),
        ("answer_53_to_53", v4(53, 53, &answer)),
        ("memcached_to_53", v4(11211, 53, &memcached)),
        ("answer_to_unserved", v4(53, 40000, &answer)),
    ];
    let set = rules::parse("bench.toml", &bench_rules()).map_err(|e| anyhow!("{e}"))?;
    let rows = std::thread::scope(|s| {
        s.spawn(|| -> anyhow::Result<Vec<(&str, f64, String)>> {
            // SAFETY: unshare of this thread's network namespace only.
            if unsafe { libc::unshare(libc::CLONE_NEWNET) } != 0 {
                anyhow::bail!("unshare(CLONE_NEWNET): {}", std::io::Error::last_os_error());
            }
            let server = std::net::UdpSocket::bind("0.0.0.0:53")
                .context("cannot bind a DNS server's socket in the bench's namespace")?;
            let sim = Simulator::new(&set)?;
            let prog = filter_prog(&sim)?;
            let row = |name, frame: &[u8]| -> anyhow::Result<(&str, f64, String)> {
                let verdict = verdict(&sim, frame)?;
                let (ns, _, _) = measure(prog, frame, repeat, runs)?;
                Ok((name, ns - drop_floor, verdict))
            };
            let mut rows = frames
                .iter()
                .map(|(name, frame)| row(name, frame))
                .collect::<anyhow::Result<Vec<_>>>()?;
            // The same answer once nothing serves 53: the socket lookup
            // without the shape check.
            drop(server);
            rows.push(row("answer_53, no server", &frames[1].1)?);
            Ok(rows)
        })
        .join()
        .map_err(|_| anyhow!("the served-port thread panicked"))?
    })?;
    let _ = writeln!(
        report.text,
        "\n1e. a server's port (DNS on 53; ns per frame over the XDP_DROP floor {drop_floor:.1} ns)\n   {:<20} {:>10}  verdict",
        "frame", "ns"
    );
    let mut json_rows = Vec::new();
    for (name, ns, what) in rows {
        let _ = writeln!(report.text, "   {name:<20} {ns:>+10.1}  {what}");
        json_rows.push(json!({"frame": name, "above_drop_floor_ns": ns, "verdict": what}));
    }
    report.json.insert(
        "served_port".into(),
        json!({"drop_floor_ns": drop_floor, "frames": json_rows}),
    );
    Ok(())
}

/// What the filter does with `frame`, as its counters tell: the action and
/// the reason whose count one run moved.
fn verdict(sim: &Simulator, frame: &[u8]) -> anyhow::Result<String> {
    let before = sim.reasons()?;
    let action = match sim.run(frame)? {
        1 => "drop",
        2 => "pass",
        other => return Ok(format!("action {other}")),
    };
    let moved = sim
        .reasons()?
        .iter()
        .zip(&before)
        .position(|(after, before)| after.packets > before.packets)
        .and_then(|i| filter_common::Reason::ALL.get(i));
    Ok(match moved {
        Some(reason) if reason.name() != action => format!("{action} ({})", reason.name()),
        _ => action.to_string(),
    })
}

/// NTP reflection once something is banned: from another source (the ban
/// hints keep the early verdict on) and from the banned source (the full
/// path, to its ban).
fn with_a_ban(report: &mut Report, o: &Opts, drop_floor: f64) -> anyhow::Result<()> {
    let (repeat, runs) = o.repeat_runs();
    let text = default_rules()
        .replace("\npps = 20000", "\npps = 10\nburst_packets = 2")
        .replace("after = \"10s\"", "after = \"20ms\"");
    let sim = Simulator::new(&rules::parse("ban.toml", &text).map_err(|e| anyhow!("{e}"))?)?;
    let banned = [198, 51, 100, 9];
    let dns = with_src4(
        ether(
            &[],
            ETH_IPV4,
            &ipv4(UDP, &[], Frag::default(), &udp(53000, 53, &dns_query())),
        ),
        banned,
    );
    for _ in 0..2 {
        for _ in 0..50 {
            sim.run(&dns)?;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    anyhow::ensure!(
        sim.reason(filter_common::Reason::BanDrop)?.packets > 0,
        "the bench's source was not banned"
    );
    let ntp = &frame_kinds()[0].1;
    let (other, _, _) = measure(filter_prog(&sim)?, ntp, repeat, runs)?;
    let (own, _, _) = measure(
        filter_prog(&sim)?,
        &with_src4(ntp.clone(), banned),
        repeat,
        runs,
    )?;
    let _ = writeln!(
        report.text,
        "\n1d. NTP reflection while a source is banned (ns over the XDP_DROP floor)\n   from another source (ban hints: early verdict) {:+.1}, from the banned source (full path) {:+.1}",
        other - drop_floor,
        own - drop_floor
    );
    report.json.insert(
        "with_a_ban".into(),
        json!({"other_source_above_floor_ns": other - drop_floor, "banned_source_above_floor_ns": own - drop_floor}),
    );
    Ok(())
}

/// The surge counters: per-frame cost of each way of counting (floors that
/// count and drop, against the drop floor) and of reading all 65536.
fn surge_counting(report: &mut Report, o: &Opts, frame: &[u8]) -> anyhow::Result<()> {
    let (repeat, runs) = o.repeat_runs();
    let mut floors = EbpfLoader::new()
        .map_max_entries(
            "COUNT_SHARDED",
            filterctl::filter::observe::counters::blocks()?,
        )
        .load(filter_testkit::FLOORS_OBJECT)?;
    for name in ["drop_all", "count_sharded", "count_shared"] {
        let p: &mut Xdp = floors
            .program_mut(name)
            .ok_or_else(|| anyhow!("no {name}"))?
            .try_into()?;
        p.load()?;
    }
    let (floor, ..) = measure(program(&floors, "drop_all")?, frame, repeat, runs)?;
    let (sharded, ..) = measure(program(&floors, "count_sharded")?, frame, repeat, runs)?;
    let (shared, ..) = measure(program(&floors, "count_shared")?, frame, repeat, runs)?;
    // Both CPUs counting the same port at once: where the shared slot's
    // atomic adds pay for moving the cache line between CPUs.
    let both = |name: &str| -> anyhow::Result<f64> {
        let prog = program(&floors, name)?;
        let per_cpu: Vec<f64> = std::thread::scope(|s| {
            let runs: Vec<_> = (0..2)
                .map(|_| s.spawn(|| measure(prog, frame, repeat, runs).map(|m| m.0)))
                .collect();
            runs.into_iter()
                .map(|r| r.join().expect("measuring thread"))
                .collect::<anyhow::Result<_>>()
        })?;
        Ok(per_cpu.iter().sum::<f64>() / per_cpu.len() as f64)
    };
    let (floor2, sharded2, shared2) = (
        both("drop_all")?,
        both("count_sharded")?,
        both("count_shared")?,
    );
    let reads = if o.quick { 3 } else { 10 };
    let map = floors
        .map("COUNT_SHARDED")
        .ok_or_else(|| anyhow!("no COUNT_SHARDED"))?;
    let aya::maps::Map::Array(data) = map else {
        anyhow::bail!("COUNT_SHARDED is not an array");
    };
    let t0 = Instant::now();
    for _ in 0..reads {
        let counts = filterctl::filter::observe::counters::read_packets(data)?;
        anyhow::ensure!(counts[123] > 0, "the per-CPU counters missed the frames");
    }
    let mmap_read = t0.elapsed() / reads;
    let _ = writeln!(
        report.text,
        "\n1c. surge counting (UDP by source port), NTP reply, against XDP_DROP {floor:.1} ns (both CPUs at once: {floor2:.1} ns)\n   a block per CPU, plain adds (the filter's): {:+.1} ns/frame, both CPUs on one port {:+.1}; all 65536 ports summed over the blocks through one mmap: {:.2} ms\n   one slot per port, atomic adds (before):    {:+.1} ns/frame, both CPUs on one port {:+.1}",
        sharded - floor,
        sharded2 - floor2,
        mmap_read.as_secs_f64() * 1e3,
        shared - floor,
        shared2 - floor2,
    );
    report.json.insert(
        "surge_counting".into(),
        json!({"drop_floor_ns": floor, "sharded_ns": sharded, "shared_ns": shared, "two_cpus": {"drop_floor_ns": floor2, "sharded_ns": sharded2, "shared_ns": shared2}, "sharded_above_floor_ns": sharded - floor, "shared_above_floor_ns": shared - floor, "mmap_read_ms": mmap_read.as_secs_f64() * 1e3}),
    );
    Ok(())
}

/// The program as the kernel holds it: translated instructions and JIT
/// code.
/// A loaded program's size: translated bytes and instructions, JIT bytes,
/// and what the verifier walked (of its budget of 1,000,000).
struct Size {
    xlated: u32,
    insns: u32,
    jited: u32,
    verified: u32,
}

impl Size {
    fn of(info: &ProgramInfo) -> Size {
        let xlated = info.size_translated().unwrap_or(0);
        Size {
            xlated,
            insns: xlated / 8,
            jited: info.size_jitted(),
            verified: info.verified_instruction_count().unwrap_or(0),
        }
    }
}

fn size(report: &mut Report, info: &ProgramInfo) {
    let Size {
        xlated,
        insns,
        jited,
        verified,
    } = Size::of(info);
    let _ = write!(
        report.text,
        "\n0. program size: {insns} translated instructions ({xlated} bytes), {jited} bytes of JIT code; the verifier walked {verified} instructions"
    );
    report.json.insert(
        "program_size".into(),
        json!({"translated_insns": insns, "translated_bytes": xlated, "jited_bytes": jited, "verified_insns": verified}),
    );
}

/// The kernel's own count of runs and run time of a loaded program
/// (counted while `enable_stats` is held).
fn run_stats(id: u32) -> anyhow::Result<(u64, Duration)> {
    let info = aya::programs::loaded_programs()
        .filter_map(Result::ok)
        .find(|p| p.id() == id)
        .ok_or_else(|| anyhow!("program {id} is not loaded"))?;
    Ok((info.run_count(), info.run_time()))
}

/// ns per frame, from the kernel's own timing, over `frames` single runs.
fn stream(prog: &Xdp, frames: impl Iterator<Item = Vec<u8>>) -> anyhow::Result<(f64, usize)> {
    let (mut total, mut n) = (Duration::ZERO, 0usize);
    for f in frames {
        let r = prog.test_run(TestRunOptions {
            data_in: Some(&f),
            repeat: 1,
            ..TestRunOptions::new()
        })?;
        total += r.duration;
        n += 1;
    }
    Ok((total.as_nanos() as f64 / n as f64, n))
}

fn spoofed_flood(report: &mut Report, o: &Opts) -> anyhow::Result<()> {
    let n: u32 = if o.quick { 100_000 } else { 1_000_000 };
    let set = rules::parse("bench.toml", &bench_rules()).map_err(|e| anyhow!("{e}"))?;
    let dns = udp(53000, 53, &dns_query());
    let base = ether(&[], ETH_IPV4, &ipv4(UDP, &[], Frag::default(), &dns));
    // Each run gets a fresh program, so neither starts with a warm limiter.
    let one = Simulator::new(&set)?;
    let (single, _) = stream(filter_prog(&one)?, (0..n).map(|_| base.clone()))?;
    let many = Simulator::new(&set)?;
    // Distinct sources in 198.18.0.0/15 (the benchmarking range), then the
    // IPv4 space above it: map keys only, never sent anywhere.
    let (random, count) = stream(
        filter_prog(&many)?,
        (0..n).map(|i| {
            let mut f = base.clone();
            let a = (u32::from_be_bytes([198, 18, 0, 0])
                .wrapping_add(i.wrapping_mul(2_654_435_761) >> 8))
            .to_be_bytes();
            f[26..30].copy_from_slice(&a);
            f
        }),
    )?;
    let _ = writeln!(
        report.text,
        "\n2. spoofed flood through the limiter ({count} frames, one test run each, kernel timing)\n   one source {single:.1} ns/frame, {count} distinct sources {random:.1} ns/frame: ratio {:.2} (goal <= 2)",
        random / single
    );
    report.json.insert(
        "spoofed_flood".into(),
        json!({"frames": count, "single_source_ns": single, "distinct_sources_ns": random, "ratio": random / single}),
    );
    Ok(())
}

/// An address spread over the IPv4 space by `i`, kept off the frames'
/// own source /24s (map keys only: nothing is sent to them).
fn spread_v4(i: u32, salt: u32) -> [u8; 4] {
    let mut a = (i + salt).wrapping_mul(2_654_435_761).to_be_bytes();
    if a[..3] == SRC4[..3] {
        a[2] ^= 0x80;
    }
    a
}

/// Default rules plus the lists of a real deployment, scattered as
/// published blocklists are: 100,000 deny prefixes (every 1,000th a /16,
/// every 10th a /24, the rest /32s; 1,000 of them IPv6 /48s), 10,000 allow
/// prefixes (100 of them IPv6), and 1,000 extra rules.
fn big_rules() -> String {
    let mut t = bench_rules();
    // Distinct /48s (an odd multiplier is a bijection mod 2^15), deny's
    // in the upper half; all off the frames' 2001:db8:1::/48.
    let v6 = |i: u32, half: u32| {
        let x = half << 15 | ((i / 100).wrapping_mul(40_503) & 0x7fff).max(2);
        format!("\"2001:db8:{x:x}::/48\"")
    };
    let deny: Vec<String> = (0..100_000u32)
        .map(|i| {
            let a = spread_v4(i, 0);
            match i {
                _ if i % 100 == 1 => v6(i, 1),
                _ if i % 1000 == 0 => format!("\"{}.{}.0.0/16\"", a[0], a[1]),
                _ if i % 10 == 0 => format!("\"{}.{}.{}.0/24\"", a[0], a[1], a[2]),
                _ => format!("\"{}.{}.{}.{}\"", a[0], a[1], a[2], a[3]),
            }
        })
        .collect();
    let allow: Vec<String> = (0..10_000u32)
        .map(|i| {
            if i % 100 == 1 {
                v6(i, 0)
            } else {
                let a = spread_v4(i, 1 << 20);
                format!("\"{}.{}.{}.{}\"", a[0], a[1], a[2], a[3])
            }
        })
        .collect();
    t = t.replace("deny = []", &format!("deny = [{}]", deny.join(",")));
    t = t.replace("allow = []", &format!("allow = [{}]", allow.join(",")));
    for i in 0..1000u16 {
        let _ = write!(
            t,
            "\n[[rule]]\nname = \"bulk-{i}\"\nprotocol = \"udp\"\nsrc_port = {}\naction = \"drop\"\n",
            20000 + i
        );
    }
    t
}

fn at_scale(report: &mut Report, o: &Opts) -> anyhow::Result<()> {
    // More rounds than elsewhere: a 1 ns step is 3% of these frames.
    let (repeat, rounds) = if o.quick {
        (200_000, 2 * INSTANCES + 1)
    } else {
        (2_000_000, 3 * INSTANCES + 1)
    };
    let small = loads(&rules::parse("bench.toml", &bench_rules()).map_err(|e| anyhow!("{e}"))?)?;
    let big = loads(&rules::parse("big.toml", &big_rules()).map_err(|e| anyhow!("{e}"))?)?;
    // The same lists, and one deny address in the frames' own /24 (not
    // theirs): a neighbour of every source the frames come from.
    let neighbour = big_rules().replacen(
        "deny = [",
        &format!(
            "deny = [\"{}.{}.{}.{}\",",
            SRC4[0],
            SRC4[1],
            SRC4[2],
            SRC4[3] ^ 1
        ),
        1,
    );
    let near = loads(&rules::parse("near.toml", &neighbour).map_err(|e| anyhow!("{e}"))?)?;
    let floors = load_floors()?;
    let kinds = frame_kinds();
    let _ = writeln!(
        report.text,
        "\n3. rules at scale: default file vs +100,000 deny and +10,000 allow prefixes (scattered) and +1,000 rules,\n   and the same with a deny entry in the sources' own /24 (ns over the XDP_DROP floor;\n   interleaved, median of {rounds} rounds over {INSTANCES} loads of each)\n   {:<20} {:>10} {:>10} {:>10} {:>8}",
        "frame", "default", "large", "neighbour", "worst"
    );
    let mut rows = Vec::new();
    let mut worst: f64 = 0.0;
    for (name, frame) in kinds.iter().filter(|k| k.0 != "truncated") {
        let (mut a, mut b, mut c) = (Vec::new(), Vec::new(), Vec::new());
        for round in 0..rounds {
            let i = round % INSTANCES;
            let floor = measure(program(&floors, "drop_all")?, frame, repeat, 1)?.0;
            a.push(measure(filter_prog(&small[i])?, frame, repeat, 1)?.0 - floor);
            b.push(measure(filter_prog(&big[i])?, frame, repeat, 1)?.0 - floor);
            c.push(measure(filter_prog(&near[i])?, frame, repeat, 1)?.0 - floor);
        }
        let (a, b, c) = (median(a), median(b), median(c));
        let extra = b.max(c) - a;
        worst = worst.max(extra);
        let _ = writeln!(
            report.text,
            "   {name:<20} {a:>+8.1}ns {b:>+8.1}ns {c:>+8.1}ns {extra:>+6.1}ns",
        );
        rows.push(json!({"frame": name, "default_ns": a, "large_ns": b, "neighbour_ns": c, "extra_ns": extra}));
    }
    let _ = writeln!(
        report.text,
        "   worst extra cost of the lists {worst:+.1} ns (goal <= +15 ns, a neighbour included)"
    );
    report.json.insert(
        "at_scale".into(),
        json!({"frames": rows, "worst_extra_ns": worst}),
    );
    Ok(())
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(|a, b| a.total_cmp(b));
    v[v.len() / 2]
}

/// The mean of the middle half of `sorted`: as robust to a noisy round as
/// the median, but not bound to the whole ns that each round is timed in.
/// This build against another's object, frame by frame: both loaded
/// [`INSTANCES`] times in this process, each round the drop floor, this
/// build and the other one after the other, so that the machine's drift
/// hits both sides of each difference. Resolves what section 1, run once
/// per build, can't: a tenth of a nanosecond, where two runs of one build
/// differ by half of one.
fn against(report: &mut Report, o: &Opts, object: &Path) -> anyhow::Result<()> {
    let bytes =
        std::fs::read(object).with_context(|| format!("cannot read {}", object.display()))?;
    let (repeat, runs) = o.repeat_runs();
    let floors = load_floors()?;
    let set = rules::parse("bench.toml", &bench_rules()).map_err(|e| anyhow!("{e}"))?;
    let this = loads(&set)?;
    let other = (0..INSTANCES)
        .map(|_| Simulator::with_object(&set, &bytes))
        .collect::<anyhow::Result<Vec<_>>>()
        .with_context(|| format!("cannot load {} as the filter", object.display()))?;
    let sizes = |s: &Simulator| -> anyhow::Result<String> {
        let z = Size::of(&filter_prog(s)?.info()?);
        Ok(format!(
            "{} insns, {} B JIT, {} verified",
            z.insns, z.jited, z.verified
        ))
    };
    let rounds = 4 * runs * INSTANCES + 1;
    let _ = write!(
        report.text,
        "\nthis build ({}) against {} ({})\n   {rounds} rounds over {INSTANCES} loads of each, each round the drop floor, this build, the other;\n   ns over the floor (median, interquartile mean), and this minus the other (median, iqm, [middle half])\n   {:<20} {:>14} {:>14} {:>22}",
        sizes(&this[0])?,
        object.display(),
        sizes(&other[0])?,
        "frame",
        "this",
        "other",
        "this - other"
    );
    let mut rows = Vec::new();
    for (name, frame) in &frame_kinds() {
        let (mut a, mut b, mut d) = (Vec::new(), Vec::new(), Vec::new());
        for round in 0..rounds {
            let floor = measure(program(&floors, "drop_all")?, frame, repeat, 1)?.0;
            let x = measure(filter_prog(&this[round % INSTANCES])?, frame, repeat, 1)?.0;
            let y = measure(filter_prog(&other[round % INSTANCES])?, frame, repeat, 1)?.0;
            a.push(x - floor);
            b.push(y - floor);
            d.push(x - y);
        }
        for v in [&mut a, &mut b, &mut d] {
            v.sort_by(|p, q| p.total_cmp(q));
        }
        let mid = |v: &[f64]| v[rounds / 2];
        let (q1, q3) = (d[rounds / 4], d[rounds - 1 - rounds / 4]);
        let _ = write!(
            report.text,
            "\n   {name:<20} {:>+6.1} {:>+6.2} {:>+6.1} {:>+6.2} {:>+6.1} {:>+6.2} [{q1:+.0} .. {q3:+.0}]",
            mid(&a),
            interquartile_mean(&a),
            mid(&b),
            interquartile_mean(&b),
            mid(&d),
            interquartile_mean(&d)
        );
        rows.push(json!({"frame": name, "this_ns": mid(&a), "this_iqm_ns": interquartile_mean(&a), "other_ns": mid(&b), "other_iqm_ns": interquartile_mean(&b), "difference_ns": mid(&d), "difference_iqm_ns": interquartile_mean(&d)}));
    }
    report.json.insert(
        "against".into(),
        json!({"object": object.display().to_string(), "rounds": rounds, "instances": INSTANCES, "frames": rows}),
    );
    Ok(())
}

fn interquartile_mean(sorted: &[f64]) -> f64 {
    let q = sorted.len() / 4;
    let mid = &sorted[q..sorted.len() - q];
    mid.iter().sum::<f64>() / mid.len() as f64
}

fn control_plane(report: &mut Report) -> anyhow::Result<()> {
    let text = big_rules();
    let t0 = Instant::now();
    let set = rules::parse("big.toml", &text).map_err(|e| anyhow!("{e}"))?;
    let parse = t0.elapsed();
    let t0 = Instant::now();
    let runner = Simulator::new(&set)?;
    let build = t0.elapsed();
    let t0 = Instant::now();
    let reads = 20;
    for _ in 0..reads {
        runner.reasons()?;
    }
    let stats_read = t0.elapsed() / reads;
    let _ = writeln!(
        report.text,
        "\n4. control plane (100,000 prefixes, 1,003 rules)\n   parse and validate {:.0} ms, build and verify a generation {:.0} ms (a reload = both + one link switch; goal < 1 s)\n   read all reason counters {:.2} ms (goal < 10 ms)",
        parse.as_secs_f64() * 1e3,
        build.as_secs_f64() * 1e3,
        stats_read.as_secs_f64() * 1e3
    );
    report.json.insert(
        "control_plane".into(),
        json!({"parse_ms": parse.as_secs_f64() * 1e3, "build_ms": build.as_secs_f64() * 1e3, "stats_read_ms": stats_read.as_secs_f64() * 1e3}),
    );
    Ok(())
}

// ---- veth ----------------------------------------------------------------

/// `ethtool -S` counter of an interface in a namespace.
fn ethtool_stat(ns: &str, dev: &str, name: &str) -> anyhow::Result<u64> {
    let mut cmd = TestNet::command_in(ns, "ethtool");
    cmd.args(["-S", dev]);
    let out = output(cmd)?;
    let text = String::from_utf8_lossy(&out);
    text.lines()
        .find_map(|l| l.trim().strip_prefix(&format!("{name}: "))?.parse().ok())
        .ok_or_else(|| anyhow!("no {name} in ethtool -S {dev}"))
}

/// Packets the victim's network stack received (`ip -s link`).
fn rx_packets(ns: &str, dev: &str) -> anyhow::Result<u64> {
    let mut cmd = Command::new("ip");
    cmd.args(["-n", ns, "-s", "-j", "link", "show", "dev", dev]);
    let v: Value = serde_json::from_slice(&output(cmd)?).context("ip -j output")?;
    v[0]["stats64"]["rx"]["packets"]
        .as_u64()
        .ok_or_else(|| anyhow!("no rx packets for {dev}"))
}

fn nft_counter(ns: &str) -> anyhow::Result<u64> {
    let mut cmd = TestNet::command_in(ns, "nft");
    cmd.args(["-j", "list", "table", "netdev", "bench"]);
    let v: Value = serde_json::from_slice(&output(cmd)?).context("nft -j output")?;
    for item in v["nftables"].as_array().into_iter().flatten() {
        for e in item["rule"]["expr"].as_array().into_iter().flatten() {
            if let Some(p) = e["counter"]["packets"].as_u64() {
                return Ok(p);
            }
        }
    }
    Err(anyhow!("no counter in the nftables rule"))
}

/// What `cmd` printed, or why it failed (with what it said on stderr, so
/// that a missing tool or kernel module shows in the report).
fn output(mut cmd: Command) -> anyhow::Result<Vec<u8>> {
    let what = command_line(&cmd);
    let out = cmd.output().with_context(|| format!("cannot run {what}"))?;
    anyhow::ensure!(
        out.status.success(),
        "{what} failed: {}",
        String::from_utf8_lossy(&out.stderr).trim()
    );
    Ok(out.stdout)
}

/// `cmd` as typed, without the nsenter in front: the report's reader
/// wants the tool that failed.
fn command_line(cmd: &Command) -> String {
    let mut words: Vec<_> = std::iter::once(cmd.get_program())
        .chain(cmd.get_args())
        .map(|w| w.to_string_lossy())
        .collect();
    if cmd.get_program() == "nsenter"
        && let Some(i) = words.iter().position(|w| w == "--")
    {
        words.drain(..=i);
    }
    format!("`{}`", words.join(" "))
}

fn sh(ns: &str, program: &str, args: &[&str]) -> anyhow::Result<()> {
    let mut cmd = TestNet::command_in(ns, program);
    cmd.args(args);
    output(cmd)?;
    Ok(())
}

const LIVE_CONTROL: &str = "5. control plane on a live interface";
const FLOOD: &str = "6. NTP reflection flood on a veth pair";

/// Sections 5 and 6, on one pair of test hosts: each measured or not on
/// its own.
fn on_veth(report: &mut Report, o: &Opts) {
    let net = match TestNet::new("bch").context("cannot create the test namespaces") {
        Ok(net) => net,
        Err(e) => {
            report.skip(LIVE_CONTROL, &e);
            report.skip(FLOOD, &e);
            return;
        }
    };
    report.section(LIVE_CONTROL, |r| live_control_plane(r, &net));
    report.section(FLOOD, |r| flood(r, o, &net));
}

/// Control plane on a live interface: load, then reload, 100,000 prefixes.
fn live_control_plane(report: &mut Report, net: &TestNet) -> anyhow::Result<()> {
    use filterctl::filter::lifecycle::{load, mode::AttachMode, reload, unload};
    let big = rules::parse("big.toml", &big_rules()).map_err(|e| anyhow!("{e}"))?;
    let root = filterctl::state::PinRoot::new(&net.pin_root);
    let vi = net.victim_if.as_str();
    let (load_s, reload_s) = TestNet::in_ns(&net.victim_ns, || -> anyhow::Result<(f64, f64)> {
        let src = Path::new("big.toml");
        let t0 = Instant::now();
        load::load(&root, vi, &big, src, AttachMode::Native)?;
        let load = t0.elapsed().as_secs_f64();
        let t0 = Instant::now();
        let reloaded = reload::reload(&root, vi, &big, src);
        let reload = t0.elapsed().as_secs_f64();
        // Unloaded even when the reload failed: section 6 needs the link.
        unload::unload(&root, vi)?;
        reloaded?;
        Ok((load, reload))
    })??;
    let _ = writeln!(
        report.text,
        "\n{LIVE_CONTROL}, 100,000 prefixes and 1,003 rules\n   load {:.0} ms, reload {:.0} ms (goal < 1 s)",
        load_s * 1e3,
        reload_s * 1e3
    );
    report.json.insert(
        "live_control_plane".into(),
        json!({"load_ms": load_s * 1e3, "reload_ms": reload_s * 1e3}),
    );
    Ok(())
}

/// One case of the flood: frames dropped per second and in all, frames
/// offered, and the kernel's run time per packet of the program that
/// dropped them (where one did and run-time statistics are on).
struct Case {
    rate: f64,
    dropped: u64,
    offered: u64,
    ns: Option<f64>,
}

impl Case {
    /// Whether (nearly) all that was offered was dropped: the generator,
    /// not the receiver, set the pace.
    fn kept_up(&self) -> bool {
        self.dropped as f64 >= 0.95 * self.offered as f64
    }
}

/// What every case of section 6 shares: the hosts, the frame, the time and
/// the generator (one for all cases, so that their ratios hold).
struct Flood<'a> {
    net: &'a TestNet,
    frame: Vec<u8>,
    secs: f64,
    generator: Generator,
}

impl Flood<'_> {
    /// How fast `count` grows while the generator runs.
    fn rate(&self, count: impl Fn() -> anyhow::Result<u64>) -> anyhow::Result<Case> {
        let before = count()?;
        let t0 = Instant::now();
        let offered = self.generator.run(self.net, &self.frame, self.secs)?;
        let dropped = count()?.saturating_sub(before);
        Ok(Case {
            rate: dropped as f64 / t0.elapsed().as_secs_f64(),
            dropped,
            offered,
            ns: None,
        })
    }

    /// Drop rate seen by `drops`, and the kernel's run time per packet of
    /// program `id` over the same interval.
    fn drop_rate(&self, id: u32, drops: impl Fn() -> anyhow::Result<u64>) -> anyhow::Result<Case> {
        let (runs0, time0) = run_stats(id)?;
        let case = self.rate(drops)?;
        let (runs1, time1) = run_stats(id)?;
        // No runs counted: run-time statistics are off.
        let ns =
            (runs1 > runs0).then(|| (time1 - time0).as_nanos() as f64 / (runs1 - runs0) as f64);
        Ok(Case { ns, ..case })
    }

    fn victim(&self) -> (&str, &str) {
        (&self.net.victim_ns, &self.net.victim_if)
    }

    /// The driver's count of frames its XDP program dropped.
    fn xdp_drops(&self) -> anyhow::Result<u64> {
        let (v, vi) = self.victim();
        ethtool_stat(v, vi, "rx_queue_0_xdp_drops")
    }
}

/// The NTP reflection frame of the flood, from a documentation address
/// to the victim's MAC.
fn flood_frame() -> Vec<u8> {
    let ntp = udp(123, 40000, &ntp_monlist_reply());
    let mut frame = with_src4(
        ether(&[], ETH_IPV4, &ipv4(UDP, &[], Frag::default(), &ntp)),
        [198, 51, 100, 7],
    );
    frame[..6].copy_from_slice(&[0x02, 0, 0, 0, 0, 1]);
    frame[6..12].copy_from_slice(&[0x02, 0, 0, 0, 0, 2]);
    frame
}

/// No filter: the stack receives and drops at the closed port.
fn no_filter(f: &Flood) -> anyhow::Result<Case> {
    let (v, vi) = f.victim();
    f.rate(|| rx_packets(v, vi))
}

/// nftables netdev ingress, dropping the same traffic.
fn nftables(f: &Flood) -> anyhow::Result<Case> {
    let (v, vi) = f.victim();
    sh(v, "nft", &["add", "table", "netdev", "bench"])?;
    let measured = (|| {
        let chain = format!(
            "add chain netdev bench ingress {{ type filter hook ingress device \"{vi}\" priority -500 ; }}"
        );
        sh(v, "nft", &[&chain])?;
        sh(
            v,
            "nft",
            &["add rule netdev bench ingress udp sport 123 counter drop"],
        )?;
        f.rate(|| nft_counter(v))
    })();
    let removed = sh(v, "nft", &["delete", "table", "netdev", "bench"]);
    let case = measured?;
    removed?;
    Ok(case)
}

/// Plain XDP_DROP in native mode: the floor.
fn xdp_drop(f: &Flood) -> anyhow::Result<Case> {
    let vi = f.net.victim_if.clone();
    let floors = TestNet::in_ns(&f.net.victim_ns, move || -> anyhow::Result<Ebpf> {
        let mut floors = Ebpf::load(filter_testkit::FLOORS_OBJECT)?;
        let p: &mut Xdp = floors
            .program_mut("drop_all")
            .ok_or_else(|| anyhow!("no drop_all"))?
            .try_into()?;
        p.load()?;
        p.attach(&vi, aya::programs::XdpMode::Driver)?;
        Ok(floors)
    })??;
    let id = program(&floors, "drop_all")?.info()?.id();
    // Dropping `floors` detaches it.
    f.drop_rate(id, || f.xdp_drops())
}

/// The filter with `set`, attached in `mode` for the duration of `measure`
/// (and detached whether or not that succeeds).
fn with_filter<T>(
    f: &Flood,
    root: &filterctl::state::PinRoot,
    set: &rules::RuleSet,
    mode: filterctl::filter::lifecycle::mode::AttachMode,
    measure: impl FnOnce() -> anyhow::Result<T>,
) -> anyhow::Result<T> {
    use filterctl::filter::lifecycle::{load, unload};
    let (v, vi) = f.victim();
    TestNet::in_ns(v, || {
        load::load(root, vi, set, Path::new("default.toml"), mode)
    })??;
    let measured = measure();
    let unloaded = unload::unload(root, vi);
    let m = measured?;
    unloaded?;
    Ok(m)
}

/// The filter in native mode, counted by the driver.
fn filter_native(
    f: &Flood,
    root: &filterctl::state::PinRoot,
    set: &rules::RuleSet,
) -> anyhow::Result<Case> {
    let native = filterctl::filter::lifecycle::mode::AttachMode::Native;
    with_filter(f, root, set, native, || {
        let iface = root.iface_dir(&f.net.victim_if);
        let id = filterctl::state::current_generation(&iface)?.program_id;
        f.drop_rate(id, || f.xdp_drops())
    })
}

/// The filter in generic (skb) mode, read from its own counters (the
/// driver's XDP counters see only native mode).
fn filter_generic(
    f: &Flood,
    root: &filterctl::state::PinRoot,
    set: &rules::RuleSet,
) -> anyhow::Result<Case> {
    let generic = filterctl::filter::lifecycle::mode::AttachMode::Generic;
    with_filter(f, root, set, generic, || {
        let vi = f.net.victim_if.as_str();
        let dropped = || -> anyhow::Result<u64> {
            Ok(filterctl::filter::observe::stats::read_interface(root, vi)?
                .dropped
                .packets)
        };
        f.rate(dropped)
    })
}

/// The cases of section 6 that its ratios compare.
const NFT: &str = "nftables netdev ingress";
const XDP_DROP: &str = "plain XDP_DROP";
const FILTER: &str = "this filter (default rules)";

/// Section 6: drop rates of the filter and of its alternatives under one
/// generator; a case that cannot be measured (a missing tool or kernel
/// feature) costs its row only.
fn flood(report: &mut Report, o: &Opts, net: &TestNet) -> anyhow::Result<()> {
    let secs = if o.quick { 1.0 } else { 3.0 };
    // Holding the fd keeps the kernel's per-program run-time statistics on
    // (kernel.bpf_stats_enabled), only for as long as this section runs.
    let stats = enable_stats(Stats::RunTime).context("cannot enable BPF run-time statistics");
    let (v, vi) = (net.victim_ns.as_str(), net.victim_if.as_str());
    // NAPI via GRO: needed for XDP_TX into a veth without an XDP program,
    // and the same receive path for every generator.
    sh(v, "ethtool", &["-K", vi, "gro", "on"])?;
    let frame = flood_frame();
    let generator = Generator::choose(net, &frame, o.generator)?;
    if let Generator::AfPacket { why, .. } = &generator {
        report.fallbacks.push((
            FLOOD.into(),
            format!("AF_PACKET generator, not live frames: {why}"),
        ));
    }
    let f = Flood {
        net,
        frame,
        secs,
        generator,
    };
    let set = rules::parse("default.toml", &default_rules()).map_err(|e| anyhow!("{e}"))?;
    let root = filterctl::state::PinRoot::new(&net.pin_root);
    let cases = [
        ("no filter (stack receives)", no_filter(&f)),
        (NFT, nftables(&f)),
        (XDP_DROP, xdp_drop(&f)),
        (FILTER, filter_native(&f, &root, &set)),
        ("this filter, generic mode", filter_generic(&f, &root, &set)),
    ];
    if cases.iter().all(|(_, c)| c.is_err()) {
        let [(name, first), ..] = cases;
        return Err(first.err().unwrap_or_else(|| anyhow!("no case ran")))
            .with_context(|| format!("every case failed; the first, {name}"));
    }
    let _ = writeln!(
        report.text,
        "\n{FLOOD} ({secs} s per case)\n   generator: {}",
        f.generator.describe()
    );
    let mut rows = Vec::new();
    for (name, case) in &cases {
        match case {
            Ok(c) => {
                let _ = writeln!(
                    report.text,
                    "   {name:<30} {:>7.2} Mpps dropped (offered {:.2} Mpps)",
                    c.rate / 1e6,
                    c.offered as f64 / secs / 1e6
                );
                rows.push(json!({"case": name, "pps": c.rate, "offered": c.offered}));
            }
            Err(e) => {
                let why = report.not_measured(&format!("{FLOOD}: {name}"), e);
                let _ = writeln!(report.text, "   {name:<30} not measured: {why}");
                rows.push(json!({"case": name, "not_measured": format!("{e:#}")}));
            }
        }
    }
    let case = |name: &str| {
        let found = cases.iter().find(|(n, _)| *n == name);
        found.and_then(|(_, c)| c.as_ref().ok())
    };
    let (nft, floor, ours) = (case(NFT), case(XDP_DROP), case(FILTER));
    let rate = |c: Option<&Case>| c.map(|c| c.rate);
    let ns = |c: Option<&Case>| c.and_then(|c| c.ns);
    let (nft, floor, ours, floor_ns, ours_ns) =
        (rate(nft), rate(floor), rate(ours), ns(floor), ns(ours));
    let ratio = |a: Option<f64>, b: Option<f64>| a.zip(b).map(|(a, b)| a / b);
    let _ = writeln!(
        report.text,
        "   filter / plain XDP_DROP = {} (goal >= 0.97); filter / nftables = {} (goal >= 3.5)",
        shown(ratio(ours, floor), 2),
        shown(ratio(ours, nft), 2)
    );
    // AF_PACKET costs the sending CPUs more per frame than the receiver
    // spends on it: then both keep up, and the ratio says only that.
    let kept_up = |name| case(name).is_some_and(Case::kept_up);
    let generator_bound = kept_up(XDP_DROP) && kept_up(FILTER);
    if generator_bound {
        let _ = writeln!(
            report.text,
            "   the filter and XDP_DROP both dropped nearly all the generator offered: it set the pace, and the run times below compare them"
        );
    }
    let run_time = match &stats {
        Ok(_) => format!(
            "filter {} ns, plain XDP_DROP {} ns",
            shown(ours_ns, 1),
            shown(floor_ns, 1)
        ),
        Err(e) => {
            let what = format!("{FLOOD}: kernel run time per packet");
            format!("not measured: {}", report.not_measured(&what, e))
        }
    };
    let _ = writeln!(
        report.text,
        "   kernel run time per packet (bpf_stats run_time_ns / run_cnt): {run_time}"
    );
    report.json.insert("veth".into(), json!({"seconds": secs, "generator": f.generator.describe(), "cases": rows, "ratio_to_xdp_drop": ratio(ours, floor), "generator_bound": generator_bound, "ratio_to_nftables": ratio(ours, nft), "run_time_ns_per_packet": {"filter": ours_ns, "xdp_drop": floor_ns}}));
    Ok(())
}

/// A figure with `decimals`, or n/a where it could not be measured.
fn shown(v: Option<f64>, decimals: usize) -> String {
    v.map_or_else(|| "n/a".into(), |v| format!("{v:.decimals$}"))
}

/// What a capture costs the drop path, and that the pass path never pays.
fn capture_cost(report: &mut Report, o: &Opts) -> anyhow::Result<()> {
    let (repeat, runs) = o.repeat_runs();
    let set = rules::parse("bench.toml", &bench_rules()).map_err(|e| anyhow!("{e}"))?;
    let mut runner = Simulator::new(&set)?;
    let kinds = frame_kinds();
    let frame = |name| {
        kinds
            .iter()
            .find(|(n, _)| *n == name)
            .map(|(_, f)| f.clone())
            .ok_or_else(|| anyhow!("no frame {name}"))
    };
    let (drop_frame, pass_frame) = (frame("ntp_ipv4")?, frame("dns_query_benign")?);
    let on = |sample| filter_common::CaptureConfig {
        until_ns: u64::MAX,
        reasons: u32::MAX,
        rule: filter_common::CAPTURE_ANY_RULE,
        sample,
        per_cpu_pps: u32::MAX,
        snaplen: 1528,
        _pad: 0,
    };
    let mut rows = Vec::new();
    let _ = writeln!(
        report.text,
        "\n7. capture cost (BPF_PROG_TEST_RUN, {repeat} repeats, median of {runs})"
    );
    for (case, config) in [
        ("no capture", filter_common::CaptureConfig::default()),
        ("capture, frame sampled out", on(u32::MAX)),
        ("capture, every frame copied", on(1)),
    ] {
        runner.set_capture(config)?;
        let (dropped, ..) = measure(runner.program()?, &drop_frame, repeat, runs)?;
        let (passed, ..) = measure(runner.program()?, &pass_frame, repeat, runs)?;
        let _ = writeln!(
            report.text,
            "   {case:<30} drop path {dropped:>6.1} ns   pass path {passed:>6.1} ns"
        );
        rows.push(json!({"case": case, "drop_ns": dropped, "pass_ns": passed}));
    }
    runner.set_capture(filter_common::CaptureConfig::default())?;
    report.json.insert("capture".into(), json!(rows));
    Ok(())
}

fn main() {
    if let Err(e) = run() {
        eprintln!("bench failed: {e:#}");
        std::process::exit(1);
    }
}

fn run() -> anyhow::Result<()> {
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        anyhow::bail!("the benchmarks load XDP programs: run them as root");
    }
    let o = opts()?;
    let started = Instant::now();
    let mut report = Report {
        text: String::new(),
        json: serde_json::Map::new(),
        measured: 0,
        skipped: Vec::new(),
        fallbacks: Vec::new(),
    };
    let kernel = std::fs::read_to_string("/proc/sys/kernel/osrelease").unwrap_or_default();
    let _ = write!(
        report.text,
        "filter benchmarks, {} cores, kernel {}",
        std::thread::available_parallelism().map_or(0, |n| n.get()),
        kernel.trim()
    );
    sections(&mut report, &o);
    let _ = writeln!(
        report.text,
        "\n{}\ndone in {:.0} s",
        report.summary(),
        started.elapsed().as_secs_f64()
    );
    print!("{}", report.text);
    if let Some(path) = &o.json {
        report.json.insert("kernel".into(), json!(kernel.trim()));
        let listed = |v: &[(String, String)]| -> Vec<Value> {
            v.iter()
                .map(|(section, why)| json!({"section": section, "why": why}))
                .collect()
        };
        report
            .json
            .insert("skipped".into(), listed(&report.skipped).into());
        report
            .json
            .insert("fallbacks".into(), listed(&report.fallbacks).into());
        std::fs::write(
            path,
            serde_json::to_string_pretty(&Value::Object(report.json))?,
        )
        .with_context(|| format!("cannot write {}", path.display()))?;
        println!("wrote {}", path.display());
    }
    anyhow::ensure!(report.measured > 0, "nothing could be measured");
    Ok(())
}

/// Every section the options ask for, each on its own.
fn sections(report: &mut Report, o: &Opts) {
    if let Some(object) = &o.against {
        report.section("this build against another", |r| against(r, o, object));
    }
    if o.runs("per-frame") {
        let floor = report.section("1. in-kernel cost per frame", |r| per_frame(r, o));
        let floor = floor.map(|(drop_floor, _)| drop_floor);
        // Sections 1b and 1d measure against section 1's floor, or their own.
        let floor = || floor.map_or_else(|| drop_floor(o), Ok);
        report.section("1b. reply guard", |r| reply_guard_cost(r, o, floor()?));
        report.section("1d. NTP reflection while a source is banned", |r| {
            with_a_ban(r, o, floor()?)
        });
        report.section("1e. a server's port", |r| served_port_cost(r, o, floor()?));
        report.section("1c. surge counting", |r| {
            surge_counting(r, o, &frame_kinds()[0].1)
        });
    }
    if o.runs("flood") {
        report.section("2. spoofed flood through the limiter", |r| {
            spoofed_flood(r, o)
        });
    }
    if o.runs("scale") {
        report.section("3. rules at scale", |r| at_scale(r, o));
    }
    if o.runs("control") {
        report.section("4. control plane", control_plane);
    }
    if o.runs("veth") {
        on_veth(report, o);
    }
    if o.runs("capture") {
        report.section("7. capture cost", |r| capture_cost(r, o));
    }
    if o.runs("memory") {
        report.section("8. kernel memory per interface", memory::memory);
    }
}

/// The XDP_DROP floor for the NTP frame, where section 1 did not measure
/// it.
fn drop_floor(o: &Opts) -> anyhow::Result<f64> {
    let (repeat, runs) = o.repeat_runs();
    let floors = load_floors()?;
    let ntp = &frame_kinds()[0].1;
    Ok(measure(program(&floors, "drop_all")?, ntp, repeat, runs)?.0)
}
