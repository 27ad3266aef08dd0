//! Compiles the kernel fast path (`bpf/datapath.c`) with clang for the
//! `ebpf` provider. Without clang or the libbpf headers the build goes on
//! with an empty object and a warning, and the provider then reports itself
//! not available (the agent falls back to the userspace provider). A C
//! error in the program itself fails the build.

use std::path::PathBuf;
use std::process::Command;

fn main() {
    let out = PathBuf::from(std::env::var_os("OUT_DIR").expect("cargo sets OUT_DIR"));
    let obj = out.join("midonet_dp.bpf.o");
    println!("cargo:rerun-if-changed=bpf/datapath.c");
    println!("cargo:rerun-if-changed=bpf/datapath.h");
    println!("cargo:rerun-if-env-changed=MIDONET_CLANG");

    // The ABI version names the bpffs directory of the pinned maps, so an
    // agent with another map layout never reuses them.
    let header = std::fs::read("bpf/datapath.h").expect("bpf/datapath.h");
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in header {
        h = (h ^ u64::from(b)).wrapping_mul(0x100_0000_01b3);
    }
    println!("cargo:rustc-env=MDP_ABI_HASH={:016x}", h);

    let clang = std::env::var("MIDONET_CLANG").unwrap_or_else(|_| "clang".into());
    let arch = std::env::var("CARGO_CFG_TARGET_ARCH").unwrap_or_else(|_| "x86_64".into());
    let result = Command::new(&clang)
        .args(["-O2", "-g", "-Wall", "-Werror", "-target", "bpf"])
        .arg(format!("-I/usr/include/{arch}-linux-gnu"))
        .args(["-c", "bpf/datapath.c", "-o"])
        .arg(&obj)
        .output();
    let missing = |why: &str| {
        println!(
            "cargo:warning=the ebpf datapath provider is not built ({why}); \
             install clang, llvm and libbpf-dev (scripts/test.sh does) to build it"
        );
        std::fs::write(&obj, b"").expect("write the empty object");
        println!("cargo:rustc-env=MDP_BPF_MISSING={why}");
    };
    match result {
        Err(e) => missing(&format!("cannot run {clang}: {e}")),
        Ok(o) if o.status.success() => println!("cargo:rustc-env=MDP_BPF_MISSING="),
        Ok(o) => {
            let err = String::from_utf8_lossy(&o.stderr);
            if err.contains("bpf/bpf_helpers.h") || err.contains("asm/types.h") {
                missing("the libbpf or kernel headers are missing");
            } else {
                panic!("clang failed on bpf/datapath.c:\n{err}");
            }
        }
    }
}
