//! What an emulator instance is told at start: where to listen, who may log in, and how busy to be.

use std::fmt;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

/// The port of a real primary server (PBX).
pub const DEFAULT_PORT: u16 = 1556;
/// The API version assumed when a request names none: the newest the emulator serves, so that a client
/// reading Veritas' current documents gets the shapes they describe (`docs/netbackup-rest-api.md` §2.2 says a
/// real server's default is not documented).
pub const DEFAULT_API_VERSION: &str = "14.0";
/// The emulated duration of a backup job when not configured.
pub const DEFAULT_JOB_DURATION: Duration = Duration::from_secs(10 * 60);

/// Configuration of one emulator instance.
#[derive(Clone)]
pub struct EmulatorConfig {
    /// Address to listen on; port 0 picks a free port.
    pub bind: SocketAddr,
    /// Users that may log in with `POST /login`, as (name, password).
    pub users: Vec<(String, String)>,
    /// PEM certificate and key files; `None` generates a self-signed certificate for `localhost` and
    /// `127.0.0.1` on start.
    pub tls: Option<(PathBuf, PathBuf)>,
    /// Seed of every random choice (seed data, failures, background activity).
    pub seed: u64,
    /// How much faster than real time the emulated clock runs: 1.0 is real time, 3600.0 makes an emulated
    /// hour last one real second.
    pub clock_multiplier: f64,
    /// Emulated duration of a backup job, from start to done.
    pub job_duration: Duration,
    /// Probability (0..=1) that a backup job ends with a failure status.
    pub failure_rate: f64,
    /// Background backups started per emulated hour; 0 disables them.
    pub background_activity: f64,
    /// API version used when a request names none, e.g. "14.0" (the default) or "8.0".
    pub default_api_version: String,
    /// Whether to create the seed data (policies, clients, recent jobs and images) on start.
    pub seed_data: bool,
    /// Whether policy schedules start backups when due (every `frequencySeconds` of emulated time,
    /// counted from start; start windows are not modelled).
    pub run_schedules: bool,
}

impl EmulatorConfig {
    /// A configuration for tests: `127.0.0.1:0`, user `admin`/`password`, no background activity and no
    /// due schedules, seed data on, a fast clock (an emulated 10-minute job takes about a second).
    pub fn for_tests() -> Self {
        Self {
            bind: SocketAddr::from(([127, 0, 0, 1], 0)),
            users: vec![("admin".to_owned(), "password".to_owned())],
            clock_multiplier: 600.0,
            run_schedules: false,
            ..Self::default()
        }
    }
}

impl Default for EmulatorConfig {
    fn default() -> Self {
        Self {
            bind: SocketAddr::from(([127, 0, 0, 1], DEFAULT_PORT)),
            users: Vec::new(),
            tls: None,
            seed: 1,
            clock_multiplier: 1.0,
            job_duration: DEFAULT_JOB_DURATION,
            failure_rate: 0.0,
            background_activity: 0.0,
            default_api_version: DEFAULT_API_VERSION.to_owned(),
            seed_data: true,
            run_schedules: true,
        }
    }
}

impl fmt::Debug for EmulatorConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let users: Vec<String> = self.users.iter().map(|(name, _)| format!("{name}:***")).collect();
        f.debug_struct("EmulatorConfig")
            .field("bind", &self.bind)
            .field("users", &users)
            .field("tls", &self.tls)
            .field("seed", &self.seed)
            .field("clock_multiplier", &self.clock_multiplier)
            .field("job_duration", &self.job_duration)
            .field("failure_rate", &self.failure_rate)
            .field("background_activity", &self.background_activity)
            .field("default_api_version", &self.default_api_version)
            .field("seed_data", &self.seed_data)
            .field("run_schedules", &self.run_schedules)
            .finish()
    }
}

impl EmulatorConfig {
    /// Checks the values once, before anything starts.
    pub fn validate(&self) -> anyhow::Result<()> {
        anyhow::ensure!(
            self.clock_multiplier.is_finite() && self.clock_multiplier > 0.0,
            "the clock multiplier must be a positive number"
        );
        anyhow::ensure!((0.0..=1.0).contains(&self.failure_rate), "the failure rate must be between 0 and 1");
        anyhow::ensure!(
            self.background_activity.is_finite() && self.background_activity >= 0.0,
            "the background activity must be zero or more"
        );
        anyhow::ensure!(!self.job_duration.is_zero(), "the job duration must be more than zero");
        anyhow::ensure!(
            crate::media::ApiVersion::parse(&self.default_api_version).is_some_and(|v| v.is_supported()),
            "unsupported default API version {:?}",
            self.default_api_version
        );
        for (name, _) in &self.users {
            anyhow::ensure!(!name.is_empty(), "a user name must not be empty");
        }
        Ok(())
    }
}
