//! `nbwss bench`: each scenario runs at tiny sizes and reports sane figures. No timing is asserted here;
//! the figures themselves are in BENCHMARKS.md.

use serde_json::Value;

use crate::util::nbwss;

/// Runs `nbwss bench ARGS --out FILE` and returns the report's figures.
fn bench(args: &[&str]) -> serde_json::Map<String, Value> {
    let dir = tempfile::tempdir().unwrap();
    let json = dir.path().join("report.json");
    let json_arg = json.to_string_lossy().into_owned();
    let dir_arg = dir.path().to_string_lossy().into_owned();
    let mut all: Vec<&str> = vec!["bench"];
    all.extend_from_slice(args);
    all.extend_from_slice(&["--out", &json_arg, "--dir", &dir_arg]);
    let run = nbwss(&all, "");
    assert_eq!(run.status, 0, "nbwss {all:?}\nstdout:\n{}\nstderr:\n{}", run.stdout, run.stderr);
    assert!(run.stdout.contains(&format!("nbwss bench {}", args[0])), "{}", run.stdout);
    // Every scenario but the instruction count compares with the targets.
    assert!(args[0] == "instructions" || run.stdout.contains("Targets\n"), "{}", run.stdout);
    // Piped: no progress line (it is for a terminal).
    assert!(!run.stderr.contains('\r') && !run.stderr.contains("running,"), "{}", run.stderr);
    let report: Value = serde_json::from_str(&std::fs::read_to_string(&json).unwrap()).unwrap();
    assert!(report["machine"]["cpus"].as_u64().unwrap() >= 1);
    report["figures"].as_object().unwrap().clone()
}

fn positive(figures: &serde_json::Map<String, Value>, names: &[&str]) {
    for name in names {
        let value = figures.get(*name).and_then(Value::as_f64);
        assert!(
            value.is_some_and(|value| value > 0.0 && value.is_finite()),
            "{name} = {value:?} in {figures:?}"
        );
    }
}

fn zero(figures: &serde_json::Map<String, Value>, names: &[&str]) {
    for name in names {
        assert_eq!(figures.get(*name).and_then(Value::as_f64), Some(0.0), "{name} in {figures:?}");
    }
}

#[test]
fn relay_compares_relayed_and_tunnelled_with_direct_calls() {
    let figures = bench(&[
        "relay",
        "--concurrency",
        "2",
        "--requests",
        "20",
        "--large-requests",
        "4",
        "--job-concurrency",
        "2",
        "--job-requests",
        "20",
        "--single-requests",
        "10",
        "--warmup",
        "1",
    ]);
    for case in ["job_single", "job", "single", "small", "large"] {
        let names: Vec<String> =
            ["direct_rps", "tunnel_rps", "relayed_rps", "relayed_p99_ms", "tunnel_p50_ms"]
                .iter()
                .chain(&["throughput_ratio", "tunnel_throughput_ratio", "response_bytes"])
                .map(|name| format!("{case}_{name}"))
                .collect();
        positive(&figures, &names.iter().map(String::as_str).collect::<Vec<_>>());
        let errors: Vec<String> =
            ["direct", "tunnel", "relayed"].iter().map(|path| format!("{case}_{path}_errors")).collect();
        zero(&figures, &errors.iter().map(String::as_str).collect::<Vec<_>>());
    }
    assert!(figures["large_response_bytes"].as_f64().unwrap() >= 1024.0 * 1024.0);
    // A job by id is about 1 KB, the page about 21 KB.
    assert!(figures["job_response_bytes"].as_f64() < figures["small_response_bytes"].as_f64(), "{figures:?}");
}

#[test]
fn reconcile_reports_memory_and_time_of_two_reconciliations() {
    let figures = bench(&["reconcile", "--images", "300"]);
    positive(
        &figures,
        &[
            "reconcile_1_seconds",
            "reconcile_2_seconds",
            "reconcile_1_peak_rss_kib",
            "peak_rss_kib",
            "idle_rss_kib",
        ],
    );
    assert!(figures["images"].as_f64().unwrap() >= 300.0);
}

/// Runs under valgrind: fails, saying what to install, where it is missing. 40 calls, so that the calls'
/// instructions (about 20 million for the direct way) stand well above the few million by which a process's
/// start and stop differ from run to run on a loaded machine.
#[test]
fn instructions_counts_each_path_under_callgrind() {
    let figures = bench(&["instructions", "--calls", "40"]);
    positive(
        &figures,
        &["direct_instructions_per_call", "tunnel_instructions_per_call", "relayed_instructions_per_call"],
    );
}

#[test]
fn notifications_flow_to_the_endpoint_store() {
    let figures = bench(&["notifications", "--records", "200", "--batch-one-records", "10", "--chunk", "50"]);
    positive(&figures, &["batched_records_per_second", "single_records_per_second", "batched_p99_ms"]);
    assert_eq!(figures["batched_records"].as_f64(), Some(200.0));
    assert_eq!(figures["single_records"].as_f64(), Some(10.0));
}

/// Offered load: ingest paced at `--rate` in small calls, one phase only, latency figures from it.
#[test]
fn notifications_at_an_offered_rate_report_the_latency_below_saturation() {
    let figures = bench(&["notifications", "--records", "30", "--batch-size", "1", "--rate", "200"]);
    assert_eq!(figures["offered_records"].as_f64(), Some(30.0));
    positive(&figures, &["offered_records_per_second", "offered_ingest_records_per_second"]);
    for name in ["offered_p50_ms", "offered_p99_ms", "offered_max_ms"] {
        assert!(
            figures[name].as_f64().is_some_and(|ms| ms >= 0.0 && ms.is_finite()),
            "{name} in {figures:?}"
        );
    }
    // Paced, not a burst: 30 records at 200/s take at least the 140 ms of the schedule (the last call is due at 28 / 200 s).
    assert!(figures["offered_ingest_seconds"].as_f64().unwrap() >= 0.14, "{figures:?}");
    assert!(!figures.contains_key("batched_records") && !figures.contains_key("single_records"));
}

#[test]
fn fleet_connects_idles_and_reconnects() {
    let figures = bench(&["fleet", "--services", "20", "--keepalive", "1", "--period", "2"]);
    positive(
        &figures,
        &[
            "endpoint_rss_connected_kib",
            "connect_all_seconds",
            "restart_to_all_seconds",
            "peak_reconnect_rate",
        ],
    );
    zero(&figures, &["idle_disconnects"]);
}

/// Both service binaries are measured side by side: `nbwss service run` and the service-only `nbwss-service`
/// that cargo builds next to `nbwss` for these tests.
#[test]
fn footprint_measures_service_and_emulator_processes() {
    let figures = bench(&["footprint", "--settle", "1", "--calls", "50"]);
    positive(
        &figures,
        &[
            "service_rss_kib",
            "service_startup_ms",
            "service_binary_bytes",
            "service_only_rss_kib",
            "service_only_startup_ms",
            "service_only_binary_bytes",
            "service_only_rss_ratio",
            "emulator_rss_kib",
            "emulator_startup_ms",
        ],
    );
    // CPU time comes in 10 ms ticks: 50 calls may round to zero, but the figure is there for both.
    for name in ["service_cpu_us_per_call", "service_only_cpu_us_per_call"] {
        assert!(figures[name].as_f64().is_some_and(|value| value >= 0.0 && value.is_finite()), "{name}");
    }
    assert!(
        figures["service_only_binary_bytes"].as_f64() < figures["service_binary_bytes"].as_f64(),
        "the service-only binary is not smaller than nbwss: {figures:?}"
    );
}
