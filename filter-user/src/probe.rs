//! `filterctl doctor`: what this machine's kernel, mounts and privileges
//! let the filter do, each found by trying it where trying changes
//! nothing (a load attached nowhere, a query, an attach inside a network
//! namespace made for the probe and gone with it), and why a feature does
//! not run. Tests fake refusals with `FILTERCTL_FAKE` (see sys::fake).

use aya::{
    maps::MapType,
    programs::{ProgramType, SchedClassifier, TcAttachType, TestRun as _, TestRunOptions, Xdp},
    sys::{BpfHelper, is_helper_supported, is_map_supported},
};
use filter_common::PROGRAM_NAME;

use crate::{
    filter::lifecycle::program,
    privilege,
    rules::RuleSet,
    state::{
        PinRoot,
        bpffs::{MountDecision, MountFacts, mount_decision},
    },
    sys,
};

/// One feature: whether it runs here (`None`: could not be told), why,
/// and the kernel it needs.
#[derive(Debug, serde::Serialize)]
pub(crate) struct Feature {
    pub(crate) name: &'static str,
    pub(crate) runs: Option<bool>,
    pub(crate) why: String,
    pub(crate) needs: &'static str,
}

/// One interface: its driver and whether that driver runs XDP natively
/// (otherwise `auto` attaches in generic mode, slower but complete).
#[derive(Debug, serde::Serialize)]
pub(crate) struct Interface {
    pub(crate) name: String,
    pub(crate) driver: Option<String>,
    pub(crate) native_xdp: Option<bool>,
}

#[derive(Debug, serde::Serialize)]
pub(crate) struct Report {
    pub(crate) kernel: String,
    pub(crate) features: Vec<Feature>,
    pub(crate) interfaces: Vec<Interface>,
}

impl Report {
    pub(crate) fn runs(&self, name: &str) -> Option<bool> {
        self.features.iter().find(|f| f.name == name)?.runs
    }
}

/// Drivers with native XDP in the mainline kernel (their own XDP hook),
/// for the interfaces report; others run in generic mode.
const NATIVE_XDP_DRIVERS: &[&str] = &[
    "veth",
    "virtio_net",
    "tun",
    "mlx4_en",
    "mlx5_core",
    "i40e",
    "ice",
    "ixgbe",
    "ixgbevf",
    "igb",
    "igc",
    "bnxt_en",
    "ena",
    "nfp",
    "qede",
    "sfc",
    "thunderx-nicvf",
    "mvneta",
    "mvpp2",
    "stmmac",
    "hv_netvsc",
    "gve",
    "idpf",
    "fec",
    "tsnep",
    "bond",
    "netdevsim",
];

pub(crate) fn probe(root: &PinRoot, default_rules: &RuleSet) -> Report {
    let mut features = vec![bpffs(root), btf()];
    let caps = privilege::require("load", privilege::LOAD);
    features.push(Feature {
        name: "capabilities",
        runs: Some(caps.is_ok()),
        why: match &caps {
            Ok(()) => "CAP_BPF, CAP_NET_ADMIN and CAP_PERFMON held".into(),
            Err(e) => e.to_string(),
        },
        needs: "CAP_BPF and CAP_PERFMON: Linux 5.8 (before it, CAP_SYS_ADMIN)",
    });
    features.push(map_kind(
        "ring buffer",
        MapType::RingBuf,
        "ringbuf",
        "Linux 5.8",
    ));
    features.push(helper(
        "bpf_xdp_load_bytes",
        BpfHelper::BPF_FUNC_xdp_load_bytes,
        "Linux 5.18",
    ));
    let loaded = if caps.is_ok() {
        Some(program::prepare(default_rules, None, &[]))
    } else {
        None
    };
    features.push(Feature {
        name: "xdp filter",
        runs: loaded.as_ref().map(Result::is_ok),
        why: match &loaded {
            None => "not tried: the capabilities above are missing".into(),
            Some(Ok(_)) => "the verifier accepts the filter and its egress recorder".into(),
            Some(Err(e)) => format!("{e:#}"),
        },
        needs: "Linux 5.18 (bpf_xdp_load_bytes, for capture; XDP links 5.9; ring buffer 5.8)",
    });
    let mut ebpf = loaded.and_then(Result::ok);
    features.push(tcx());
    features.push(in_own_netns("clsact", "Linux 4.5", ebpf.as_mut(), clsact));
    let tcx_runs = features
        .iter()
        .any(|f| f.name == "tcx" && f.runs == Some(true));
    let clsact_runs = features
        .iter()
        .any(|f| f.name == "clsact" && f.runs == Some(true));
    features.push(Feature {
        name: "reply guard",
        runs: Some(ebpf.is_some() && (tcx_runs || clsact_runs)),
        why: match (ebpf.is_some(), tcx_runs, clsact_runs) {
            (false, _, _) => "the filter does not load here".into(),
            (true, true, _) => "its egress recorder attaches with TCX".into(),
            (true, false, true) => {
                "its egress recorder attaches with clsact (no TCX on this kernel)".into()
            }
            (true, false, false) => "neither TCX nor clsact attaches here".into(),
        },
        needs: "Linux 6.6 with TCX, or clsact on older kernels",
    });
    features.push(in_own_netns(
        "live frames",
        "Linux 5.18 (only for `cargo xtask bench`'s veth section)",
        ebpf.as_mut(),
        live_frames,
    ));
    Report {
        kernel: sys::kernel_release(),
        features,
        interfaces: interfaces(),
    }
}

fn bpffs(root: &PinRoot) -> Feature {
    let mounted = sys::is_bpffs(std::path::Path::new("/sys/fs/bpf"));
    let (runs, why) = if mounted {
        (true, "mounted at /sys/fs/bpf".to_string())
    } else {
        match mount_decision(&MountFacts::of_this_process()) {
            MountDecision::Mount(why) => (
                true,
                format!("nothing mounted at /sys/fs/bpf; `load` mounts one there: {why}"),
            ),
            MountDecision::Refuse(why) => (false, format!("nothing mounted at /sys/fs/bpf: {why}")),
        }
    };
    Feature {
        name: "bpffs",
        runs: Some(runs),
        why: format!("{why} (pin root {})", root.path().display()),
        needs: "Linux 4.4",
    }
}

fn btf() -> Feature {
    let present = std::path::Path::new("/sys/kernel/btf/vmlinux").exists();
    Feature {
        name: "btf",
        runs: Some(present),
        why: if present {
            "/sys/kernel/btf/vmlinux present (not needed by the filter; bpftool and aya-log use it)"
                .into()
        } else {
            "no /sys/kernel/btf/vmlinux: the filter needs none, but bpftool's dumps show less"
                .into()
        },
        needs: "Linux 5.4 with CONFIG_DEBUG_INFO_BTF",
    }
}

fn map_kind(name: &'static str, kind: MapType, fake: &str, needs: &'static str) -> Feature {
    let r = if sys::fake::on(fake) {
        Ok(false)
    } else {
        is_map_supported(kind).map_err(|e| e.to_string())
    };
    Feature {
        name,
        runs: r.as_ref().ok().copied(),
        why: match r {
            Ok(true) => "the kernel makes the map".into(),
            Ok(false) => "the kernel refuses the map type".into(),
            Err(e) => format!("cannot probe: {e}"),
        },
        needs,
    }
}

fn helper(name: &'static str, h: BpfHelper, needs: &'static str) -> Feature {
    let r = if sys::fake::on(name) {
        Ok(false)
    } else {
        is_helper_supported(ProgramType::Xdp, h).map_err(|e| e.to_string())
    };
    Feature {
        name,
        runs: r.as_ref().ok().copied(),
        why: match r {
            Ok(true) => "XDP programs may call it (capture copies frames with it)".into(),
            Ok(false) => "XDP programs may not call it: `capture` cannot run".into(),
            Err(e) => format!("cannot probe: {e}"),
        },
        needs,
    }
}

/// TCX: a query of the loopback's TCX egress hook, which changes nothing;
/// kernels without TCX refuse the attach type.
fn tcx() -> Feature {
    let r = if sys::fake::on("tcx") {
        Err("refused (faked)".to_string())
    } else {
        SchedClassifier::query_tcx("lo", TcAttachType::Egress).map_err(|e| e.to_string())
    };
    Feature {
        name: "tcx",
        runs: Some(r.is_ok()),
        why: match r {
            Ok(_) => "the kernel answers a TCX query on lo's egress".into(),
            Err(e) => format!("no TCX ({e}): the recorder uses clsact"),
        },
        needs: "Linux 6.6",
    }
}

/// Runs `try_it` in a thread inside a new network namespace of its own
/// (it vanishes with the thread: nothing on the host changes).
fn in_own_netns(
    name: &'static str,
    needs: &'static str,
    ebpf: Option<&mut aya::Ebpf>,
    try_it: fn(&mut aya::Ebpf) -> Result<String, String>,
) -> Feature {
    let Some(ebpf) = ebpf else {
        return Feature {
            name,
            runs: None,
            why: "not tried: the filter does not load here".into(),
            needs,
        };
    };
    let fake = name.replace(' ', "-");
    if sys::fake::on(&fake) {
        return Feature {
            name,
            runs: Some(false),
            why: "refused (faked)".into(),
            needs,
        };
    }
    let r = std::thread::scope(|s| {
        s.spawn(|| -> Result<Result<String, String>, String> {
            sys::unshare_net().map_err(|e| {
                format!("cannot probe: no network namespace of its own for the probe ({e}; needs CAP_SYS_ADMIN)")
            })?;
            Ok(try_it(ebpf))
        })
        .join()
        .unwrap_or_else(|_| Err("the probe panicked".into()))
    });
    let (runs, why) = match r {
        Ok(Ok(why)) => (Some(true), why),
        Ok(Err(why)) => (Some(false), why),
        Err(why) => (None, why),
    };
    Feature {
        name,
        runs,
        why,
        needs,
    }
}

fn clsact(ebpf: &mut aya::Ebpf) -> Result<String, String> {
    aya::programs::tc::qdisc_add_clsact("lo").map_err(|e| format!("no clsact qdisc: {e}"))?;
    let p: &mut SchedClassifier = ebpf
        .program_mut(filter_common::REQUESTS_PROGRAM_NAME)
        .ok_or("no recorder in the object")?
        .try_into()
        .map_err(|e| format!("{e}"))?;
    p.attach_with_options(
        "lo",
        TcAttachType::Egress,
        aya::programs::tc::TcAttachOptions::Netlink(Default::default()),
    )
    .map_err(|e| format!("the kernel refuses a netlink TC filter: {e}"))?;
    Ok("a clsact filter attaches (tried in a network namespace of the probe's own)".into())
}

fn live_frames(ebpf: &mut aya::Ebpf) -> Result<String, String> {
    let p: &mut Xdp = ebpf
        .program_mut(PROGRAM_NAME)
        .ok_or("no filter in the object")?
        .try_into()
        .map_err(|e| format!("{e}"))?;
    // A TCP frame to the probe's own loopback: passed, and gone with it.
    let mut frame = [0u8; 64];
    frame[12..14].copy_from_slice(&0x0800u16.to_be_bytes());
    frame[14] = 0x45;
    frame[16..18].copy_from_slice(&50u16.to_be_bytes());
    frame[22] = 64;
    frame[23] = 6;
    // xdp_md: data, data_end, data_meta, ingress_ifindex (lo: 1), ...
    let mut ctx = [0u8; 24];
    ctx[4..8].copy_from_slice(&(frame.len() as u32).to_ne_bytes());
    ctx[12..16].copy_from_slice(&1u32.to_ne_bytes());
    p.test_run(TestRunOptions {
        data_in: Some(&frame),
        ctx_in: Some(&ctx),
        repeat: 1,
        attrs: aya::programs::TestRunAttrs::new().xdp_live_frames(1),
        ..TestRunOptions::new()
    })
    .map_err(|e| format!("the kernel refuses live-frame test runs: {e}"))?;
    Ok("BPF_F_TEST_XDP_LIVE_FRAMES runs (tried on the probe's own loopback)".into())
}

fn interfaces() -> Vec<Interface> {
    let mut out: Vec<Interface> = sys::interface_addresses()
        .into_iter()
        .map(|(name, _)| name)
        .chain(
            std::fs::read_dir("/sys/class/net")
                .into_iter()
                .flatten()
                .flatten()
                .map(|e| e.file_name().to_string_lossy().into_owned()),
        )
        .collect::<std::collections::BTreeSet<_>>()
        .into_iter()
        .filter(|n| n != "lo")
        .map(|name| {
            let driver = sys::driver_of(&name).ok();
            let native_xdp = driver.as_deref().map(|d| NATIVE_XDP_DRIVERS.contains(&d));
            Interface {
                name,
                driver,
                native_xdp,
            }
        })
        .collect();
    out.sort_by(|a, b| a.name.cmp(&b.name));
    out
}
