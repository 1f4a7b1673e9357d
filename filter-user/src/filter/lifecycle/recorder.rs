//! Attaching the reply guard's request recorder to an interface's egress:
//! with a TCX link (Linux 6.6) where the kernel has TCX, with a netlink TC
//! filter on the clsact qdisc where it does not (Debian 12's 6.1, Ubuntu
//! 22.04's 5.15, RHEL 9's 5.14). Both keep the reload's order: the new
//! generation's recorder runs beside the old one until after the switch,
//! then the old one goes.
//!
//! A TCX link is a pin (`<iface>/egress-link`, or `gen-<n>/egress-link`
//! during a reload). A clsact filter outlives the process by itself and
//! cannot be pinned: it sits at a priority of filterctl's own with the
//! generation's number as its handle, and a second pin of the
//! generation's egress program (`gen-<n>/egress-tc`) says it is there, so
//! that whatever removes the generation detaches it.

use std::path::Path;

use anyhow::{Context as _, anyhow};
use aya::{
    Ebpf,
    programs::{
        LinkOrder, SchedClassifier, TcAttachType,
        links::{FdLink, Link as _},
        tc::{self, NlOptions, SchedClassifierLink, TcAttachOptions, TcHandle},
    },
};
use filter_common::REQUESTS_PROGRAM_NAME;

use crate::{
    state::{
        layout::{EGRESS_LINK, EGRESS_TC, generation_dir, generations},
        pins,
    },
    sys,
};

/// The clsact priority of filterctl's recorders: late (a high number), so
/// that they run after what others attached, as the TCX link does.
const PRIORITY: u16 = 0xfe17;

/// Attaches `ebpf`'s recorder to `iface`'s egress for `generation`, after
/// whatever runs there (TCX where the kernel has it, else clsact), and
/// makes it outlive this process: a TCX link pinned at `link_path`, a
/// clsact filter marked in `gen_dir`.
pub(crate) fn attach(
    ebpf: &mut Ebpf,
    iface: &str,
    generation: u32,
    link_path: &Path,
    gen_dir: &Path,
) -> anyhow::Result<()> {
    attach_here(ebpf, iface, generation)?.keep(ebpf, link_path, gen_dir)
}

/// A recorder attached by this process: detached when dropped, until
/// [`Recorder::keep`] makes it outlive the process.
enum Recorder {
    Tcx(FdLink),
    Clsact(SchedClassifierLink),
}

/// Attaches `ebpf`'s recorder to `iface`'s egress for `generation`, for as
/// long as this process holds it.
fn attach_here(ebpf: &mut Ebpf, iface: &str, generation: u32) -> anyhow::Result<Recorder> {
    let program: &mut SchedClassifier = ebpf
        .program_mut(REQUESTS_PROGRAM_NAME)
        .expect("prepare checked it")
        .try_into()?;
    if !sys::fake::on("tcx") {
        match program.attach_with_options(
            iface,
            TcAttachType::Egress,
            TcAttachOptions::TcxOrder(LinkOrder::default()),
        ) {
            Ok(id) => {
                let link = program
                    .take_link(id)?
                    .try_into()
                    .context("the kernel attached TC without a bpf_link")?;
                return Ok(Recorder::Tcx(link));
            }
            // Kernels before 6.6 refuse the attach type (EINVAL).
            Err(e) => log::info!("TCX refused ({e}): attaching the request recorder with clsact"),
        }
    }
    if let Err(e) = tc::qdisc_add_clsact(iface) {
        // EEXIST: the qdisc is there already (ours, or tc's users').
        let exists =
            matches!(&e, tc::TcError::NetlinkError(n) if n.raw_os_error() == Some(libc::EEXIST));
        if !exists {
            return Err(anyhow!(e)).with_context(|| {
                format!("cannot add the clsact qdisc to {iface} for the request recorder")
            });
        }
    }
    let options = NlOptions {
        priority: PRIORITY,
        handle: TcHandle::from(generation),
        classid: None,
    };
    let id = program
        .attach_with_options(
            iface,
            TcAttachType::Egress,
            TcAttachOptions::Netlink(options),
        )
        .with_context(|| {
            format!("failed to attach the request recorder to {iface} egress (TCX or clsact)")
        })?;
    let link = program.take_link(id)?;
    Ok(Recorder::Clsact(link))
}

impl Recorder {
    /// Makes the recorder outlive this process: a TCX link pinned at
    /// `link_path`; a clsact filter marked in `gen_dir` (by a pin of its
    /// program) and let go.
    fn keep(self, ebpf: &mut Ebpf, link_path: &Path, gen_dir: &Path) -> anyhow::Result<()> {
        match self {
            Recorder::Tcx(link) => {
                pins::pin_link(link, link_path).context("failed to pin the egress link")?;
            }
            Recorder::Clsact(link) => {
                pins::pin_program(ebpf, REQUESTS_PROGRAM_NAME, &gen_dir.join(EGRESS_TC))
                    .context("failed to mark the clsact recorder")?;
                // Dropped, the link would detach the filter: it stays
                // attached, found again through the marker.
                std::mem::forget(link);
            }
        }
        Ok(())
    }
}

/// Detaches generation `generation`'s clsact recorder, if it has one (the
/// caller removes its folder, and with it the marker). One already gone
/// (the qdisc deleted by hand, the interface gone) is no error.
pub(crate) fn detach_clsact(iface: &str, gen_dir: &Path, generation: u32) -> anyhow::Result<()> {
    if !gen_dir.join(EGRESS_TC).exists() {
        return Ok(());
    }
    let link = match SchedClassifierLink::attached(
        iface,
        TcAttachType::Egress,
        PRIORITY,
        TcHandle::from(generation),
        None,
    ) {
        Ok(link) => link,
        // No such interface: nothing is attached to it.
        Err(_) => return Ok(()),
    };
    match link.detach() {
        Ok(()) => Ok(()),
        Err(aya::programs::ProgramError::NetlinkError(e))
            if e.raw_os_error() == Some(libc::ENOENT) =>
        {
            Ok(())
        }
        Err(e) => Err(anyhow!(e)).with_context(|| {
            format!("cannot detach the request recorder of generation {generation} from {iface}")
        }),
    }
}

/// After a switch to `generation`: its recorder takes the place of the
/// older ones, which are detached (TCX: by replacing or removing the
/// interface's link pin; clsact: by handle).
pub(crate) fn retire_older(iface: &str, iface_dir: &Path, generation: u32) -> anyhow::Result<()> {
    let next = generation_dir(iface_dir, generation).join(EGRESS_LINK);
    let current = iface_dir.join(EGRESS_LINK);
    if next.exists() {
        // Replacing the pin detaches the old TCX recorder: the program
        // whose copy of the open requests it kept no longer runs.
        pins::move_pin(&next, &current)
            .context("cannot move the new recorder's link into place")?;
    } else if current.exists() {
        // The new recorder is a clsact filter: the TCX one goes.
        pins::remove_pin(&current)?;
    }
    for g in generations(iface_dir)? {
        if g < generation {
            detach_clsact(iface, &generation_dir(iface_dir, g), g)?;
        }
    }
    Ok(())
}

/// Detaches every recorder of the filter in `iface_dir` (unload).
pub(crate) fn detach_all(iface: &str, iface_dir: &Path) -> anyhow::Result<()> {
    for g in generations(iface_dir)? {
        detach_clsact(iface, &generation_dir(iface_dir, g), g)?;
    }
    Ok(())
}
