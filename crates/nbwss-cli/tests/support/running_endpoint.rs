//! `nbwss endpoint run` as a child process of a test, with what it prints; killed when dropped. Shared by
//! the `it` and `hostile` test binaries, each of which uses part of it.
#![allow(dead_code)]

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};

/// A running `nbwss endpoint run`.
pub struct RunningEndpoint {
    child: Child,
    /// `https://HOST:PORT`.
    pub url: String,
    /// The `wss://` URL for NetBackup.
    pub websocket_url: String,
    /// The certificate's SHA-256 fingerprint, as printed.
    pub fingerprint: String,
}

impl RunningEndpoint {
    /// Starts it with the configuration file `config`, its log (warnings and errors) in `log` if given,
    /// and returns once it listens.
    pub fn start(config: &Path, log: Option<&Path>) -> Self {
        Self::spawn(Command::new(env!("CARGO_BIN_EXE_nbwss")), config, log)
    }

    /// Starts it as [`start`](Self::start) does, with the soft limit of open files lowered to `soft`
    /// first (through `sh -c 'ulimit -Sn ...'`).
    pub fn start_with_open_files(config: &Path, soft: u32) -> Self {
        let mut command = Command::new("sh");
        command.args([
            "-c",
            &format!("ulimit -Sn {soft} && exec \"$0\" \"$@\""),
            env!("CARGO_BIN_EXE_nbwss"),
        ]);
        Self::spawn(command, config, None)
    }

    fn spawn(mut command: Command, config: &Path, log: Option<&Path>) -> Self {
        let stderr = match log {
            Some(path) => Stdio::from(std::fs::File::create(path).unwrap()),
            None => Stdio::null(),
        };
        let mut child = command
            .args(["endpoint", "run", "--config", config.to_str().unwrap()])
            .env("RUST_LOG", "warn")
            .stdout(Stdio::piped())
            .stderr(stderr)
            .spawn()
            .unwrap();
        let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
        let (mut url, mut websocket_url, mut fingerprint) = (None, None, None);
        for line in lines.by_ref() {
            let line = line.unwrap();
            if let Some(rest) = line.strip_prefix("NBWSS endpoint listening on ") {
                url = Some(rest.to_owned());
            }
            if let Some(rest) = line.strip_prefix("WebSocket URL for NetBackup: ") {
                websocket_url = Some(rest.to_owned());
            }
            if let Some(rest) = line.strip_prefix("certificate SHA-256: ") {
                fingerprint = Some(rest.to_owned());
            }
            if line.starts_with("press Ctrl-C") {
                break;
            }
        }
        Self {
            child,
            url: url.expect("the URL is printed"),
            websocket_url: websocket_url.expect("the WebSocket URL is printed"),
            fingerprint: fingerprint.expect("the fingerprint is printed"),
        }
    }

    /// SIGKILL: no chance to finish a request, commit or say goodbye.
    pub fn kill(mut self) {
        self.child.kill().unwrap();
        self.child.wait().unwrap();
    }

    /// The process id, for /proc/PID.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }
}

impl Drop for RunningEndpoint {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
