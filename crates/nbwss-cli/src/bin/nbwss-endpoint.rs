//! `nbwss-endpoint`: the cloud endpoint and its tokens and API keys.

fn main() -> std::process::ExitCode {
    nbwss_cli::endpoint_cli::main()
}
