//! `nbwss.properties`: the guide's service properties (§9), with this project's defaults (D18) and the
//! project's own keys for the limits the guide leaves open (D4, D5, D8, D9).

use std::collections::HashMap;
use std::fmt;
use std::time::Duration;

/// The service's tunable properties, validated.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Properties {
    /// `exception.ignoreDecoder`: drop undecodable messages instead of closing the connection.
    pub ignore_decoder_exceptions: bool,
    /// `notification.sendTimeout` (ms): how long a notification send may take.
    pub notification_send_timeout: Duration,
    /// `notification.scheduledRate` (s): how often to look for notifications, and how long to wait for an
    /// acknowledgement before sending again.
    pub notification_scheduled_rate: Duration,
    /// `keepAlive.scheduledRate` (s): ping interval.
    pub keep_alive_scheduled_rate: Duration,
    /// `keepAlive.maxPongMissAllowed`: consecutive unanswered pings before the connection is closed.
    pub keep_alive_max_pong_miss_allowed: u32,
    /// `connectionInfo.period` (s): period of the connection task.
    pub connection_info_period: Duration,
    /// `connect.responseTimeout` (s): how long to wait for the CONNECT RESPONSE (D5).
    pub connect_response_timeout: Duration,
    /// `connect.handshakeTimeout` (s): how long the TLS handshake, and then the WebSocket upgrade, may take
    /// each. Well under the CONNECT response timeout by default: an endpoint that accepts TCP and then says
    /// nothing (a frozen process) costs this long before the next server of the group is tried.
    pub connect_handshake_timeout: Duration,
    /// `message.maxBytes`: largest message accepted or sent (D4).
    pub message_max_bytes: usize,
    /// `command.maxInFlight`: COMMANDs run at once per connection (D9).
    pub command_max_in_flight: usize,
    /// `command.timeout` (s): how long the primary server may take to answer a relayed call (D8).
    pub command_timeout: Duration,
    /// `notification.batchSize`: records per NOTIFICATION REQUEST.
    pub notification_batch_size: usize,
    /// `notification.maxUnacked`: NOTIFICATION REQUESTs a group may have sent and not yet acknowledged.
    pub notification_max_unacked: usize,
    /// `notification.pollInterval` (ms): how often the primary server is polled for job and image changes;
    /// `0` in the file means `notification.scheduledRate`, the guide's "checks for new notifications".
    pub notification_poll_interval: Duration,
    /// `notification.reconcileInterval` (s): how often the whole image catalog is compared with what was
    /// seen, to find updated, deleted and no-longer-local images.
    pub notification_reconcile_interval: Duration,
    /// `outbox.maxRecords`: records the outbox holds at most. At the cap, records that some server group
    /// has acknowledged are released (loudly) for the groups behind it; when no group has acknowledged
    /// them, detection pauses (loudly) instead.
    pub outbox_max_records: usize,
    /// `notification.groupRetention` (s): how long a server group that has no WebSocket server any more
    /// keeps its unacknowledged notifications, in case a server of the group is saved again.
    pub notification_group_retention: Duration,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Boolean,
    Milliseconds,
    Seconds,
    Count,
    Bytes,
}

/// One property: its key, kind, default and allowed range.
struct Spec {
    key: &'static str,
    kind: Kind,
    default: i64,
    min: i64,
    max: i64,
    help: &'static str,
}

const SPECS: &[Spec] = &[
    Spec {
        key: "exception.ignoreDecoder",
        kind: Kind::Boolean,
        default: 0,
        min: 0,
        max: 1,
        help: "ignore messages that cannot be decoded instead of closing the connection",
    },
    Spec {
        key: "notification.sendTimeout",
        kind: Kind::Milliseconds,
        default: 2000,
        min: 1,
        max: 600_000,
        help: "how long sending a notification may take",
    },
    Spec {
        key: "notification.scheduledRate",
        kind: Kind::Seconds,
        default: 5,
        min: 1,
        max: 86_400,
        help: "how often to look for notifications; how long to wait for an acknowledgement before resending",
    },
    Spec {
        key: "keepAlive.scheduledRate",
        kind: Kind::Seconds,
        default: 30,
        min: 1,
        max: 3600,
        help: "how often to ping each connected endpoint",
    },
    Spec {
        key: "keepAlive.maxPongMissAllowed",
        kind: Kind::Count,
        default: 3,
        min: 1,
        max: 1000,
        help: "consecutive pings without a pong before the connection is closed",
    },
    Spec {
        key: "connectionInfo.period",
        kind: Kind::Seconds,
        default: 60,
        min: 1,
        max: 86_400,
        help: "period of the connection task that adds and removes connections",
    },
    Spec {
        key: "connect.responseTimeout",
        kind: Kind::Seconds,
        default: 30,
        min: 1,
        max: 3600,
        help: "how long to wait for the endpoint's CONNECT RESPONSE",
    },
    Spec {
        key: "connect.handshakeTimeout",
        kind: Kind::Seconds,
        default: 10,
        min: 1,
        max: 3600,
        help: "how long the TLS handshake, and then the WebSocket upgrade, may each take before the next server is tried",
    },
    Spec {
        key: "message.maxBytes",
        kind: Kind::Bytes,
        default: 16 * 1024 * 1024,
        min: 1024,
        max: 1024 * 1024 * 1024,
        help: "largest NBWSS message accepted or sent",
    },
    Spec {
        key: "command.maxInFlight",
        kind: Kind::Count,
        default: 64,
        min: 1,
        max: 100_000,
        help: "COMMANDs run at once per connection; more are answered 429",
    },
    Spec {
        key: "command.timeout",
        kind: Kind::Seconds,
        default: 120,
        min: 1,
        max: 86_400,
        help: "how long the primary server may take to answer a relayed call; then 504",
    },
    Spec {
        key: "notification.batchSize",
        kind: Kind::Count,
        default: 100,
        min: 1,
        max: 10_000,
        help: "notification records per NOTIFICATION REQUEST",
    },
    Spec {
        key: "notification.maxUnacked",
        kind: Kind::Count,
        default: 10,
        min: 1,
        max: 10_000,
        help: "NOTIFICATION REQUESTs sent and not yet acknowledged, per server group",
    },
    Spec {
        key: "notification.pollInterval",
        kind: Kind::Milliseconds,
        default: 0,
        min: 0,
        max: 86_400_000,
        help: "how often to poll the primary server for job and image changes; 0 means notification.scheduledRate",
    },
    Spec {
        key: "notification.reconcileInterval",
        kind: Kind::Seconds,
        default: 300,
        min: 1,
        max: 86_400,
        help: "how often to compare the whole image catalog with what was seen (updates, deletions, lost copies)",
    },
    Spec {
        key: "outbox.maxRecords",
        kind: Kind::Count,
        default: 1_000_000,
        min: 1,
        max: 1_000_000_000,
        help: "notification records the outbox holds at most; at the cap the oldest records some group acknowledged are released for the groups behind, else detection pauses",
    },
    Spec {
        key: "notification.groupRetention",
        kind: Kind::Seconds,
        default: 7 * 24 * 3600,
        min: 0,
        max: 366 * 24 * 3600,
        help: "how long a server group without any WebSocket server keeps its unacknowledged notifications",
    },
];

impl Spec {
    fn allowed(&self) -> String {
        match self.kind {
            Kind::Boolean => "true or false".to_owned(),
            Kind::Milliseconds => {
                format!("an integer number of milliseconds from {} to {}", self.min, self.max)
            }
            Kind::Seconds => format!("an integer number of seconds from {} to {}", self.min, self.max),
            Kind::Count => format!("an integer from {} to {}", self.min, self.max),
            Kind::Bytes => format!("an integer number of bytes from {} to {}", self.min, self.max),
        }
    }

    fn parse(&self, text: &str) -> Option<i64> {
        if self.kind == Kind::Boolean {
            return match text.to_ascii_lowercase().as_str() {
                "true" => Some(1),
                "false" => Some(0),
                _ => None,
            };
        }
        text.parse::<i64>().ok().filter(|value| (self.min..=self.max).contains(value))
    }

    fn default_text(&self) -> String {
        match self.kind {
            Kind::Boolean => (self.default != 0).to_string(),
            _ => self.default.to_string(),
        }
    }
}

/// A value of the wrong type or out of range: start-up must stop (D19).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PropertiesError {
    /// 1-based line number.
    pub line: usize,
    /// The key, or the whole line when it has no `=`.
    pub key: String,
    /// The value given.
    pub value: String,
    /// What is allowed.
    pub allowed: String,
}

impl fmt::Display for PropertiesError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "nbwss.properties line {}: {}={}: must be {}",
            self.line, self.key, self.value, self.allowed
        )
    }
}

impl std::error::Error for PropertiesError {}

/// Something in the file that does not stop start-up but deserves a look (D19).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PropertyWarning {
    /// 1-based line number.
    pub line: usize,
    /// What is odd about it.
    pub message: String,
}

impl fmt::Display for PropertyWarning {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "nbwss.properties line {}: {}", self.line, self.message)
    }
}

impl Default for Properties {
    fn default() -> Self {
        Self::from_values(&HashMap::new())
    }
}

impl Properties {
    /// Parses the text of an `nbwss.properties` file (`key=value` or `key: value` lines, `#` and `!`
    /// comments). Keys not given keep their defaults; unknown keys and repeated keys are warnings.
    pub fn parse(text: &str) -> Result<(Self, Vec<PropertyWarning>), PropertiesError> {
        let mut values: HashMap<&'static str, i64> = HashMap::new();
        let mut seen: HashMap<&'static str, usize> = HashMap::new();
        let mut warnings = Vec::new();
        for (index, raw) in text.lines().enumerate() {
            let line = index + 1;
            let trimmed = raw.trim();
            if trimmed.is_empty() || trimmed.starts_with('#') || trimmed.starts_with('!') {
                continue;
            }
            let Some(split) = trimmed.find(['=', ':']) else {
                return Err(PropertiesError {
                    line,
                    key: trimmed.to_owned(),
                    value: String::new(),
                    allowed: "a key=value line".to_owned(),
                });
            };
            let key = trimmed[..split].trim();
            let value = trimmed[split + 1..].trim();
            let Some(spec) = SPECS.iter().find(|spec| spec.key == key) else {
                let hint = SPECS
                    .iter()
                    .find(|spec| spec.key.eq_ignore_ascii_case(key))
                    .map(|spec| format!(" (did you mean {}?)", spec.key))
                    .unwrap_or_default();
                warnings
                    .push(PropertyWarning { line, message: format!("unknown key '{key}' ignored{hint}") });
                continue;
            };
            let parsed = spec.parse(value).ok_or_else(|| PropertiesError {
                line,
                key: key.to_owned(),
                value: value.to_owned(),
                allowed: spec.allowed(),
            })?;
            if let Some(previous) = seen.insert(spec.key, line) {
                warnings.push(PropertyWarning {
                    line,
                    message: format!("{key} is also set on line {previous}; this line wins"),
                });
            }
            values.insert(spec.key, parsed);
        }
        Ok((Self::from_values(&values), warnings))
    }

    /// A commented `nbwss.properties` with every key at its default.
    pub fn defaults_file() -> String {
        let mut text = String::from("# nbwss.properties: NBWSS service properties (defaults shown).\n");
        for spec in SPECS {
            text.push_str(&format!(
                "\n# {}: {}\n{}={}\n",
                spec.help,
                spec.allowed(),
                spec.key,
                spec.default_text()
            ));
        }
        text
    }

    /// Every key this implementation knows.
    pub fn keys() -> impl Iterator<Item = &'static str> {
        SPECS.iter().map(|spec| spec.key)
    }

    fn from_values(values: &HashMap<&'static str, i64>) -> Self {
        let get = |key: &str| -> i64 {
            values.get(key).copied().unwrap_or_else(|| {
                SPECS.iter().find(|spec| spec.key == key).map(|spec| spec.default).unwrap_or_default()
            })
        };
        // Every value is range-checked against its spec, so these conversions cannot truncate.
        let seconds = |key: &str| Duration::from_secs(get(key).unsigned_abs());
        let count = |key: &str| usize::try_from(get(key)).unwrap_or(usize::MAX);
        Self {
            ignore_decoder_exceptions: get("exception.ignoreDecoder") != 0,
            notification_send_timeout: Duration::from_millis(get("notification.sendTimeout").unsigned_abs()),
            notification_scheduled_rate: seconds("notification.scheduledRate"),
            keep_alive_scheduled_rate: seconds("keepAlive.scheduledRate"),
            keep_alive_max_pong_miss_allowed: u32::try_from(get("keepAlive.maxPongMissAllowed"))
                .unwrap_or(u32::MAX),
            connection_info_period: seconds("connectionInfo.period"),
            connect_response_timeout: seconds("connect.responseTimeout"),
            connect_handshake_timeout: seconds("connect.handshakeTimeout"),
            message_max_bytes: count("message.maxBytes"),
            command_max_in_flight: count("command.maxInFlight"),
            command_timeout: seconds("command.timeout"),
            notification_batch_size: count("notification.batchSize"),
            notification_max_unacked: count("notification.maxUnacked"),
            notification_poll_interval: match get("notification.pollInterval") {
                0 => seconds("notification.scheduledRate"),
                millis => Duration::from_millis(millis.unsigned_abs()),
            },
            notification_reconcile_interval: seconds("notification.reconcileInterval"),
            outbox_max_records: count("outbox.maxRecords"),
            notification_group_retention: seconds("notification.groupRetention"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_follow_the_guide_and_d18() {
        let properties = Properties::default();
        assert!(!properties.ignore_decoder_exceptions);
        assert_eq!(properties.notification_send_timeout, Duration::from_millis(2000));
        assert_eq!(properties.notification_scheduled_rate, Duration::from_secs(5));
        assert_eq!(properties.keep_alive_scheduled_rate, Duration::from_secs(30));
        assert_eq!(properties.keep_alive_max_pong_miss_allowed, 3);
        assert_eq!(properties.connection_info_period, Duration::from_secs(60));
        assert_eq!(properties.connect_response_timeout, Duration::from_secs(30));
        assert_eq!(properties.message_max_bytes, 16 * 1024 * 1024);
        assert_eq!(properties.command_max_in_flight, 64);
        assert_eq!(properties.command_timeout, Duration::from_secs(120));
        assert_eq!(properties.notification_batch_size, 100);
        assert_eq!(properties.notification_max_unacked, 10);
        assert_eq!(properties.notification_poll_interval, Duration::from_secs(5));
        assert_eq!(properties.notification_reconcile_interval, Duration::from_secs(300));
        assert_eq!(properties.outbox_max_records, 1_000_000);
        assert_eq!(properties.notification_group_retention, Duration::from_secs(7 * 24 * 3600));
        assert_eq!(properties.connect_handshake_timeout, Duration::from_secs(10));
        assert!(properties.connect_handshake_timeout < properties.connect_response_timeout);
    }

    #[test]
    fn notification_keys_parse_and_poll_interval_follows_the_scheduled_rate() {
        let (properties, warnings) = Properties::parse(
            "notification.scheduledRate=2\nnotification.batchSize=7\noutbox.maxRecords=50\n",
        )
        .unwrap();
        assert!(warnings.is_empty());
        assert_eq!(properties.notification_poll_interval, Duration::from_secs(2));
        assert_eq!(properties.notification_batch_size, 7);
        assert_eq!(properties.outbox_max_records, 50);
        let (properties, _) = Properties::parse(
            "notification.pollInterval=250\nnotification.maxUnacked=3\nnotification.reconcileInterval=1\n",
        )
        .unwrap();
        assert_eq!(properties.notification_poll_interval, Duration::from_millis(250));
        assert_eq!(properties.notification_max_unacked, 3);
        assert_eq!(properties.notification_reconcile_interval, Duration::from_secs(1));
        let error = Properties::parse("notification.batchSize=0").unwrap_err().to_string();
        assert!(error.contains("notification.batchSize=0: must be an integer from 1 to 10000"), "{error}");
    }

    #[test]
    fn parses_the_guide_format_with_warnings() {
        let text =
            "# comment\n! also a comment\nexception.ignoreDecoder=TRUE\nnotification.sendTimeout = 500\n\
                    keepAlive.scheduledRate: 10\nconnectionInfo.period=7\nconnectioninfo.Period=8\n\
                    connectionInfo.period=9\n";
        let (properties, warnings) = Properties::parse(text).unwrap();
        assert!(properties.ignore_decoder_exceptions);
        assert_eq!(properties.notification_send_timeout, Duration::from_millis(500));
        assert_eq!(properties.keep_alive_scheduled_rate, Duration::from_secs(10));
        assert_eq!(properties.connection_info_period, Duration::from_secs(9));
        let messages: Vec<String> = warnings.iter().map(ToString::to_string).collect();
        assert_eq!(
            messages,
            [
                "nbwss.properties line 7: unknown key 'connectioninfo.Period' ignored (did you mean connectionInfo.period?)",
                "nbwss.properties line 8: connectionInfo.period is also set on line 6; this line wins",
            ]
        );
    }

    #[test]
    fn wrong_type_or_range_names_key_value_and_rule() {
        let cases = [
            ("notification.scheduledRate=abc", "line 1: notification.scheduledRate=abc: must be an integer number of seconds from 1 to 86400"),
            ("keepAlive.maxPongMissAllowed=0", "line 1: keepAlive.maxPongMissAllowed=0: must be an integer from 1 to 1000"),
            ("exception.ignoreDecoder=yes", "line 1: exception.ignoreDecoder=yes: must be true or false"),
            ("notification.sendTimeout=-5", "must be an integer number of milliseconds from 1 to 600000"),
            ("just a line", "line 1: just a line=: must be a key=value line"),
        ];
        for (text, expected) in cases {
            let error = Properties::parse(text).unwrap_err().to_string();
            assert!(error.contains(expected), "{error} ≠ {expected}");
        }
    }

    #[test]
    fn defaults_file_parses_to_defaults() {
        let (properties, warnings) = Properties::parse(&Properties::defaults_file()).unwrap();
        assert_eq!(properties, Properties::default());
        assert!(warnings.is_empty());
        assert_eq!(Properties::keys().count(), SPECS.len());
    }
}
