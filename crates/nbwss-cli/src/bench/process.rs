//! Processes the benchmarks watch: children of this binary, their resident memory and CPU time from
//! /proc, the open-files limit, and the machine the figures come from.

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::Context as _;

/// Linux reports CPU times in /proc in units of USER_HZ, which is 100 on every architecture it supports.
const TICKS_PER_SECOND: f64 = 100.0;

/// The machine, for the report header.
#[derive(Debug, Clone)]
pub(crate) struct Machine {
    pub(crate) cpus: usize,
    pub(crate) model: String,
    pub(crate) memory_mib: u64,
    pub(crate) load: String,
}

pub(crate) fn machine() -> Machine {
    let cpus = std::thread::available_parallelism().map_or(1, std::num::NonZeroUsize::get);
    let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
    let model = cpuinfo
        .lines()
        .find_map(|line| {
            line.strip_prefix("model name").map(|rest| rest.trim_start_matches([' ', '\t', ':']))
        })
        .unwrap_or("unknown")
        .to_owned();
    let meminfo = std::fs::read_to_string("/proc/meminfo").unwrap_or_default();
    let memory_mib = kib_field(&meminfo, "MemTotal:").unwrap_or(0) / 1024;
    let load = std::fs::read_to_string("/proc/loadavg")
        .unwrap_or_default()
        .split_whitespace()
        .take(3)
        .collect::<Vec<_>>()
        .join(" ");
    Machine { cpus, model, memory_mib, load }
}

/// The 1-minute load average.
pub(crate) fn load_average() -> f64 {
    std::fs::read_to_string("/proc/loadavg")
        .ok()
        .and_then(|text| text.split_whitespace().next().and_then(|first| first.parse().ok()))
        .unwrap_or(0.0)
}

fn kib_field(text: &str, name: &str) -> Option<u64> {
    text.lines().find_map(|line| line.strip_prefix(name)?.split_whitespace().next()?.parse().ok())
}

/// The file system type and device holding `path` (from /proc/mounts), e.g. `ext4 /dev/vda`: durability
/// costs fsyncs, which tmpfs does not pay.
pub(crate) fn filesystem_of(path: &Path) -> String {
    let path = std::fs::canonicalize(path).unwrap_or_else(|_| path.to_path_buf());
    let mounts = std::fs::read_to_string("/proc/mounts").unwrap_or_default();
    mounts
        .lines()
        .filter_map(|line| {
            let fields: Vec<&str> = line.split_whitespace().collect();
            let (device, mount_point, kind) = (fields.first()?, fields.get(1)?, fields.get(2)?);
            path.starts_with(mount_point).then(|| (mount_point.len(), format!("{kind} {device}")))
        })
        .max_by_key(|(length, _)| *length)
        .map_or_else(|| "unknown".to_owned(), |(_, description)| description)
}

/// Resident memory of a process, in KiB (VmRSS).
pub(crate) fn rss_kib(pid: u32) -> anyhow::Result<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))
        .with_context(|| format!("cannot read /proc/{pid}/status"))?;
    kib_field(&status, "VmRSS:").context("no VmRSS in /proc/PID/status")
}

/// The median time of a 4 KiB write plus fsync in `dir`, over a few tries: what a durable commit costs
/// on this disk now (other work writing to it makes it slower).
pub(crate) fn fsync_latency(dir: &Path) -> anyhow::Result<Duration> {
    use std::io::Write as _;
    let path = dir.join("fsync-probe");
    let mut file = std::fs::File::create(&path).context("creating the fsync probe")?;
    let block = [0u8; 4096];
    let mut samples = Vec::new();
    for _ in 0..25 {
        let started = Instant::now();
        file.write_all(&block)?;
        file.sync_data()?;
        samples.push(started.elapsed());
    }
    drop(file);
    let _ = std::fs::remove_file(&path);
    samples.sort_unstable();
    Ok(samples[samples.len() / 2])
}

/// Resident memory of a process in KiB: anonymous (heap, stacks: the process's own) and file-backed
/// (mapped pages of the executable and libraries, shared with other processes running them).
pub(crate) fn rss_split_kib(pid: u32) -> anyhow::Result<(u64, u64)> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))
        .with_context(|| format!("cannot read /proc/{pid}/status"))?;
    let anon = kib_field(&status, "RssAnon:").context("no RssAnon in /proc/PID/status")?;
    let file = kib_field(&status, "RssFile:").context("no RssFile in /proc/PID/status")?;
    Ok((anon, file))
}

/// CPU time (user + system) a process has used so far.
pub(crate) fn cpu_time(pid: u32) -> anyhow::Result<Duration> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .with_context(|| format!("cannot read /proc/{pid}/stat"))?;
    // Fields after the command name (which may hold spaces) start at the state, field 3.
    let rest = stat.rsplit_once(')').map(|(_, rest)| rest).context("malformed /proc/PID/stat")?;
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let ticks = |index: usize| -> anyhow::Result<u64> {
        fields.get(index).context("short /proc/PID/stat")?.parse().context("malformed /proc/PID/stat")
    };
    // utime is field 14 and stime field 15, i.e. 11 and 12 after the state.
    let total = ticks(11)? + ticks(12)?;
    Ok(Duration::from_secs_f64(total as f64 / TICKS_PER_SECOND))
}

/// A free TCP port on 127.0.0.1 (bound and released; a child binds it next).
pub(crate) fn free_port() -> anyhow::Result<u16> {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").context("finding a free port")?;
    Ok(listener.local_addr()?.port())
}

/// A child process of this binary (`nbwss ...`), stopped with SIGTERM, killed if dropped still running.
#[derive(Debug)]
pub(crate) struct ChildProcess {
    child: Child,
    pub(crate) started: Instant,
}

impl ChildProcess {
    /// Starts `nbwss ARGS` with logs at `log_level` going to `log_file`.
    pub(crate) fn spawn(args: &[&str], log_file: &Path, log_level: &str) -> anyhow::Result<Self> {
        let exe = std::env::current_exe().context("cannot find the nbwss executable")?;
        Self::spawn_program(&exe, args, log_file, log_level)
    }

    /// Starts `program ARGS` with logs at `log_level` going to `log_file`.
    pub(crate) fn spawn_program(
        program: &Path,
        args: &[&str],
        log_file: &Path,
        log_level: &str,
    ) -> anyhow::Result<Self> {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(log_file)
            .with_context(|| format!("cannot open {}", log_file.display()))?;
        let started = Instant::now();
        let child = Command::new(program)
            .args(args)
            .env("RUST_LOG", log_level)
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log)
            .spawn()
            .with_context(|| format!("cannot start {} {}", program.display(), args.join(" ")))?;
        Ok(Self { child, started })
    }

    pub(crate) fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Whether the process has exited (and how).
    pub(crate) fn exited(&mut self) -> Option<std::process::ExitStatus> {
        self.child.try_wait().ok().flatten()
    }

    /// Sends SIGTERM and waits up to `grace` for the exit, then kills. Returns how long the stop took.
    pub(crate) async fn stop(mut self, grace: Duration) -> Duration {
        let begun = Instant::now();
        if let Some(pid) = i32::try_from(self.child.id()).ok().and_then(rustix::process::Pid::from_raw) {
            let _ = rustix::process::kill_process(pid, rustix::process::Signal::TERM);
        }
        while begun.elapsed() < grace {
            if self.exited().is_some() {
                return begun.elapsed();
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
        begun.elapsed()
    }
}

impl Drop for ChildProcess {
    fn drop(&mut self) {
        if self.exited().is_none() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// Polls `check` every `every` until it gives `Some`, or fails after `deadline`.
pub(crate) async fn wait_for<T, F, Fut>(
    what: &str,
    deadline: Duration,
    every: Duration,
    mut check: F,
) -> anyhow::Result<T>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let end = Instant::now() + deadline;
    loop {
        if let Some(value) = check().await {
            return Ok(value);
        }
        if Instant::now() > end {
            anyhow::bail!("timed out after {} s waiting for {what}", deadline.as_secs());
        }
        tokio::time::sleep(every).await;
    }
}

/// The certificate a child process writes when it starts, once the file is complete: a client built from a
/// file caught half-written would trust nothing, and the wait for the server would time out.
pub(crate) fn read_written_certificate(path: &Path) -> Option<String> {
    let pem = std::fs::read_to_string(path).ok()?;
    pem.trim_end().ends_with("-----END CERTIFICATE-----").then_some(pem)
}

/// An HTTPS client for loopback servers with self-signed certificates that the benchmark trusts.
pub(crate) fn https_client(certificate_pem: &str) -> anyhow::Result<reqwest::Client> {
    let certificate = reqwest::Certificate::from_pem(certificate_pem.as_bytes())?;
    reqwest::Client::builder()
        .use_rustls_tls()
        .tls_built_in_root_certs(false)
        .add_root_certificate(certificate)
        .http1_only()
        .no_proxy()
        .timeout(Duration::from_secs(60))
        .build()
        .context("building an HTTPS client")
}
