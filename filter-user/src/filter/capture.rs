//! Copies of dropped frames (`filterctl capture`): turning the program's
//! copy on for chosen reasons and rules, reading the copies from its ring
//! buffer, and writing them as pcapng with each frame's reason and rule.

use std::{
    borrow::Cow,
    io::Write,
    os::fd::AsFd as _,
    path::PathBuf,
    time::{Duration, SystemTime, UNIX_EPOCH},
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

use super::{lifecycle::flags, observe::stats};
use crate::{
    state::{PinRoot, current_generation, pins::open_map},
    sys,
};

/// How long the program keeps copying without hearing from the controller:
/// a capture whose filterctl died stops by itself within this.
const LEASE: Duration = Duration::from_secs(3);

/// Which dropped frames to copy, and how many.
#[derive(Debug, Clone)]
pub struct Selection {
    /// Empty: every reason that drops.
    pub reasons: Vec<Reason>,
    pub rule: Option<String>,
    /// One frame in `sample`.
    pub sample: u32,
    /// Frames per second, in all.
    pub max_pps: u32,
    pub snaplen: u32,
}

/// One copied frame.
#[derive(Debug, Clone)]
pub struct Frame {
    pub reason: Reason,
    /// The rule that matched it, if any.
    pub rule: Option<String>,
    pub frame_len: u32,
    pub data: Vec<u8>,
}

impl Frame {
    /// The pcapng comment: what `replay` and a person read back.
    pub fn comment(&self) -> String {
        match &self.rule {
            Some(rule) => format!("reason={} rule={rule}", self.reason.name()),
            None => format!("reason={}", self.reason.name()),
        }
    }
}

/// A running capture; dropping it stops the program's copy.
pub struct Capture {
    /// The interface's pin folder: each generation has its own switch.
    dir: PathBuf,
    config: Array<MapData, CaptureConfig>,
    ring: RingBuf<MapData>,
    template: CaptureConfig,
    rule_names: Vec<String>,
}

/// The reason named `name` (as in stats), with the allowed names if none.
pub fn parse_reason(name: &str) -> anyhow::Result<Reason> {
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
    pub fn start(root: &PinRoot, iface: &str, sel: &Selection) -> anyhow::Result<Capture> {
        let dir = root.iface_dir(iface);
        if !dir.is_dir() {
            bail!("no filter loaded on {iface}");
        }
        let rule_names: Vec<String> = stats::read_interface(root, iface)?
            .rules
            .into_iter()
            .map(|r| r.name)
            .collect();
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
            dir,
            config,
            ring,
            template,
            rule_names,
        };
        capture.keep_alive()?;
        Ok(capture)
    }

    /// Pushes the deadline forward; call it at least every second.
    pub fn keep_alive(&mut self) -> anyhow::Result<()> {
        let c = CaptureConfig {
            until_ns: sys::monotonic_coarse_ns() + LEASE.as_nanos() as u64,
            ..self.template
        };
        self.config
            .set(0, c, 0)
            .context("cannot write the capture settings")?;
        // Then the running generation's switch; again every second, for a
        // generation that a reload made meanwhile (a reload copies it from
        // the settings, but may have read them just before a capture began).
        self.switch(1)
    }

    fn switch(&self, on: u32) -> anyhow::Result<()> {
        let current = current_generation(&self.dir)?;
        flags::write(&current.dir, CAPTURE_FLAG, on)
    }

    /// Waits until copies are ready or `timeout` passed.
    pub fn wait(&self, timeout: Duration) -> anyhow::Result<()> {
        sys::wait_readable(self.ring.as_fd(), timeout)?;
        Ok(())
    }

    /// Every copy ready now.
    pub fn drain(&mut self) -> Vec<Frame> {
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

/// A pcapng file of copied frames, Ethernet, one comment per frame.
pub struct PcapngSink<W: Write> {
    writer: PcapNgWriter<W>,
}

impl<W: Write> PcapngSink<W> {
    pub fn new(out: W, snaplen: u32) -> anyhow::Result<Self> {
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

    pub fn write(&mut self, frame: &Frame) -> anyhow::Result<()> {
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap_or_default();
        self.writer
            .write_pcapng_block(EnhancedPacketBlock {
                interface_id: 0,
                timestamp: now,
                original_len: frame.frame_len,
                data: Cow::Borrowed(&frame.data),
                options: vec![EnhancedPacketOption::Comment(Cow::Owned(frame.comment()))],
            })
            .context("cannot write a frame to the capture file")?;
        Ok(())
    }

    pub fn finish(self) -> anyhow::Result<W> {
        let mut out = self.writer.into_inner();
        out.flush().context("cannot write the capture file")?;
        Ok(out)
    }
}
