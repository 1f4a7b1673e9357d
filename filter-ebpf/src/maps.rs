//! The program's maps and the small helpers that read and count through them.

use aya_ebpf::{
    macros::map,
    maps::{Array, PerCpuArray},
};
use filter_common::{
    Chain, Config, Counter, MAX_CHAINS, MAX_RULES, Meta, PORT_SLOTS, Reason, Rule,
    STATS_MONITOR_SLOT, STATS_SLOTS,
};

#[map(name = "STATS")]
static STATS: PerCpuArray<Counter> = PerCpuArray::with_max_entries(STATS_SLOTS, 0);

#[map(name = "RULE_STATS")]
static RULE_STATS: PerCpuArray<Counter> = PerCpuArray::with_max_entries(MAX_RULES, 0);

#[map(name = "CONFIG")]
static CONFIG: Array<Config> = Array::with_max_entries(1, 0);

// Only the controller reads and writes it; declared here so that it lives
// and dies with the program's other maps.
#[map(name = "META")]
static META: Array<Meta> = Array::with_max_entries(1, 0);

#[map(name = "RULES")]
static RULES: Array<Rule> = Array::with_max_entries(MAX_RULES, 0);

#[map(name = "PORT_CHAINS")]
static PORT_CHAINS: Array<u32> = Array::with_max_entries(PORT_SLOTS, 0);

#[map(name = "CHAINS")]
static CHAINS: Array<Chain> = Array::with_max_entries(MAX_CHAINS, 0);

#[inline(always)]
pub fn config_flags() -> u32 {
    // Touch META so the linker keeps it; reading one word costs nothing.
    let _ = META.get_ptr(0);
    CONFIG.get(0).map_or(0, |c| c.flags)
}

#[inline(always)]
fn add(counter: Option<*mut Counter>, bytes: u64) {
    if let Some(c) = counter {
        // Per-CPU slot: no other CPU writes it, so plain adds are exact.
        unsafe {
            (*c).packets += 1;
            (*c).bytes += bytes;
        }
    }
}

#[inline(always)]
pub fn count_reason(reason: Reason, bytes: u64) {
    add(STATS.get_ptr_mut(reason as u32), bytes);
}

#[inline(always)]
pub fn count_monitored(bytes: u64) {
    add(STATS.get_ptr_mut(STATS_MONITOR_SLOT), bytes);
}

#[inline(always)]
pub fn count_rule(index: u32, bytes: u64) {
    add(RULE_STATS.get_ptr_mut(index), bytes);
}

#[inline(always)]
pub fn chain_for(slot: u32) -> Option<&'static Chain> {
    let index = *PORT_CHAINS.get(slot)?;
    CHAINS.get(index)
}

#[inline(always)]
pub fn rule(index: u32) -> Option<&'static Rule> {
    RULES.get(index)
}
