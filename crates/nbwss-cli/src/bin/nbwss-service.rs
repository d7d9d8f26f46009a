//! `nbwss-service`: the NBWSS service and its administration, for a NetBackup primary server.

fn main() -> std::process::ExitCode {
    nbwss_cli::service_cli::main()
}
