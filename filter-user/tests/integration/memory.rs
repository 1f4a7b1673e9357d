//! The memory table (`filterctl status --memory`) against the kernel's own
//! count: the filter loaded with a rule set, attached nowhere, and each
//! map's `memlock` from the fdinfo of its fd next to what
//! `filter::observe::memory` computes for this host from the object's map
//! definitions. Needs root and BPF; fails (never skips) without them.

use std::os::fd::{AsFd as _, AsRawFd as _};

use aya::{
    Ebpf, Pod,
    maps::{Map, MapData, lpm_trie::LpmTrie},
};
use filterctl::{
    EBPF_OBJECT,
    commands::DEFAULT_RULES,
    filter::{
        lifecycle::program,
        observe::{
            counters,
            memory::{self, Entries, kernel},
        },
    },
    rules,
};

/// The default rules with allow and deny lists, which give the tries
/// entries and the source hints their full size.
fn with_lists() -> String {
    DEFAULT_RULES
        .replace(
            "allow = []",
            r#"allow = ["192.0.2.0/28", "2001:db8:1::/48"]"#,
        )
        .replace(
            "deny = []",
            r#"deny = ["203.0.113.0/25", "2001:db8:bad::/48", "198.51.100.66"]"#,
        )
}

fn data<'a>(name: &str, map: &'a Map) -> &'a MapData {
    match map {
        Map::Array(d)
        | Map::PerCpuArray(d)
        | Map::HashMap(d)
        | Map::LruHashMap(d)
        | Map::PerCpuHashMap(d)
        | Map::PerCpuLruHashMap(d)
        | Map::LpmTrie(d)
        | Map::RingBuf(d) => d,
        other => panic!("{name}: a map of a type this test does not read: {other:?}"),
    }
}

/// `memlock:` of the map's fd, as the kernel counts it.
fn memlock(name: &str, d: &MapData) -> u64 {
    let fd = d.fd().as_fd().as_raw_fd();
    let path = format!("/proc/self/fdinfo/{fd}");
    let text = std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("{name}: cannot read {path}: {e}"));
    text.lines()
        .find_map(|l| l.strip_prefix("memlock:"))
        .unwrap_or_else(|| panic!("{name}: no memlock in {path}:\n{text}"))
        .trim()
        .parse()
        .unwrap_or_else(|e| panic!("{name}: memlock in {path}: {e}"))
}

fn trie_len<K: Pod, V: Pod>(name: &str, map: &Map) -> u32 {
    let trie = LpmTrie::<_, K, V>::try_from(map)
        .unwrap_or_else(|e| panic!("{name}: not the trie expected: {e}"));
    let mut held = 0;
    for key in trie.keys() {
        key.unwrap_or_else(|e| panic!("{name}: cannot read a key: {e}"));
        held += 1;
    }
    held
}

/// Entries a trie holds (the kernel counts those, not its size).
fn held(name: &str, map: &Map, key_size: u32, value_size: u32) -> u32 {
    match (key_size, value_size) {
        (8, 1) => trie_len::<[u8; 4], u8>(name, map),
        (20, 1) => trie_len::<[u8; 16], u8>(name, map),
        (8, 8) => trie_len::<[u8; 4], u64>(name, map),
        (20, 8) => trie_len::<[u8; 16], u64>(name, map),
        other => panic!("{name}: a trie of key and value sizes {other:?}"),
    }
}

/// Loads `text` and checks every map's figure against the kernel's;
/// returns (maps compared, the kernel's total).
fn compare(text: &str) -> (usize, u64) {
    filter_testkit::require_bpf();
    let set = rules::parse("memory.toml", text).expect("valid rules");
    let ebpf: Ebpf = program::prepare(&set, None, &[])
        .unwrap_or_else(|e| panic!("cannot load the XDP program: {e:#}"));
    let defs = memory::definitions(EBPF_OBJECT).unwrap_or_else(|e| panic!("{e:#}"));
    let cpus = counters::possible_cpus().unwrap_or_else(|e| panic!("{e:#}"));
    let sizes = program::load_sizes(&set, &set.compile());
    let mut names: Vec<&str> = ebpf.maps().map(|(n, _)| n).collect();
    names.sort_unstable();
    let defined: Vec<&str> = defs.iter().map(|d| d.name.as_str()).collect();
    assert_eq!(names, defined, "the maps loaded are the maps defined");
    let mut kernel_total = 0;
    for (name, map) in ebpf.maps() {
        let d = defs.iter().find(|d| d.name == name).expect("defined");
        let entries = sizes
            .iter()
            .find(|(n, _)| *n == name)
            .map_or(Entries::Fixed(d.shape.max_entries), |(_, e)| *e);
        let shape = kernel::Shape {
            max_entries: entries.at(cpus),
            ..d.shape
        };
        let data = data(name, map);
        let info = data.info().expect("map info");
        assert_eq!(info.max_entries(), shape.max_entries, "{name}: max_entries");
        let held = shape
            .allocated_per_entry()
            .then(|| held(name, map, shape.key_size, shape.value_size));
        let ours = kernel::usage(&shape, cpus, held);
        let theirs = memlock(name, data);
        assert_eq!(
            ours, theirs,
            "{name}: computed {ours} bytes, the kernel counts {theirs}"
        );
        kernel_total += theirs;
    }
    // The table's total at load: the kernel's, with the tries' few entries.
    let f = memory::footprint(&defs, &sizes, cpus);
    let tries: u64 = f
        .maps
        .iter()
        .filter(|r| r.when_full)
        .map(|r| r.bytes_here)
        .sum();
    assert!(kernel_total >= f.total_here && kernel_total < f.total_here + tries);
    (names.len(), kernel_total)
}

#[test]
fn every_map_counts_as_the_kernel_counts_it() {
    let (maps, bytes) = compare(DEFAULT_RULES);
    assert!(maps > 30, "{maps} maps");
    let (_, with_lists) = compare(&with_lists());
    // The source hints at full size, and the few prefixes in the tries.
    assert!(
        with_lists > bytes + 2_000_000,
        "{with_lists} against {bytes}"
    );
}

/// `status --memory` where no filter is loaded: the table of the built-in
/// rules, as text and as JSON, with the host's column and the three others.
#[test]
fn status_shows_the_table_of_the_built_in_rules_when_nothing_runs() {
    let root = std::env::temp_dir().join(format!("filterctl-memory-{}", std::process::id()));
    let run = |args: &[&str]| {
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_filterctl"))
            .arg("--pin-root")
            .arg(&root)
            .args(args)
            .output()
            .expect("filterctl runs");
        let (stdout, stderr) = (
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr),
        );
        assert!(out.status.success(), "filterctl {args:?}: {stderr}");
        stdout
    };
    let text = run(&["status", "--memory"]);
    for line in [
        "no filter loaded",
        "DOOR",
        "COUNTERS",
        "192 CPUs",
        "total at load",
    ] {
        assert!(text.contains(line), "no {line:?} in:\n{text}");
    }
    let doc: serde_json::Value =
        serde_json::from_str(&run(&["status", "--memory", "--json"])).expect("JSON");
    let m = &doc["memory"][0];
    assert!(m["interface"].is_null(), "{m}");
    assert_eq!(m["cpus"], serde_json::json!([2, 64, 192]));
    let maps = m["maps"].as_array().expect("maps");
    let at_192: u64 = maps
        .iter()
        .filter(|r| r["when_full"] == false)
        .map(|r| r["bytes_at"][2].as_u64().expect("bytes"))
        .sum();
    assert_eq!(m["total_at"][2].as_u64(), Some(at_192));
    let counters = maps
        .iter()
        .find(|r| r["map"] == "COUNTERS")
        .expect("COUNTERS");
    assert_eq!(counters["layout"], "cpu-blocks");
    assert!(!root.exists(), "status made {}", root.display());
}
