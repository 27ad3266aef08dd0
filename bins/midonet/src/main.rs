//! `midonet`: the MidoNet command-line client. All logic is in `midonet-cli`.

use std::process::ExitCode;

fn main() -> ExitCode {
    let cli = midonet_cli::Cli::parse();
    match midonet_cli::run(cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}
