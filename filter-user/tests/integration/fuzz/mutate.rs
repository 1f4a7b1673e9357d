//! Deterministic mutations of seed inputs: a seeded generator, byte-level
//! changes (flips, random bytes, inserts, deletes, duplications, splices
//! with another seed, "interesting" integers written over length fields)
//! and TOML-aware ones (values, lines and tables replaced, duplicated,
//! dropped or swapped). Not coverage-guided: nothing here learns which
//! inputs reach new code, so its reach is what the seeds and the mutation
//! table give it.

/// SplitMix64: small, fast and the same on every machine for one seed.
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Rng {
        Rng(seed)
    }

    pub fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// 0..n; n > 0.
    pub fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }

    pub fn pick<'a, T>(&mut self, items: &'a [T]) -> &'a T {
        &items[self.below(items.len())]
    }
}

/// Values that sit on a boundary of some check, or of TOML itself.
const VALUES: &[&str] = &[
    "0",
    "-1",
    "1",
    "63",
    "64",
    "65",
    "1023",
    "1024",
    "65535",
    "65536",
    "4294967295",
    "4294967296",
    "9223372036854775807",
    "-9223372036854775808",
    "99999999999999999999",
    "1.5",
    "123.0",
    "1e999",
    "nan",
    "-inf",
    "true",
    "1979-05-27T07:32:00Z",
    "[]",
    "[123, 1900]",
    "{}",
    "{ offset = 64, mask = \"ffffffff\", value = \"ffffffff\" }",
    "\"\"",
    "\"0.0.0.0/0\"",
    "\"::/0\"",
    "\"192.0.2.1/24\"",
    "\"2001:db8::/129\"",
    "\"1bit\"",
    "\"10Tbit\"",
    "\"10.5Gbit\"",
    "\"0ms\"",
    "\"1ms\"",
    "\"365d\"",
    "\"366d\"",
    "\"0x\"",
    "\"0xffffffff\"",
    "\"0\u{e9}\"",
    "\"\u{20ac}\u{20ac}\"",
    "\"\\u0000\"",
    "\"\u{7f}\"",
    "\"1-65535\"",
    "\"65535-0\"",
    "\"-\"",
    "\" 1 - 2 \"",
    "\"udp\"",
    "\"tcp\"",
    "\"drop\"",
    "\"pass\"",
    "\"limit\"",
    "\"monitor\"",
    "\"per_source\"",
    "\"/dev/zero\"",
    "\"/dev/null\"",
    "\"/\"",
    "\"lists/bad-list.txt\"",
    "\"lists/shadow-like.txt\"",
    "'''multi\nline'''",
];

/// Whole lines: tables and keys a rule file may hold, and some it may not.
const LINES: &[&str] = &[
    "[[rule]]",
    "[ban]",
    "[per_source]",
    "[sources]",
    "[limits.a]",
    "[limits.\"\u{e9}\"]",
    "[rule]",
    "enabled = false",
    "action = \"limit\"",
    "limit = \"a\"",
    "aggregate_pps = 1",
    "aggregate_burst = 100000000",
    "burst_bytes = 64",
    "burst_packets = 1",
    "bps = \"1bit\"",
    "pps = 100000000",
    "after = \"1ms\"",
    "for = \"365d\"",
    "table_size = 1024",
    "ipv4_prefix = 1",
    "ipv6_prefix = 128",
    "deny = [\"0.0.0.0/0\"]",
    "allow = [\"::/0\", \"192.0.2.0/24\"]",
    "deny_files = [\"/dev/zero\"]",
    "allow_files = [\"lists/bad-list.txt\"]",
    "payload = { offset = 0, mask = \"07\", value = \"04\" }",
    "src_port = \"0-65535\"",
    "name = \"ntp-reflection\"",
    "# comment \u{7f}",
    "\u{feff}mode = \"enforce\"",
    "a.b.c = 1",
    "x = [",
    "\"",
];

/// Integers worth writing over a length or count field of a binary file.
const INTS: &[u32] = &[
    0,
    1,
    0x7f,
    0xff,
    0xffff,
    0x1_0000,
    0x7fff_ffff,
    0x8000_0000,
    0xffff_ffff,
    0xffff_fff0,
    12,
    28,
    32,
    256 * 1024 + 1,
];

/// One byte-level change; `other` is another seed, for splices.
pub fn mutate_bytes(rng: &mut Rng, data: &mut Vec<u8>, other: &[u8]) {
    let len = data.len();
    let at = if len == 0 { 0 } else { rng.below(len) };
    match rng.below(8) {
        0 if len > 0 => data[at] ^= 1 << rng.below(8),
        1 if len > 0 => data[at] = rng.next() as u8,
        2 => {
            let n = 1 + rng.below(8);
            let bytes: Vec<u8> = (0..n).map(|_| rng.next() as u8).collect();
            data.splice(at..at, bytes);
        }
        3 if len > 0 => {
            let end = (at + 1 + rng.below(32)).min(len);
            data.drain(at..end);
        }
        4 if len > 0 => {
            let end = (at + 1 + rng.below(64)).min(len);
            let chunk = data[at..end].to_vec();
            let to = rng.below(len + 1);
            data.splice(to..to, chunk);
        }
        5 if !other.is_empty() => {
            let from = rng.below(other.len());
            data.truncate(at);
            data.extend_from_slice(&other[from..]);
        }
        6 if len >= 4 => {
            let at = at.min(len - 4) & !3;
            let v = *rng.pick(INTS);
            let bytes = if rng.below(2) == 0 {
                v.to_le_bytes()
            } else {
                v.to_be_bytes()
            };
            data[at..at + 4].copy_from_slice(&bytes);
        }
        _ => data.truncate(at),
    }
}

/// One TOML-aware change, on lines and on the value after an '='.
pub fn mutate_toml(rng: &mut Rng, text: &str, other: &str) -> String {
    let mut lines: Vec<String> = text.lines().map(str::to_string).collect();
    if lines.is_empty() {
        lines.push(String::new());
    }
    let n = lines.len();
    let at = rng.below(n);
    match rng.below(7) {
        0 | 1 => lines[at] = replace_value(rng, &lines[at]),
        2 => lines.insert(at, rng.pick(LINES).to_string()),
        3 => {
            lines.remove(at);
        }
        4 => {
            let dup = lines[at].clone();
            lines.insert(rng.below(n + 1), dup);
        }
        5 => lines.swap(at, rng.below(n)),
        _ => {
            let theirs: Vec<&str> = other.lines().collect();
            if !theirs.is_empty() {
                let from = rng.below(theirs.len());
                let take = 1 + rng.below(8);
                let block = theirs[from..(from + take).min(theirs.len())]
                    .iter()
                    .map(|l| l.to_string());
                lines.splice(at..at, block);
            }
        }
    }
    let mut out = lines.join("\n");
    out.push('\n');
    out
}

/// The line with the value after one of its '=' (inline tables have
/// several) replaced by an interesting one.
fn replace_value(rng: &mut Rng, line: &str) -> String {
    let eqs: Vec<usize> = line.match_indices('=').map(|(i, _)| i).collect();
    let value = rng.pick(VALUES);
    if eqs.is_empty() {
        return format!("x = {value}");
    }
    let eq = *rng.pick(&eqs);
    let rest = &line[eq + 1..];
    let start = rest.len() - rest.trim_start().len();
    let body = &rest[start..];
    // A quoted value ends at its closing quote, any other at ',' or '}'.
    let len = if let Some(quoted) = body.strip_prefix('"') {
        quoted.find('"').map_or(body.len(), |q| q + 2)
    } else {
        body.find([',', '}']).unwrap_or(body.len())
    };
    let end = eq + 1 + start + len;
    format!("{} {value}{}", &line[..=eq], &line[end..])
}
