//! `doctor`: which features run on this machine, which do not, and why.

use super::common::default_rule_set;
use crate::{probe, state::PinRoot};

#[derive(clap::Args, Debug)]
pub struct DoctorArgs {
    #[arg(long)]
    json: bool,
}

/// Exit status 1 when the filter itself cannot load here.
pub(crate) fn run(root: &PinRoot, a: DoctorArgs) -> anyhow::Result<u8> {
    let report = probe::probe(root, &default_rule_set()?);
    if a.json {
        let doc = serde_json::json!({
            "schema_version": crate::JSON_SCHEMA_VERSION,
            "kernel": report.kernel,
            "features": report.features,
            "interfaces": report.interfaces,
        });
        println!("{}", serde_json::to_string_pretty(&doc)?);
    } else {
        print!("{}", render(&report));
    }
    Ok(if report.runs("xdp filter") == Some(true) {
        0
    } else {
        1
    })
}

fn render(r: &probe::Report) -> String {
    use std::fmt::Write as _;
    let mut o = format!("kernel {}\n", r.kernel);
    for f in &r.features {
        let mark = match f.runs {
            Some(true) => "runs   ",
            Some(false) => "no     ",
            None => "unknown",
        };
        let _ = writeln!(o, "{mark} {:<18} {} [needs {}]", f.name, f.why, f.needs);
    }
    for i in &r.interfaces {
        let xdp = match i.native_xdp {
            Some(true) => "native XDP",
            Some(false) => "generic XDP only (the driver has no XDP hook of its own)",
            None => "driver unknown",
        };
        let _ = writeln!(
            o,
            "interface {}: driver {}, {xdp}",
            i.name,
            i.driver.as_deref().unwrap_or("?")
        );
    }
    o
}
