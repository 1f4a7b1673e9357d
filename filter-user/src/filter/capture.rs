//! Copies of dropped frames (`filterctl capture`): turning the program's
//! copy on for chosen reasons and rules, reading the copies from its ring
//! buffer, and writing them as pcapng with each frame's reason and rule.

use std::{
    borrow::Cow,
    fs::{File, OpenOptions},
    io::Write,
    os::{
        fd::AsFd as _,
        unix::fs::{MetadataExt as _, OpenOptionsExt as _},
    },
    path::{Path, PathBuf},
    time::{Duration, Instant, SystemTime, UNIX_EPOCH},
};

use anyhow::{Context as _, bail};
use aya::maps::{Array, MapData, RingBuf};
use filter_common::{
    CAPTURE_ANY_RULE, CAPTURE_FLAG, CAPTURE_SNAP_MAX, CaptureConfig, CaptureRecord, MAP_CAPTURE,
    MAP_CAPTURE_RING, Reason,
};
use pcap_file::{
    DataLink,
    pcapng::{
        PcapNgWriter,
        blocks::{
            enhanced_packet::{EnhancedPacketBlock, EnhancedPacketOption},
            interface_description::{InterfaceDescriptionBlock, InterfaceDescriptionOption},
        },
    },
};

use super::{
    lifecycle::flags,
    observe::{stats, status},
};
use crate::{
    state::{PinRoot, current_generation, pins::open_map},
    sys,
};

/// How long the program keeps copying without hearing from the controller:
/// a capture whose filterctl died stops by itself within this.
const LEASE: Duration = Duration::from_secs(3);

/// How long the running generation may stay unreadable before a capture
/// ends: a reload removes the old generation's pins within milliseconds
/// (reads meanwhile are retried on the new one), while an unloaded filter
/// or a pin removed by hand stays so.
const PERSISTENT: Duration = Duration::from_secs(5);

/// Which dropped frames to copy, and how many.
#[derive(Debug, Clone)]
pub(crate) struct Selection {
    /// Empty: every reason that drops.
    pub(crate) reasons: Vec<Reason>,
    pub(crate) rule: Option<String>,
    /// One frame in `sample`.
    pub(crate) sample: u32,
    /// Frames per second, in all.
    pub(crate) max_pps: u32,
    pub(crate) snaplen: u32,
}

/// One copied frame.
#[derive(Debug, Clone)]
pub(crate) struct Frame {
    pub(crate) reason: Reason,
    /// The rule that matched it, if any.
    pub(crate) rule: Option<String>,
    frame_len: u32,
    pub(crate) data: Vec<u8>,
}

impl Frame {
    /// The pcapng comment: what `replay` and a person read back.
    pub(crate) fn comment(&self) -> String {
        match &self.rule {
            Some(rule) => format!("reason={} rule={rule}", self.reason.name()),
            None => format!("reason={}", self.reason.name()),
        }
    }
}

/// A running capture; dropping it stops the program's copy. The settings
/// and the ring are state maps, which reloads keep; the switch and the rule
/// names belong to one generation, and are taken again after a reload.
pub(crate) struct Capture {
    root: PinRoot,
    iface: String,
    /// The interface's pin folder: each generation has its own switch.
    dir: PathBuf,
    config: Array<MapData, CaptureConfig>,
    ring: RingBuf<MapData>,
    template: CaptureConfig,
    /// The generation whose rule names label the copies.
    generation: u32,
    rule_names: Vec<String>,
    /// Copies the previous generation made, labelled with its rule names
    /// before the new generation's replaced them.
    pending: Vec<Frame>,
    failing: Failing,
}

/// Failures of the reads a reload can interrupt: tolerated until they
/// have lasted [`PERSISTENT`].
#[derive(Debug, Default)]
struct Failing {
    since: Option<Instant>,
}

impl Failing {
    fn check(&mut self, read: anyhow::Result<()>, now: Instant) -> anyhow::Result<()> {
        let Err(e) = read else {
            self.since = None;
            return Ok(());
        };
        let since = *self.since.get_or_insert(now);
        if now.duration_since(since) < PERSISTENT {
            return Ok(());
        }
        Err(e.context(format!(
            "the running generation stayed unreadable for {} s",
            PERSISTENT.as_secs()
        )))
    }
}

/// The generation running on `iface` and its rule names, by rule index
/// (adaptive blocks included).
fn running_rules(root: &PinRoot, iface: &str) -> anyhow::Result<(u32, Vec<String>)> {
    let status = status::status_once(root, iface)?;
    let names = stats::counters(root, &status)?
        .rules
        .into_iter()
        .map(|r| r.name)
        .collect();
    Ok((status.generation, names))
}

/// The reason named `name` (as in stats), with the allowed names if none.
pub(crate) fn parse_reason(name: &str) -> anyhow::Result<Reason> {
    match Reason::ALL.iter().find(|r| r.name() == name && r.drops()) {
        Some(r) => Ok(*r),
        None => {
            let allowed: Vec<&str> = Reason::ALL
                .iter()
                .filter(|r| r.drops())
                .map(|r| r.name())
                .collect();
            bail!(
                "unknown drop reason {name:?}: allowed are {}",
                allowed.join(", ")
            )
        }
    }
}

impl Capture {
    /// Turns the copy on in the filter running on `iface`.
    pub(crate) fn start(root: &PinRoot, iface: &str, sel: &Selection) -> anyhow::Result<Capture> {
        let dir = root.iface_dir(iface);
        if !dir.is_dir() {
            bail!("no filter loaded on {iface}");
        }
        let (generation, rule_names) = status::retry(|| running_rules(root, iface))?;
        let rule = match &sel.rule {
            None => CAPTURE_ANY_RULE,
            Some(name) => rule_names.iter().position(|n| n == name).with_context(|| {
                format!(
                    "{iface} runs no rule {name:?}: it runs {}",
                    rule_names.join(", ")
                )
            })? as u32,
        };
        let reasons = if sel.reasons.is_empty() {
            Reason::ALL.iter().filter(|r| r.drops()).copied().collect()
        } else {
            sel.reasons.clone()
        };
        let template = CaptureConfig {
            until_ns: 0,
            reasons: reasons.iter().fold(0, |m, r| m | 1 << *r as u32),
            rule,
            sample: sel.sample.max(1),
            // Each CPU may copy the whole budget: user space enforces the
            // total; the program's bound keeps a flood from filling the ring.
            per_cpu_pps: sel.max_pps.max(1),
            snaplen: sel.snaplen.clamp(1, CAPTURE_SNAP_MAX as u32),
            _pad: 0,
        };
        let ring = RingBuf::try_from(open_map(&dir, MAP_CAPTURE_RING).with_context(|| {
            format!("the filter on {iface} predates captures: `filterctl reload` it first")
        })?)?;
        let config = Array::try_from(open_map(&dir, MAP_CAPTURE)?)?;
        let mut capture = Capture {
            root: root.clone(),
            iface: iface.to_string(),
            dir,
            config,
            ring,
            template,
            generation,
            rule_names,
            pending: Vec::new(),
            failing: Failing::default(),
        };
        capture.keep_alive()?;
        Ok(capture)
    }

    /// Pushes the deadline forward; call it at least every second. Fails
    /// only when the settings cannot be written, or the running generation
    /// stayed unreadable for [`PERSISTENT`].
    pub(crate) fn keep_alive(&mut self) -> anyhow::Result<()> {
        let c = CaptureConfig {
            until_ns: sys::monotonic_coarse_ns() + LEASE.as_nanos() as u64,
            ..self.template
        };
        self.config
            .set(0, c, 0)
            .context("cannot write the capture settings")?;
        let followed = self.follow();
        self.failing
            .check(followed, Instant::now())
            .with_context(|| format!("the capture on {} cannot go on", self.iface))
    }

    /// Turns the running generation's switch on; again every second, for a
    /// generation that a reload made meanwhile (a reload copies it from the
    /// settings, but may have read them just before a capture began). After
    /// a reload, the old generation's copies are read before its rule names
    /// give way to the new one's. A reload removing the generation being
    /// read fails this; the next call finds the new one.
    fn follow(&mut self) -> anyhow::Result<()> {
        let current = current_generation(&self.dir)?;
        flags::write(&current.dir, CAPTURE_FLAG, 1)?;
        if current.generation != self.generation {
            let old = self.read_ring();
            self.pending.extend(old);
            (self.generation, self.rule_names) = running_rules(&self.root, &self.iface)?;
        }
        Ok(())
    }

    fn switch(&self, on: u32) -> anyhow::Result<()> {
        let current = current_generation(&self.dir)?;
        flags::write(&current.dir, CAPTURE_FLAG, on)
    }

    /// Waits until copies are ready or `timeout` passed.
    pub(crate) fn wait(&self, timeout: Duration) -> anyhow::Result<()> {
        sys::wait_readable(self.ring.as_fd(), timeout)?;
        Ok(())
    }

    /// Every copy ready now.
    pub(crate) fn drain(&mut self) -> Vec<Frame> {
        let mut out = std::mem::take(&mut self.pending);
        out.extend(self.read_ring());
        out
    }

    /// The copies in the ring, labelled with the current rule names.
    fn read_ring(&mut self) -> Vec<Frame> {
        let mut out = Vec::new();
        while let Some(item) = self.ring.next() {
            if item.len() < std::mem::size_of::<CaptureRecord>() {
                continue;
            }
            // SAFETY: the program writes whole CaptureRecords (plain data);
            // read_unaligned because the ring gives no alignment promise.
            let r: CaptureRecord =
                unsafe { item.as_ptr().cast::<CaptureRecord>().read_unaligned() };
            let Some(reason) = Reason::ALL.get(r.reason as usize) else {
                continue;
            };
            let len = (r.cap_len as usize).min(CAPTURE_SNAP_MAX);
            out.push(Frame {
                reason: *reason,
                rule: self.rule_names.get(r.rule as usize).cloned(),
                frame_len: r.frame_len,
                data: r.data[..len].to_vec(),
            });
        }
        out
    }
}

impl Drop for Capture {
    fn drop(&mut self) {
        let _ = self.config.set(0, CaptureConfig::default(), 0);
        // A capture killed before this leaves the switch on: the program
        // then reads the settings on every drop, finds the lease run out
        // and copies nothing, until the next capture or reload.
        let _ = self.switch(0);
    }
}

/// Creates the file a capture writes: always a new one (O_EXCL, and
/// O_NOFOLLOW besides), so that a path planted beforehand, such as a
/// symbolic link to another user's file, is refused rather than written
/// through; readable by its owner only (mode 0600: it holds other hosts'
/// packets).
pub(crate) fn create_file(path: &Path) -> anyhow::Result<File> {
    let opened = OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .custom_flags(libc::O_NOFOLLOW)
        .open(path);
    match opened {
        Ok(file) => Ok(file),
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
            let what = match std::fs::symlink_metadata(path) {
                Ok(m) if m.file_type().is_symlink() => "is a symbolic link",
                _ => "already exists",
            };
            bail!(
                "{} {what}: a capture writes only a new file (name another, or remove it first)",
                path.display()
            )
        }
        Err(e) => Err(e).with_context(|| format!("cannot create {}", path.display())),
    }
}

/// Removes the file a failed capture wrote at `path`, if `path` still
/// names `file` (and not something put in its place since); returns
/// whether it did.
pub(crate) fn remove_partial(path: &Path, file: &File) -> std::io::Result<bool> {
    let (ours, there) = (file.metadata()?, std::fs::symlink_metadata(path)?);
    if (ours.dev(), ours.ino()) != (there.dev(), there.ino()) {
        return Ok(false);
    }
    std::fs::remove_file(path)?;
    Ok(true)
}

/// A pcapng file of copied frames, Ethernet, one comment per frame.
pub(crate) struct PcapngSink<W: Write> {
    writer: PcapNgWriter<W>,
}

impl<W: Write> PcapngSink<W> {
    pub(crate) fn new(out: W, snaplen: u32) -> anyhow::Result<Self> {
        let mut writer = PcapNgWriter::new(out).context("cannot write the pcapng header")?;
        writer
            .write_pcapng_block(InterfaceDescriptionBlock {
                linktype: DataLink::ETHERNET,
                snaplen,
                // The writer stores nanoseconds; readers assume
                // microseconds unless told (tshark dated frames 1000 times
                // too late).
                options: vec![InterfaceDescriptionOption::IfTsResol(9)],
            })
            .context("cannot write the pcapng interface block")?;
        Ok(PcapngSink { writer })
    }

    pub(crate) fn write(&mut self, frame: &Frame) -> anyhow::Result<()> {
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap_or_default();
        self.writer
            .write_pcapng_block(EnhancedPacketBlock {
                interface_id: 0,
                timestamp: now,
                original_len: frame.frame_len,
                data: Cow::Borrowed(&frame.data),
                // epb_flags: inbound (XDP sees received frames only), so
                // that `filterctl replay` knows their direction.
                options: vec![
                    EnhancedPacketOption::Flags(1),
                    EnhancedPacketOption::Comment(Cow::Owned(frame.comment())),
                ],
            })
            .context("cannot write a frame to the capture file")?;
        Ok(())
    }

    pub(crate) fn finish(self) -> anyhow::Result<W> {
        let mut out = self.writer.into_inner();
        out.flush().context("cannot write the capture file")?;
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn failures_end_a_capture_only_once_they_last() {
        let t0 = Instant::now();
        let fail = || Err(anyhow::anyhow!("gen-3/CAPTURING is missing"));
        let mut f = Failing::default();
        assert!(f.check(fail(), t0).is_ok());
        assert!(f.check(fail(), t0 + PERSISTENT / 2).is_ok());
        // A read that succeeds starts the count again.
        assert!(f.check(Ok(()), t0 + PERSISTENT / 2).is_ok());
        assert!(f.check(fail(), t0 + PERSISTENT).is_ok());
        let err = f
            .check(fail(), t0 + PERSISTENT * 2)
            .expect_err("a failure lasting PERSISTENT ends the capture");
        let msg = format!("{err:#}");
        assert!(
            msg.contains("stayed unreadable") && msg.contains("CAPTURING is missing"),
            "{msg}"
        );
    }

    #[test]
    fn capture_files_are_new_private_and_never_followed() {
        struct Removed(PathBuf);
        impl Drop for Removed {
            fn drop(&mut self) {
                let _ = std::fs::remove_dir_all(&self.0);
            }
        }
        let dir = std::env::temp_dir().join(format!("flt-capfile-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let _removed = Removed(dir.clone());
        let (file, decoy, link) = (dir.join("c.pcapng"), dir.join("decoy"), dir.join("link"));
        let created = create_file(&file).expect("a new file");
        assert_eq!(created.metadata().unwrap().mode() & 0o777, 0o600);
        let err = create_file(&file).expect_err("an existing file");
        assert!(format!("{err}").contains("already exists"), "{err}");
        std::fs::write(&decoy, b"decoy").unwrap();
        std::os::unix::fs::symlink(&decoy, &link).unwrap();
        let err = create_file(&link).expect_err("a symbolic link");
        let msg = format!("{err}");
        assert!(
            msg.contains("is a symbolic link") && msg.contains(&*link.to_string_lossy()),
            "{msg}"
        );
        assert_eq!(std::fs::read(&decoy).unwrap(), b"decoy");
        // Only the file it created is removed, not one put in its place.
        std::fs::rename(&decoy, &file).unwrap();
        assert!(!remove_partial(&file, &created).unwrap());
        assert!(file.exists());
        std::fs::remove_file(&file).unwrap();
        let again = create_file(&file).unwrap();
        assert!(remove_partial(&file, &again).unwrap());
        assert!(!file.exists());
    }
}
