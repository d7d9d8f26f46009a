//! `nbwss-man DIR`: writes the man pages of `nbwss-service` and `nbwss-endpoint` into DIR/nbwss-service and
//! DIR/nbwss-endpoint (scripts/package puts them into the Debian packages). Not installed anywhere.

use std::path::PathBuf;
use std::process::ExitCode;

fn main() -> ExitCode {
    let mut args = std::env::args_os().skip(1);
    let (Some(dir), None) = (args.next(), args.next()) else {
        eprintln!("usage: nbwss-man DIR (writes DIR/nbwss-service/*.8 and DIR/nbwss-endpoint/*.8)");
        return ExitCode::from(2);
    };
    nbwss_cli::exit_code(nbwss_cli::man::write_all(&PathBuf::from(dir)).map(|written| {
        for page in written {
            println!("{}", page.display());
        }
        ExitCode::SUCCESS
    }))
}
