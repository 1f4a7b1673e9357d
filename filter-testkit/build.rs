//! The floor programs are built beside the filter by filter-user's build
//! script (one eBPF build, not two); it hands their path over as `links`
//! metadata.
fn main() {
    let floors = std::env::var("DEP_FILTER_EBPF_FLOORS")
        .expect("filter-user's build script names the floors object");
    println!("cargo:rustc-env=FLOORS_OBJECT_PATH={floors}");
    println!("cargo:rerun-if-env-changed=DEP_FILTER_EBPF_FLOORS");
}
