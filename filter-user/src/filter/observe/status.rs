//! `status`: what each interface runs, read from its pins: program,
//! generation, attach mode, rule set and where it came from.

use filter_common::{
    CONFIG_FRAGMENT_DROP, CONFIG_MONITOR, GIT_MODIFIED, GIT_NONE, META_SOURCE_LEN, SHARED_FLAG,
};

use crate::{
    rules::{
        adaptive::AdaptiveBlock,
        hex,
        imports::{Added, FlowImport},
    },
    state::{
        PinRoot, current_generation,
        generation::{Hook, attach_mode_name, hook_of, read_flag},
        read_config, read_meta,
        record::read_record,
        shared,
    },
    sys,
};

/// What `status` reports for one interface.
#[derive(Debug, serde::Serialize)]
pub(crate) struct Status {
    pub(crate) interface: String,
    /// False when the interface no longer exists: the filter is attached to
    /// nothing, whatever its mode says.
    pub(crate) interface_present: bool,
    pub(crate) program_id: u32,
    pub(crate) link_id: u32,
    pub(crate) generation: u32,
    pub(crate) stale_generations: Vec<u32>,
    pub(crate) attach_mode: &'static str,
    /// How the reply guard's request recorder hooks egress: "tcx", or
    /// "clsact" on kernels without TCX; null when none runs.
    pub(crate) request_recorder: Option<&'static str>,
    pub(crate) rules_digest: String,
    pub(crate) rules_source: String,
    /// Commit of the git work tree holding the rule file, if any.
    pub(crate) git_commit: Option<String>,
    /// Whether the file differed from that commit when it was loaded.
    pub(crate) git_modified: bool,
    /// The file's rules (adaptive blocks are listed apart).
    pub(crate) rule_count: u32,
    /// Every rule the program runs, the file's and the adaptive blocks':
    /// rule indexes (stats, /metrics, capture comments) go up to this.
    #[serde(skip)]
    pub(crate) running_rules: u32,
    pub(crate) mode: &'static str,
    pub(crate) fragments: &'static str,
    pub(crate) loaded_at_unix: u64,
    /// Blocks `serve`'s surge detection added to the file's rules.
    pub(crate) adaptive_blocks: Vec<AdaptiveBlock>,
    /// FlowSpec routes `serve` imported from its speaker (`[upstream.import]`).
    pub flowspec_imports: Vec<FlowImport>,
    /// The other interfaces under the pin root that share this one's table
    /// of the host's requests: an answer may return by any of them.
    pub requests_shared_with: Vec<String>,
    /// The other interfaces with a table of their own (another build's):
    /// an answer that returns by one of them to a request that left by this
    /// one is dropped.
    pub requests_apart_from: Vec<String>,
    /// Whether the running generation asks the shared table before it drops
    /// an answer its own copy does not know; null for an older build's.
    pub requests_shared_flag: Option<bool>,
}

impl Status {
    /// What `serve` added to the file's rules, to keep through a reload.
    pub(crate) fn added(&self) -> Added {
        Added {
            blocks: self.adaptive_blocks.clone(),
            imports: self.flowspec_imports.clone(),
        }
    }
}

pub(crate) fn status(root: &PinRoot, iface: &str) -> anyhow::Result<Status> {
    retry(|| status_once(root, iface))
}

/// Runs `read` again when it fails, at most twice more: a reload that lands
/// between reading the link and reading the generation's maps removes the
/// generation being read, and the link then names the new one.
pub(crate) fn retry<T>(mut read: impl FnMut() -> anyhow::Result<T>) -> anyhow::Result<T> {
    let mut tries = 0;
    loop {
        match read() {
            Err(_) if tries < 2 => tries += 1,
            other => return other,
        }
    }
}

/// One read of an interface's status, without retrying.
pub(crate) fn status_once(root: &PinRoot, iface: &str) -> anyhow::Result<Status> {
    let dir = root.iface_dir(iface);
    let current = current_generation(&dir)?;
    let meta = read_meta(&current.dir)?;
    let config = read_config(&current.dir)?;
    // Only read when META says there are some: the record is 512 KiB.
    // META's adaptive_blocks counts imported routes too.
    let (adaptive_blocks, flowspec_imports) = if meta.adaptive_blocks > 0 {
        let r = read_record(&current.dir)?;
        (r.adaptive_blocks, r.flowspec_imports)
    } else {
        (Vec::new(), Vec::new())
    };
    // Of the other interfaces too: a folder of theirs that can't be read
    // is theirs to report, not a reason this one's status fails.
    let sharing = shared::sharing(&dir).unwrap_or_else(|e| {
        log::debug!("cannot tell who shares {iface}'s requests: {e:#}");
        shared::Sharing::default()
    });
    let shared_flag = read_flag(&current.dir, SHARED_FLAG)?.map(|f| f != 0);
    let source_len = meta
        .source
        .iter()
        .position(|&b| b == 0)
        .unwrap_or(META_SOURCE_LEN);
    Ok(Status {
        interface: iface.to_string(),
        interface_present: sys::ifindex(iface).is_ok(),
        program_id: current.program_id,
        link_id: current.link_id,
        generation: current.generation,
        stale_generations: current.stale,
        attach_mode: attach_mode_name(meta.attach_mode),
        request_recorder: hook_of(&dir, &current.dir).map(Hook::name),
        rules_digest: hex(&meta.digest),
        rules_source: String::from_utf8_lossy(&meta.source[..source_len]).into_owned(),
        git_commit: (meta.git_state != GIT_NONE)
            .then(|| String::from_utf8_lossy(&meta.git_commit).into_owned()),
        git_modified: meta.git_state == GIT_MODIFIED,
        // META counts the file's rules and serve's (blocks, imports) apart.
        rule_count: meta.rule_count,
        running_rules: meta.rule_count.saturating_add(meta.adaptive_blocks),
        mode: if config.flags & CONFIG_MONITOR != 0 {
            "monitor"
        } else {
            "enforce"
        },
        fragments: if config.flags & CONFIG_FRAGMENT_DROP != 0 {
            "drop"
        } else {
            "pass"
        },
        loaded_at_unix: meta.loaded_at_unix,
        adaptive_blocks,
        flowspec_imports,
        requests_shared_with: sharing.with,
        requests_apart_from: sharing.apart,
        requests_shared_flag: shared_flag,
    })
}

/// Prefix length by which the running filter keys sources of `family`.
pub(crate) fn source_prefix(root: &PinRoot, iface: &str, family: u8) -> anyhow::Result<u8> {
    let current = current_generation(&root.iface_dir(iface))?;
    Ok(read_config(&current.dir)?.src_prefix(family))
}
