//! A fuzzing habit for what filterctl reads from untrusted files: mutated
//! rule files through the whole validation (`files::read_rules` on bytes,
//! `parse::parse_in` on the text, `lint` and `compile` on what passes) and
//! mutated captures through the capture reader, in-process (no BPF).
//!
//! Deterministic mutation, not coverage-guided (see `fuzz/mutate.rs`;
//! the coverage-guided targets of `filter-user/fuzz/` share `fuzz/cases.rs`):
//! seeded from `rules/*.toml`, `tests/broken/*.toml` and captures written
//! here with pcap-file. Asserted, and printed: no panic, no run over 10 s,
//! every rule error placed at FILE:LINE:COL with a non-empty explanation,
//! every capture error with one. `cargo xtask fuzz --mutation` runs the
//! same with its own budget (environment: FILTERCTL_FUZZ_RULES,
//! FILTERCTL_FUZZ_CAPTURES, FILTERCTL_FUZZ_SECONDS, FILTERCTL_FUZZ_SEED). A
//! crashing input is kept under the test target folder; make it a
//! regression case in tests/broken/.

use crate::common;
mod cases;
mod mutate;

use std::{
    panic::{AssertUnwindSafe, catch_unwind},
    path::{Path, PathBuf},
    time::{Duration, Instant},
};

use cases::{capture_case, rule_case};
use common::cli::TempDir;
use mutate::{Rng, mutate_bytes, mutate_toml};

/// A run longer than this counts as a hang.
const HANG: Duration = Duration::from_secs(10);

/// How much to run: cases per target, an optional time budget per target.
struct Budget {
    rules: u64,
    captures: u64,
    seconds: Option<u64>,
    seed: u64,
}

fn budget() -> Budget {
    let var = |name: &str| {
        std::env::var(name).ok().map(|v| {
            v.parse::<u64>()
                .unwrap_or_else(|_| panic!("{name}={v}: not a number"))
        })
    };
    Budget {
        rules: var("FILTERCTL_FUZZ_RULES").unwrap_or(10_000),
        captures: var("FILTERCTL_FUZZ_CAPTURES").unwrap_or(1_000),
        seconds: var("FILTERCTL_FUZZ_SECONDS"),
        seed: var("FILTERCTL_FUZZ_SEED").unwrap_or(13),
    }
}

/// What a fuzzing run found.
#[derive(Default)]
struct Figures {
    runs: u64,
    accepted: u64,
    refused: u64,
    panics: Vec<String>,
    hangs: u64,
    slowest: Duration,
    /// Errors without a usable place, or with an empty explanation.
    bad_messages: Vec<String>,
}

impl Figures {
    fn report(&self, what: &str) -> String {
        format!(
            "{what}: {} runs ({} accepted, {} refused), {} panics, {} over {HANG:?} (slowest {:?}), {} messages without a place or an explanation",
            self.runs,
            self.accepted,
            self.refused,
            self.panics.len(),
            self.hangs,
            self.slowest,
            self.bad_messages.len()
        )
    }

    fn assert_clean(&self, what: &str, wanted: u64) {
        let report = self.report(what);
        println!("{report}");
        let mut problems: Vec<String> = self.panics.clone();
        problems.extend(self.bad_messages.iter().take(20).cloned());
        assert!(
            self.panics.is_empty() && self.hangs == 0 && self.bad_messages.is_empty(),
            "{report}\n{}",
            problems.join("\n")
        );
        assert!(
            self.runs == wanted || budget().seconds.is_some(),
            "{report}: wanted {wanted} runs"
        );
        assert!(self.refused > 0, "{report}: no input was refused");
    }

    /// Runs one case: times it and catches its panic, keeping the input.
    fn run(&mut self, input: &[u8], keep_as: &str, case: impl FnOnce() -> Result<bool, String>) {
        let started = Instant::now();
        let outcome = catch_unwind(AssertUnwindSafe(case));
        let took = started.elapsed();
        self.runs += 1;
        self.slowest = self.slowest.max(took);
        self.hangs += u64::from(took > HANG);
        match outcome {
            Ok(Ok(true)) => self.accepted += 1,
            Ok(Ok(false)) => self.refused += 1,
            Ok(Err(message)) => {
                self.refused += 1;
                self.bad_messages.push(message);
            }
            Err(payload) => {
                let what = payload
                    .downcast_ref::<String>()
                    .cloned()
                    .or_else(|| payload.downcast_ref::<&str>().map(|s| s.to_string()))
                    .unwrap_or_default();
                let kept = keep(keep_as, input);
                self.panics
                    .push(format!("panic {what:?} on {}", kept.display()));
            }
        }
    }
}

/// Keeps a crashing input where `cargo test` keeps test files.
fn keep(name: &str, input: &[u8]) -> PathBuf {
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join("fuzz-crashes");
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join(name);
    std::fs::write(&path, input).unwrap();
    path
}

fn package_dir() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

/// A valid file that uses every part of the schema, so that mutations of
/// it reach the lint and compile steps too.
const RICH: &str = r#"mode = "monitor"
fragments = "drop"
fragment_memory = "5s"
allow = ["192.0.2.0/24", "2001:db8::/48"]
deny = ["198.51.100.0/24"]
[sources]
ipv4_prefix = 24
ipv6_prefix = 64
table_size = 4096
[per_source]
pps = 1000
bps = "10Mbit"
burst_packets = 100
burst_bytes = 150000
[limits.peers]
pps = 10
[ban]
after = "10s"
for = "10m"
[[rule]]
name = "ntp-time"
protocol = "udp"
src_port = 123
payload = { offset = 0, mask = "07", value = "04" }
action = "limit"
limit = "peers"
aggregate_pps = 1000
aggregate_burst = 100
[[rule]]
name = "ntp"
protocol = "udp"
src_port = "100-200"
dst_port = "1024-65535"
payload_len = "0-1400"
action = "drop"
[[rule]]
name = "ssh"
protocol = "tcp"
src_port = 22
action = "pass"
enabled = false
"#;

fn toml_seeds() -> Vec<Vec<u8>> {
    // Valid seeds weigh as much as the broken corpus: most mutations of a
    // valid file are still refused, and the valid ones feed lint and compile.
    let mut good = vec![RICH.as_bytes().to_vec()];
    let mut seeds = Vec::new();
    for sub in ["../rules", "tests/broken"] {
        let dir = package_dir().join(sub);
        let mut paths: Vec<PathBuf> = std::fs::read_dir(&dir)
            .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
            .map(|e| e.unwrap().path())
            .filter(|p| p.extension().is_some_and(|e| e == "toml"))
            .collect();
        paths.sort();
        let read = paths.iter().map(|p| std::fs::read(p).unwrap());
        if sub == "../rules" {
            good.extend(read);
        } else {
            seeds.extend(read);
        }
    }
    assert!(seeds.len() > 20, "too few seeds: {}", seeds.len());
    let copies = seeds.len() / good.len();
    for _ in 0..copies {
        seeds.extend(good.iter().cloned());
    }
    seeds
}

/// A seed with one to four mutations, TOML-aware or on bytes.
fn mutated(rng: &mut Rng, seeds: &[Vec<u8>], toml_aware: bool) -> Vec<u8> {
    let mut data = rng.pick(seeds).clone();
    for _ in 0..1 + rng.below(4) {
        let other = rng.pick(seeds);
        match std::str::from_utf8(&data) {
            Ok(text) if toml_aware && rng.below(3) != 0 => {
                let other = String::from_utf8_lossy(other);
                data = mutate_toml(rng, text, &other).into_bytes();
            }
            _ => mutate_bytes(rng, &mut data, other),
        }
    }
    data
}

/// Runs `count` mutated inputs (fewer if the time budget ends first)
/// through `case`. Rule files (kind "rules") get TOML-aware mutations too;
/// each kind has its own stream of the seeded generator.
fn campaign(
    b: &Budget,
    count: u64,
    seeds: &[Vec<u8>],
    kind: &str,
    case: impl Fn(&[u8]) -> Result<bool, String>,
) -> Figures {
    let toml_aware = kind == "rules";
    let mut rng = Rng::new(b.seed ^ u64::from(toml_aware));
    let mut figures = Figures::default();
    let deadline = b.seconds.map(|s| Instant::now() + Duration::from_secs(s));
    for i in 0..count {
        if deadline.is_some_and(|d| Instant::now() > d) {
            break;
        }
        let input = mutated(&mut rng, seeds, toml_aware);
        let keep_as = format!("{kind}-{}-{i}", b.seed);
        figures.run(&input, &keep_as, || case(&input));
    }
    figures
}

#[test]
fn mutated_rule_files_get_placed_messages_and_never_panic() {
    let b = budget();
    let seeds = toml_seeds();
    let scratch = TempDir::new("fuzz-rules");
    let path = scratch.path().join("case.toml");
    // List files named by the seeds (and by mutations) are found here.
    let base = package_dir().join("tests/broken");
    let figures = campaign(&b, b.rules, &seeds, "rules", |input| {
        rule_case(&path, &base, input)
    });
    figures.assert_clean("mutated rule files", b.rules);
    assert!(
        figures.accepted > 0,
        "no mutated file was valid: the mutations are too coarse"
    );
}

/// Captures written with pcap-file: classic pcap in both byte orders and
/// resolutions, and pcapng with two interfaces, options and every packet
/// block kind the reader handles.
fn capture_seeds() -> Vec<Vec<u8>> {
    use filter_testkit::frames::*;
    use pcap_file::{
        DataLink, Endianness, TsResolution,
        pcap::{PcapHeader, PcapPacket, PcapWriter},
        pcapng::{
            PcapNgWriter,
            blocks::{
                enhanced_packet::EnhancedPacketBlock,
                interface_description::{InterfaceDescriptionBlock, InterfaceDescriptionOption},
                section_header::SectionHeaderBlock,
                simple_packet::SimplePacketBlock,
            },
        },
    };
    use std::borrow::Cow;

    let ntp = ether(
        &[],
        ETH_IPV4,
        &ipv4(
            UDP,
            &[],
            Frag::default(),
            &udp(123, 40000, &ntp_monlist_reply()),
        ),
    );
    let dns = ether(
        &[0x0064],
        ETH_IPV4,
        &ipv4(UDP, &[], Frag::default(), &udp(40000, 53, &dns_query())),
    );
    let syn6 = ether(&[], ETH_IPV6, &ipv6(TCP, &[], &tcp_syn(40000, 22)));
    let frames: Vec<Vec<u8>> = vec![ntp.clone(), dns, arp(), syn6, ntp[..30].to_vec()];
    let mut seeds = Vec::new();
    for (endianness, ts_resolution) in [
        (Endianness::Little, TsResolution::MicroSecond),
        (Endianness::Big, TsResolution::NanoSecond),
    ] {
        let header = PcapHeader {
            endianness,
            ts_resolution,
            datalink: DataLink::ETHERNET,
            ..PcapHeader::default()
        };
        let mut w = PcapWriter::with_header(Vec::new(), header).unwrap();
        for (i, f) in frames.iter().enumerate() {
            let ts = Duration::new(1_795_000_000 + i as u64, 123_000);
            let orig = if f.len() == 30 { ntp.len() } else { f.len() };
            w.write_packet(&PcapPacket::new(ts, orig as u32, f))
                .unwrap();
        }
        seeds.push(w.into_writer());
    }
    for endianness in [Endianness::Little, Endianness::Big] {
        let section = SectionHeaderBlock {
            endianness,
            ..SectionHeaderBlock::default()
        };
        let mut w = PcapNgWriter::with_section_header(Vec::new(), section).unwrap();
        let mut nanos = InterfaceDescriptionBlock::new(DataLink::ETHERNET, 65535);
        nanos.options = vec![
            InterfaceDescriptionOption::IfTsResol(9),
            InterfaceDescriptionOption::IfTsOffset(10),
        ];
        w.write_pcapng_block(InterfaceDescriptionBlock::new(DataLink::ETHERNET, 65535))
            .unwrap();
        w.write_pcapng_block(nanos).unwrap();
        for (i, f) in frames.iter().enumerate() {
            w.write_pcapng_block(EnhancedPacketBlock {
                interface_id: (i % 2) as u32,
                timestamp: Duration::new(1_795_000_000, i as u32 * 1000),
                original_len: f.len() as u32,
                data: Cow::Borrowed(f),
                options: vec![],
            })
            .unwrap();
        }
        w.write_pcapng_block(SimplePacketBlock {
            original_len: ntp.len() as u32,
            data: Cow::Borrowed(&ntp),
        })
        .unwrap();
        seeds.push(w.into_inner());
    }
    seeds
}

#[test]
fn mutated_captures_get_clean_errors_and_never_panic() {
    let b = budget();
    let seeds = capture_seeds();
    let scratch = TempDir::new("fuzz-captures");
    let path = scratch.path().join("case.pcap");
    // The seeds themselves must read whole, or the mutations start from
    // files the reader refuses anyway.
    for (i, s) in seeds.iter().enumerate() {
        assert_eq!(capture_case(&path, s), Ok(true), "seed {i}");
    }
    let figures = campaign(&b, b.captures, &seeds, "pcap", |input| {
        capture_case(&path, input)
    });
    figures.assert_clean("mutated captures", b.captures);
}
