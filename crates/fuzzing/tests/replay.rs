//! Stable replay of the fuzz targets, run by the README's test command.
//!
//! For each target: every committed input under `fuzz/corpus/<target>/`
//! (hand-made seeds and crash repros), then a fixed number of mutations of
//! them drawn from a xorshift generator with a fixed seed, so every run
//! feeds exactly the same inputs and a regression fails CI on stable Rust
//! without cargo-fuzz. The counts keep each target under 1.5 s in a dev
//! build (the workspace's dev profile optimizes) on this project's 2-core
//! machines. A failing input is written to
//! `target/fuzz-replay/<target>-<n>.bin`; replay it with
//! `cargo +nightly fuzz run <target> <file>` (docs/FUZZING.md).

use std::panic::{catch_unwind, AssertUnwindSafe};
use std::path::{Path, PathBuf};

use midonet_fuzzing::{Entry, TARGETS};

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// xorshift64 (Marsaglia): tiny and deterministic.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        self.0 = x;
        x
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n.max(1) as u64) as usize
    }
    fn byte(&mut self) -> u8 {
        self.next() as u8
    }
}

const INTERESTING: [u8; 8] = [0, 1, 2, 0x7f, 0x80, 0xfe, 0xff, 0x40];
const INTERESTING16: [u16; 6] = [0, 1, 0x7fff, 0x8000, 0xffff, 20];

/// One to four byte-level mutations of a random corpus entry (the kinds
/// libFuzzer's default mutator applies most).
fn mutate(rng: &mut Rng, corpus: &[Vec<u8>], out: &mut Vec<u8>) {
    out.clear();
    out.extend_from_slice(&corpus[rng.below(corpus.len())]);
    for _ in 0..1 + rng.below(4) {
        let len = out.len();
        match rng.below(8) {
            0 if len > 0 => {
                let i = rng.below(len);
                out[i] ^= 1 << rng.below(8);
            }
            1 if len > 0 => {
                let i = rng.below(len);
                out[i] = rng.byte();
            }
            2 if len > 0 => {
                let i = rng.below(len);
                out[i] = INTERESTING[rng.below(INTERESTING.len())];
            }
            3 => {
                let i = rng.below(len + 1);
                let n = 1 + rng.below(4);
                let bytes: Vec<u8> = (0..n).map(|_| rng.byte()).collect();
                out.splice(i..i, bytes);
            }
            4 if len > 1 => {
                let i = rng.below(len);
                let n = 1 + rng.below((len - i).min(8));
                out.drain(i..i + n);
            }
            5 if len > 1 => out.truncate(rng.below(len)),
            6 => {
                let other = &corpus[rng.below(corpus.len())];
                if !other.is_empty() {
                    let from = rng.below(other.len());
                    let n = 1 + rng.below((other.len() - from).min(32));
                    let at = rng.below(len + 1);
                    out.splice(at..at, other[from..from + n].iter().copied());
                }
            }
            7 if len > 2 => {
                let i = rng.below(len - 1);
                let v = INTERESTING16[rng.below(INTERESTING16.len())].to_be_bytes();
                out[i..i + 2].copy_from_slice(&v);
            }
            _ => {}
        }
    }
}

fn corpus(target: &str) -> Vec<(String, Vec<u8>)> {
    let dir = repo().join("fuzz/corpus").join(target);
    let entries = std::fs::read_dir(&dir).unwrap_or_else(|e| {
        panic!("{}: {e}: the seed corpus is committed with the targets", dir.display())
    });
    let mut files: Vec<(String, Vec<u8>)> = entries
        .map(|e| {
            let p = e.expect("corpus entry").path();
            let data = std::fs::read(&p).unwrap_or_else(|e| panic!("{}: {e}", p.display()));
            (p.file_name().expect("file").to_string_lossy().into_owned(), data)
        })
        .collect();
    files.sort();
    assert!(
        files.len() >= 8,
        "{}: only {} seeds; regenerate with `cargo run -p midonet-fuzzing --example write_seeds`",
        dir.display(),
        files.len()
    );
    files
}

/// Run `entry` on `data`; on a panic, save the input and fail naming it.
fn run_one(target: &str, entry: Entry, what: &str, n: usize, data: &[u8]) {
    if catch_unwind(AssertUnwindSafe(|| entry(data))).is_ok() {
        return;
    }
    let dir = repo().join("target/fuzz-replay");
    let _ = std::fs::create_dir_all(&dir);
    let file = dir.join(format!("{target}-{n}.bin"));
    let saved = std::fs::write(&file, data).is_ok();
    panic!(
        "{target}: {what} failed (input {} bytes{}): {data:02x?}",
        data.len(),
        if saved { format!(", saved to {}", file.display()) } else { String::new() }
    );
}

fn replay(target: &str, mutations: usize) {
    let entry = TARGETS
        .iter()
        .find(|(n, _)| *n == target)
        .map(|(_, e)| *e)
        .unwrap_or_else(|| panic!("{target} is not in TARGETS"));
    let files = corpus(target);
    for (i, (name, data)) in files.iter().enumerate() {
        run_one(target, entry, &format!("corpus file {name}"), i, data);
    }
    let inputs: Vec<Vec<u8>> = files.into_iter().map(|(_, d)| d).collect();
    // One fixed seed per target, so adding a target changes no other's inputs.
    let mut rng = Rng(0x9e37_79b9_7f4a_7c15
        ^ target.bytes().fold(0u64, |h, b| h.wrapping_mul(31).wrapping_add(u64::from(b))));
    let mut buf = Vec::new();
    for n in 0..mutations {
        mutate(&mut rng, &inputs, &mut buf);
        run_one(target, entry, &format!("mutation {n}"), n, &buf);
    }
}

macro_rules! replay_tests {
    ($($name:ident: $mutations:expr),+ $(,)?) => {
        $(#[test]
        fn $name() {
            replay(stringify!($name), $mutations);
        })+

        /// Every target has a cargo-fuzz binary, a corpus and a replay test.
        #[test]
        fn every_target_is_fuzzed_and_replayed() {
            let replayed = [$(stringify!($name)),+];
            let mut bins: Vec<String> = std::fs::read_dir(repo().join("fuzz/fuzz_targets"))
                .expect("fuzz/fuzz_targets")
                .map(|e| e.expect("entry").path().file_stem().expect("stem").to_string_lossy().into_owned())
                .collect();
            bins.sort();
            let mut names: Vec<&str> = TARGETS.iter().map(|(n, _)| *n).collect();
            names.sort();
            let mut r = replayed.to_vec();
            r.sort();
            assert_eq!(bins, names, "fuzz/fuzz_targets vs midonet_fuzzing::TARGETS");
            assert_eq!(r, names, "replay tests vs midonet_fuzzing::TARGETS");
        }
    };
}

replay_tests! {
    vxlan: 200_000,
    extract: 200_000,
    dhcp: 50_000,
    arp: 200_000,
    icmp_error: 100_000,
    rest_body: 100_000,
    grpc_agent: 200_000,
    sim_packet: 100_000,
    flowstate: 200_000,
    neutron_api: 4_000,
    offload: 200_000,
    finmerge: 200_000,
}
