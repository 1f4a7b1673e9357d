//! Tells cargo to rebuild when bpf-linker changes: it is the linker of this
//! crate but not a dependency cargo knows about.
use which::which;

fn main() {
    let bpf_linker = which("bpf-linker").expect("bpf-linker not found: run `cargo xtask setup`");
    println!("cargo:rerun-if-changed={}", bpf_linker.to_str().unwrap());
}
