//! Writes every target's hand-made seeds to `fuzz/corpus/<target>/`
//! (`cargo run -p midonet-fuzzing --example write_seeds`). Existing files
//! (crash repros, kept inputs) are left alone; a seed is rewritten in place.

use std::path::Path;

fn main() -> std::io::Result<()> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../fuzz/corpus");
    for (target, _) in midonet_fuzzing::TARGETS {
        let dir = root.join(target);
        std::fs::create_dir_all(&dir)?;
        let seeds = midonet_fuzzing::seeds::for_target(target);
        for (name, data) in &seeds {
            std::fs::write(dir.join(format!("seed-{name}")), data)?;
        }
        println!("{target}: {} seeds", seeds.len());
    }
    Ok(())
}
