//! `nbwss notify`: enqueue JOB or IMAGE notification records, for NetBackup's own notify scripts
//! (`bpstart_notify`, `bpend_notify`, `backup_notify`). Records are validated (D14) and appended to the
//! service's outbox in its data directory; the running service delivers them like detected ones. Writing the
//! outbox database from this process is safe: SQLite's locking serialises the writers, and this process
//! waits (`--wait`) for a busy service instead of failing, so a notify script never loses its event to a
//! lock. It exits non-zero only when the records were not stored, and says so.

use std::io::Read as _;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context as _;
use clap::ArgGroup;
use nbwss_protocol::{
    unix_now, ImageOperation, ImageRecord, JobRecord, JobState, JobType, Properties, ScheduleType,
};
use nbwss_service::notify::{open_outbox, parse_records, validate_record, OutboxError, Record};

/// Arguments of `nbwss notify`.
#[derive(Debug, clap::Args)]
#[command(group(ArgGroup::new("source").required(true).args(["file", "job", "image"])))]
pub struct Args {
    /// The service's data directory (its outbox is `notifications.sqlite3` there).
    #[arg(long, env = "NBWSS_DATA_DIR", value_name = "DIR")]
    data_dir: PathBuf,
    /// The service's nbwss.properties, for `outbox.maxRecords` (defaults otherwise).
    #[arg(long, value_name = "FILE")]
    properties: Option<PathBuf>,
    /// Seconds to wait for the outbox while the service is writing it, before giving up.
    #[arg(long, value_name = "SECONDS", default_value_t = 60)]
    wait: u64,
    /// Records as JSON (a record, an array of records, or payload elements): a file, or `-` for stdin.
    #[arg(long, value_name = "FILE", alias = "json")]
    file: Option<String>,
    /// Enqueue one JOB record built from the job flags.
    #[arg(long)]
    job: bool,
    /// Enqueue one IMAGE record built from the image flags.
    #[arg(long)]
    image: bool,
    /// JOB: job id.
    #[arg(long, requires = "job")]
    job_id: Option<i64>,
    /// JOB: parent job id (default: the job id, a top-level job).
    #[arg(long, requires = "job")]
    parent_job_id: Option<i64>,
    /// JOB: QUEUED, ACTIVE or DONE.
    #[arg(long, default_value = "ACTIVE")]
    state: String,
    /// JOB: NetBackup status (0 = success).
    #[arg(long, default_value_t = 0)]
    status: i64,
    /// JOB: BACKUP, RESTORE, ...
    #[arg(long, default_value = "BACKUP")]
    job_type: String,
    /// JOB: policy name (empty for a restore).
    #[arg(long, default_value = "")]
    policy_name: String,
    /// JOB: policy type, upper case (STANDARD, VMWARE, ...).
    #[arg(long, default_value = "STANDARD")]
    policy_type: String,
    /// JOB: ST_FULL, ST_INCR, ST_CINC, ST_UBAK or ST_UARC.
    #[arg(long, default_value = "ST_FULL")]
    schedule_type: String,
    /// JOB: start time, Unix seconds (default: now).
    #[arg(long)]
    start_time: Option<i64>,
    /// JOB or IMAGE: client name (IMAGE: default from the backup id).
    #[arg(long)]
    client_name: Option<String>,
    /// IMAGE: backup id, `<clientName>_<backupTime>`.
    #[arg(long, requires = "image")]
    backup_id: Option<String>,
    /// IMAGE: CREATE, UPDATE, DELETE or NO_LOCAL_COPY_AVAILABLE.
    #[arg(long, default_value = "CREATE")]
    operation: String,
    /// IMAGE: client type, upper case (STANDARD, VMWARE, ...).
    #[arg(long, default_value = "STANDARD")]
    client_type: String,
    /// IMAGE: backup time, Unix seconds (default: from the backup id).
    #[arg(long)]
    backup_time: Option<i64>,
    /// IMAGE: when the event happened, Unix seconds (default: now).
    #[arg(long)]
    created_time: Option<i64>,
}

/// Runs `nbwss notify`.
pub fn run(args: Args) -> anyhow::Result<ExitCode> {
    if crate::used_flag("--json") {
        eprintln!("note: `nbwss notify --json FILE` is deprecated; write `--file FILE`");
    }
    let records = records_of(&args)?;
    anyhow::ensure!(
        args.data_dir.is_dir(),
        "{} is not a directory: give the service's data directory (--data-dir)",
        args.data_dir.display()
    );
    let properties = match &args.properties {
        None => Properties::default(),
        Some(file) => {
            let text =
                std::fs::read_to_string(file).with_context(|| format!("cannot read {}", file.display()))?;
            Properties::parse(&text)?.0
        }
    };
    let not_stored = |error: &dyn std::fmt::Display| {
        anyhow::anyhow!(
            "the records were NOT stored: {error}; nothing was enqueued, run the same command again"
        )
    };
    let outbox = open_outbox(&args.data_dir, &properties).map_err(|error| not_stored(&error))?;
    outbox.set_busy_timeout(Duration::from_secs(args.wait)).map_err(|error| not_stored(&error))?;
    match outbox.append(&records) {
        Ok(_) => {}
        Err(full @ OutboxError::Full { .. }) => {
            return Err(not_stored(&format!(
                "{full}; the service's endpoints must acknowledge before more is accepted (see `nbwss servers list`)"
            )))
        }
        Err(error) if error.is_busy() => {
            return Err(not_stored(&format!(
                "the service kept the outbox busy (waited up to {} s, --wait): {error}",
                args.wait
            )))
        }
        Err(error) => return Err(not_stored(&error)),
    }
    // NetBackup runs its notify scripts as root; the service runs as its own user.
    crate::state::hand_back(&args.data_dir)?;
    for record in &records {
        match record {
            Record::Job(job) => println!("enqueued JOB {} {}", job.job_id, job.state),
            Record::Image(image) => println!("enqueued IMAGE {} {}", image.backup_id, image.operation_id),
        }
    }
    Ok(ExitCode::SUCCESS)
}

fn records_of(args: &Args) -> anyhow::Result<Vec<Record>> {
    let invalid = |problem: String| anyhow::anyhow!("invalid notification record: {problem}");
    let record = if let Some(source) = &args.file {
        let text = if source == "-" {
            let mut text = String::new();
            std::io::stdin().read_to_string(&mut text).context("cannot read standard input")?;
            text
        } else {
            std::fs::read_to_string(source).with_context(|| format!("cannot read {source}"))?
        };
        return parse_records(&text).map_err(invalid);
    } else if args.job {
        let job_id = args.job_id.context("--job needs --job-id")?;
        Record::Job(JobRecord {
            schedule_type: ScheduleType::from(args.schedule_type.as_str()),
            client_name: args.client_name.clone().unwrap_or_default(),
            status: args.status,
            start_time: args.start_time.unwrap_or_else(unix_now),
            state: JobState::from(args.state.as_str()),
            policy_name: args.policy_name.clone(),
            parent_job_id: args.parent_job_id.unwrap_or(job_id),
            job_id,
            policy_type: args.policy_type.clone(),
            job_type: JobType::from(args.job_type.as_str()),
        })
    } else {
        let backup_id = args.backup_id.clone().context("--image needs --backup-id")?;
        let (client, time) =
            backup_id.rsplit_once('_').context("--backup-id must be <clientName>_<backupTime>")?;
        let backup_time = match args.backup_time {
            Some(time) => time,
            None => time.parse().context("--backup-id must end with _<backupTime in Unix seconds>")?,
        };
        Record::Image(ImageRecord {
            client_type: args.client_type.clone(),
            client_name: args.client_name.clone().unwrap_or_else(|| client.to_owned()),
            backup_time,
            created_time: args.created_time.unwrap_or_else(unix_now),
            operation_id: ImageOperation::from(args.operation.as_str()),
            backup_id,
        })
    };
    validate_record(&record).map_err(invalid)?;
    Ok(vec![record])
}
