//! The simulator: runs frames through the real XDP program with
//! BPF_PROG_TEST_RUN, loaded with a rule set into maps of its own and
//! attached to no interface. `replay` is built on it, and so are the
//! verdict tests and the benchmarks.

use std::time::Duration;

use anyhow::{Context as _, anyhow, bail};
use aya::{
    Ebpf,
    maps::PerCpuArray,
    programs::{SchedClassifier, TestRun as _, TestRunOptions, Xdp},
};
use filter_common::{
    Counter, MAP_COUNTERS, MAP_RULE_STATS, PROGRAM_NAME, REASON_COUNT, REQUESTS_PROGRAM_NAME,
    Reason, STATS_MONITOR_SLOT,
};

use super::{
    lifecycle::{flags, program},
    observe::{
        counters, limiter,
        stats::{self, Totals},
    },
};
use crate::rules::RuleSet;

pub const XDP_DROP: u32 = 1;
pub const XDP_PASS: u32 = 2;

/// A loaded, unattached copy of the filter with its own maps.
pub struct Simulator {
    ebpf: Ebpf,
    /// The counter array, mapped once: replay reads it after every frame.
    counters: std::cell::OnceCell<counters::Blocks>,
}

impl Simulator {
    pub fn new(set: &RuleSet) -> anyhow::Result<Self> {
        Ok(Simulator::of(program::prepare(set, None, &[])?))
    }

    /// A copy whose time is what [`Simulator::set_clock`] says, not the
    /// kernel's: frames run on their capture's clock.
    pub fn with_virtual_clock(set: &RuleSet) -> anyhow::Result<Self> {
        Ok(Simulator::of(program::prepare_object(
            crate::EBPF_OBJECT,
            set,
            None,
            &[],
            filter_common::CONFIG_VIRTUAL_CLOCK,
        )?))
    }

    /// A copy of another build's filter (its ELF object), for comparing
    /// two builds in one process.
    pub fn with_object(set: &RuleSet, object: &[u8]) -> anyhow::Result<Self> {
        Ok(Simulator::of(program::prepare_object(
            object,
            set,
            None,
            &[],
            0,
        )?))
    }

    fn of(ebpf: Ebpf) -> Self {
        Simulator {
            ebpf,
            counters: std::cell::OnceCell::new(),
        }
    }

    fn counter_blocks(&self) -> anyhow::Result<&counters::Blocks> {
        if let Some(b) = self.counters.get() {
            return Ok(b);
        }
        let Some(aya::maps::Map::Array(map)) = self.ebpf.map(MAP_COUNTERS) else {
            bail!("no array {MAP_COUNTERS}");
        };
        let blocks = counters::Blocks::map(map)?;
        Ok(self.counters.get_or_init(|| blocks))
    }

    /// Sets the program's time (ns) for the runs that follow; only a copy
    /// made [`Simulator::with_virtual_clock`] reads it.
    pub fn set_clock(&mut self, ns: u64) -> anyhow::Result<()> {
        let section = filter_common::VIRTUAL_CLOCK_SECTION;
        let map = self
            .ebpf
            .map_mut(section)
            .ok_or_else(|| anyhow!("section {section} missing from the eBPF object"))?;
        aya::maps::Array::<_, u64>::try_from(map)?
            .set(0, ns, 0)
            .context("failed to set the program's clock")
    }

    /// Packets counted per UDP source port since the load (what the surge
    /// detector reads).
    pub fn udp_port_packets(&self) -> anyhow::Result<Vec<u64>> {
        Ok(self.counter_blocks()?.packets())
    }

    /// Sets what the program copies of dropped frames (`filterctl
    /// capture`'s switch), for measuring what a capture costs.
    pub fn set_capture(&mut self, c: filter_common::CaptureConfig) -> anyhow::Result<()> {
        let map = self
            .ebpf
            .map_mut(filter_common::MAP_CAPTURE)
            .ok_or_else(|| anyhow!("no map {}", filter_common::MAP_CAPTURE))?;
        aya::maps::Array::try_from(map)?.set(0, c, 0)?;
        flags::set(
            &mut self.ebpf,
            filter_common::CAPTURE_FLAG,
            (c.until_ns != 0) as u32,
        )
    }

    /// How many sources the per-source limiter holds.
    pub fn limiter_sources(&self) -> anyhow::Result<usize> {
        let map = self
            .ebpf
            .map(filter_common::MAP_SOURCES)
            .ok_or_else(|| anyhow!("no map {}", filter_common::MAP_SOURCES))?;
        let aya::maps::Map::Array(data) = map else {
            anyhow::bail!("{} is not an array", filter_common::MAP_SOURCES);
        };
        Ok(limiter::sources(data)?.0.len())
    }

    pub fn program(&self) -> anyhow::Result<&Xdp> {
        Ok(self
            .ebpf
            .program(PROGRAM_NAME)
            .ok_or_else(|| anyhow!("no program {PROGRAM_NAME}"))?
            .try_into()?)
    }

    /// The XDP action for one frame. The kernel's test harness refuses
    /// frames shorter than 14 bytes, and hands the program only the first
    /// 3520 bytes of longer frames (the rest as fragments it cannot read),
    /// so frames over that size are judged as if truncated.
    pub fn run(&self, frame: &[u8]) -> anyhow::Result<u32> {
        Ok(self.run_repeat(frame, 1)?.0)
    }

    /// Runs `frame` `repeat` times; returns the action and the kernel's
    /// own mean time per run.
    fn run_repeat(&self, frame: &[u8], repeat: u32) -> anyhow::Result<(u32, Duration)> {
        let opts = TestRunOptions {
            data_in: Some(frame),
            repeat,
            ..TestRunOptions::new()
        };
        let r = self
            .program()?
            .test_run(opts)
            .with_context(|| format!("BPF_PROG_TEST_RUN failed on a {}-byte frame", frame.len()))?;
        Ok((r.return_value, r.duration))
    }

    /// Runs an outgoing frame through the egress program, which records it
    /// when it is a request to a guarded port.
    pub fn record_request(&self, frame: &[u8]) -> anyhow::Result<()> {
        let program: &SchedClassifier = self
            .ebpf
            .program(REQUESTS_PROGRAM_NAME)
            .ok_or_else(|| anyhow!("no program {REQUESTS_PROGRAM_NAME}"))?
            .try_into()?;
        let opts = TestRunOptions {
            data_in: Some(frame),
            ..TestRunOptions::new()
        };
        program
            .test_run(opts)
            .context("BPF_PROG_TEST_RUN failed on the egress program")?;
        Ok(())
    }

    fn per_cpu_sum(&self, map: &str, index: u32) -> anyhow::Result<Totals> {
        let array: PerCpuArray<_, Counter> =
            PerCpuArray::try_from(self.ebpf.map(map).ok_or_else(|| anyhow!("no map {map}"))?)?;
        stats::sum_per_cpu(&array, index)
    }

    /// The reason slots ([`filter_common::STATS_SLOTS`]), summed over the
    /// CPUs.
    fn reason_slots(&self) -> anyhow::Result<Vec<Totals>> {
        Ok(self.counter_blocks()?.reasons())
    }

    pub fn reason(&self, reason: Reason) -> anyhow::Result<Totals> {
        Ok(self.counter_blocks()?.reason(reason as usize))
    }

    /// Counters of every reason, in [`Reason::ALL`] order.
    pub fn reasons(&self) -> anyhow::Result<Vec<Totals>> {
        let mut slots = self.reason_slots()?;
        slots.truncate(REASON_COUNT as usize);
        Ok(slots)
    }

    pub fn monitor_passed(&self) -> anyhow::Result<Totals> {
        Ok(self.reason_slots()?[STATS_MONITOR_SLOT as usize])
    }

    pub fn rule(&self, index: u32) -> anyhow::Result<Totals> {
        self.per_cpu_sum(MAP_RULE_STATS, index)
    }
}
