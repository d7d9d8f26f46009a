//! Storage lifecycle policies (`/config/slps`): versioned lists of operations. A backup whose policy
//! stores to an SLP writes the SLP's backup copy; the later operations (duplication, replication) make
//! the image's further copies afterwards, on the emulated clock (see `engine::run_slp`).

use chrono::{DateTime, Utc};
use serde_json::{json, Map, Value};

use crate::clock::format_time;
use crate::error::{ApiError, ApiResult};
use crate::model::retention_seconds;

/// The operation types of the documents; the emulator runs BACKUP, DUPLICATION and REPLICATION and keeps
/// the others as configuration.
const OPERATION_TYPES: &[&str] = &[
    "BACKUP",
    "SNAPSHOT",
    "IMPORT",
    "BACKUP_FROM_SNAPSHOT",
    "INDEX_FROM_SNAPSHOT",
    "DUPLICATION",
    "REPLICATION",
    "REPLICATE_TO_REMOTE_MASTER",
    "CLOUD",
];
const RETENTION_TYPES: &[&str] = &[
    "FIXED",
    "EXPIRE_AFTER_COPY",
    "MAXIMUM_SNAPSHOT_LIMIT",
    "MIRROR",
    "TARGET_RETENTION",
    "CAPACITY_MANAGED",
];
/// The most operations one SLP may have (NetBackup's own limit is lower still).
const MAX_OPERATIONS: usize = 32;

/// One operation of an SLP version, as the engine reads it.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Operation {
    /// From 1.
    pub(crate) index: u32,
    pub(crate) kind: String,
    /// The operation whose copy this one copies (0: none, for the backup).
    pub(crate) source: u32,
    /// The storage unit it writes to.
    pub(crate) storage: String,
    pub(crate) retention_seconds: i64,
    /// Replication to another primary server: its copy is a replica.
    pub(crate) remote: bool,
}

impl Operation {
    /// Whether this operation makes a copy of the backup after the backup ends.
    pub(crate) fn is_secondary(&self) -> bool {
        self.source != 0
            && matches!(self.kind.as_str(), "DUPLICATION" | "REPLICATION" | "REPLICATE_TO_REMOTE_MASTER")
    }

    /// The job type of the job that runs this operation.
    pub(crate) fn job_type(&self) -> &'static str {
        if self.kind == "DUPLICATION" {
            "DUPLICATE"
        } else {
            "REPLICATE"
        }
    }
}

/// One version of an SLP: its attributes as the client sees them (operation list normalised).
#[derive(Debug, Clone)]
pub(crate) struct SlpVersion {
    pub(crate) number: u32,
    pub(crate) attributes: Map<String, Value>,
}

impl SlpVersion {
    pub(crate) fn operations(&self) -> Vec<Operation> {
        self.attributes
            .get("operationList")
            .and_then(Value::as_array)
            .map(|list| list.iter().filter_map(operation_of).collect())
            .unwrap_or_default()
    }

    /// The operation that writes the backup copy.
    pub(crate) fn backup_operation(&self) -> Option<Operation> {
        self.operations().into_iter().find(|op| op.source == 0 && op.kind == "BACKUP")
    }

    pub(crate) fn render(&self, name: &str) -> Map<String, Value> {
        let mut attributes = self.attributes.clone();
        attributes.insert("slpName".into(), name.into());
        attributes.insert("versionNumber".into(), self.number.into());
        attributes
    }
}

/// A storage lifecycle policy and every version it had (the last is current).
#[derive(Debug, Clone)]
pub(crate) struct Slp {
    pub(crate) name: String,
    pub(crate) versions: Vec<SlpVersion>,
}

impl Slp {
    pub(crate) fn current(&self) -> Option<&SlpVersion> {
        self.versions.last()
    }

    /// Adds a version with `attributes` (already checked by [`normalise`]).
    pub(crate) fn push_version(&mut self, attributes: Map<String, Value>) -> u32 {
        let number = self.versions.last().map_or(0, |version| version.number + 1);
        self.versions.push(SlpVersion { number, attributes });
        number
    }

    /// Whether any version of this SLP writes to `storage_unit`.
    pub(crate) fn uses(&self, storage_unit: &str) -> bool {
        self.current().is_some_and(|version| version.operations().iter().any(|op| op.storage == storage_unit))
    }
}

fn operation_of(value: &Value) -> Option<Operation> {
    let kind = value.get("operationType")?.as_str()?.to_owned();
    let target_master = value.get("targetMasterServer").and_then(Value::as_str).unwrap_or_default();
    Some(Operation {
        index: u32::try_from(value.get("operationIndex")?.as_u64()?).ok()?,
        remote: kind == "REPLICATE_TO_REMOTE_MASTER" || (kind == "REPLICATION" && !target_master.is_empty()),
        kind,
        source: u32::try_from(value.get("sourceOperationIndex").and_then(Value::as_u64).unwrap_or(0)).ok()?,
        storage: value.get("storage")?.get("name")?.as_str()?.to_owned(),
        retention_seconds: retention_seconds(value.get("retentionPeriod")),
    })
}

/// Checks and completes the attributes of an SLP a client sends: at least one operation, a BACKUP with no
/// source, every source an earlier operation, every storage an existing storage unit (`storage_type`
/// gives its server type; `None` when it does not exist), retention periods and enums as documented.
/// Operation indexes are assigned in order when missing.
pub(crate) fn normalise(
    given: &Map<String, Value>,
    storage_type: impl Fn(&str) -> Option<String>,
    now: DateTime<Utc>,
) -> ApiResult<Map<String, Value>> {
    let mut attributes = given.clone();
    attributes.remove("slpName");
    attributes.remove("versionNumber");
    let list = match attributes.get("operationList") {
        Some(Value::Array(list)) if !list.is_empty() => list.clone(),
        Some(Value::Array(_) | Value::Null) | None => {
            return Err(ApiError::bad_attribute("operationList", "required: at least one operation"))
        }
        Some(_) => return Err(ApiError::bad_attribute("operationList", "must be a list of operations")),
    };
    if list.len() > MAX_OPERATIONS {
        return Err(ApiError::bad_attribute("operationList", format!("at most {MAX_OPERATIONS} operations")));
    }
    let mut operations = Vec::new();
    for (position, item) in list.iter().enumerate() {
        let at = |key: &str| format!("operationList[{position}].{key}");
        let Value::Object(item) = item else {
            return Err(ApiError::bad_attribute(&format!("operationList[{position}]"), "must be an object"));
        };
        let mut item = item.clone();
        let index = match item.get("operationIndex") {
            None | Some(Value::Null) => position as u64 + 1,
            Some(value) => value.as_u64().filter(|index| *index == position as u64 + 1).ok_or_else(|| {
                ApiError::bad_attribute(&at("operationIndex"), format!("must be {}", position + 1))
            })?,
        };
        let kind = item
            .get("operationType")
            .and_then(Value::as_str)
            .filter(|kind| OPERATION_TYPES.contains(kind))
            .ok_or_else(|| {
                ApiError::bad_attribute(
                    &at("operationType"),
                    format!("required: one of {}", OPERATION_TYPES.join(", ")),
                )
            })?
            .to_owned();
        let source = match item.get("sourceOperationIndex") {
            None | Some(Value::Null) => 0,
            Some(value) => value
                .as_u64()
                .ok_or_else(|| ApiError::bad_attribute(&at("sourceOperationIndex"), "must be an integer"))?,
        };
        if source >= index {
            return Err(ApiError::bad_attribute(
                &at("sourceOperationIndex"),
                "must name an earlier operation, or be 0",
            ));
        }
        if source == 0 && position > 0 && !matches!(kind.as_str(), "BACKUP" | "SNAPSHOT" | "IMPORT") {
            return Err(ApiError::bad_attribute(
                &at("sourceOperationIndex"),
                format!("a {kind} operation needs a source"),
            ));
        }
        if position == 0 && !matches!(kind.as_str(), "BACKUP" | "SNAPSHOT" | "IMPORT") {
            return Err(ApiError::bad_attribute(
                &at("operationType"),
                "the first operation must be BACKUP, SNAPSHOT or IMPORT",
            ));
        }
        let storage = item
            .get("storage")
            .and_then(|s| s.get("name"))
            .and_then(Value::as_str)
            .filter(|name| !name.is_empty())
            .ok_or_else(|| ApiError::bad_attribute(&at("storage.name"), "required: a storage unit"))?
            .to_owned();
        let remote = !item.get("targetMasterServer").and_then(Value::as_str).unwrap_or_default().is_empty();
        let stype = match storage_type(&storage) {
            Some(stype) => stype,
            None if remote => String::new(),
            None => {
                return Err(ApiError::bad_attribute(
                    &at("storage.name"),
                    format!("no storage unit is named {storage:?}"),
                ))
            }
        };
        let period =
            item.get("retentionPeriod").cloned().unwrap_or_else(|| json!({"value": 2, "unit": "WEEKS"}));
        let period_ok = period.get("value").and_then(Value::as_i64).is_some_and(|v| v >= -1)
            && period.get("unit").and_then(Value::as_str).is_some_and(|unit| {
                ["SECONDS", "MINUTES", "HOURS", "DAYS", "WEEKS", "MONTHS", "YEARS", "INFINITE"]
                    .contains(&unit)
            });
        if !period_ok {
            return Err(ApiError::bad_attribute(
                &at("retentionPeriod"),
                "must be {\"value\": -1 or more, \"unit\": \"DAYS\", \"WEEKS\", ...}",
            ));
        }
        let retention_type = item.get("retentionType").and_then(Value::as_str).unwrap_or("FIXED").to_owned();
        if !RETENTION_TYPES.contains(&retention_type.as_str()) {
            return Err(ApiError::bad_attribute(
                &at("retentionType"),
                format!("must be one of {}", RETENTION_TYPES.join(", ")),
            ));
        }
        let mut storage_object = item.get("storage").and_then(Value::as_object).cloned().unwrap_or_default();
        storage_object.insert("name".into(), storage.into());
        storage_object.insert("stype".into(), stype.into());
        item.insert("storage".into(), Value::Object(storage_object));
        item.insert("operationIndex".into(), index.into());
        item.insert("operationType".into(), kind.into());
        item.insert("sourceOperationIndex".into(), source.into());
        item.insert("retentionPeriod".into(), period);
        item.insert("retentionType".into(), retention_type.into());
        for (key, default) in [
            ("targetMasterServer", ""),
            ("targetImportSLP", ""),
            ("volumePool", ""),
            ("serverGroup", "Any"),
            ("alternateReadServer", ""),
        ] {
            item.entry(key).or_insert_with(|| default.into());
        }
        item.entry("preserveMultiplexing").or_insert(false.into());
        item.entry("operationActivationTime").or_insert_with(|| format_time(now).into());
        operations.push(Value::Object(item));
    }
    attributes.insert("operationList".into(), Value::Array(operations));
    attributes.entry("active").or_insert(true.into());
    attributes.insert("activationTime".into(), format_time(now).into());
    attributes.entry("dataClassification").or_insert("".into());
    attributes.entry("duplicationPriority").or_insert(0.into());
    for (key, expected) in
        [("active", "a boolean"), ("dataClassification", "a string"), ("duplicationPriority", "an integer")]
    {
        let ok = match key {
            "active" => attributes.get(key).is_some_and(Value::is_boolean),
            "dataClassification" => attributes.get(key).is_some_and(Value::is_string),
            _ => attributes.get(key).is_some_and(Value::is_i64),
        };
        if !ok {
            return Err(ApiError::bad_attribute(key, format!("must be {expected}")));
        }
    }
    Ok(attributes)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn storage(name: &str) -> Option<String> {
        ["stu-msdp-01", "stu-disk-01"].contains(&name).then(|| "PureDisk".to_owned())
    }

    fn attributes(list: Value) -> Map<String, Value> {
        json!({"operationList": list}).as_object().cloned().unwrap()
    }

    #[test]
    fn normalises_a_backup_then_duplication() {
        let given = attributes(json!([
            {"operationType": "BACKUP", "storage": {"name": "stu-msdp-01"}, "retentionPeriod": {"value": 2, "unit": "WEEKS"}},
            {"operationType": "DUPLICATION", "sourceOperationIndex": 1, "storage": {"name": "stu-disk-01"},
             "retentionPeriod": {"value": 1, "unit": "MONTHS"}},
        ]));
        let attributes = normalise(&given, storage, Utc::now()).unwrap();
        let version = SlpVersion { number: 0, attributes };
        let operations = version.operations();
        assert_eq!(operations.len(), 2);
        assert_eq!(version.backup_operation().unwrap().storage, "stu-msdp-01");
        assert!(operations[1].is_secondary());
        assert_eq!(operations[1].job_type(), "DUPLICATE");
        assert_eq!(operations[1].retention_seconds, 30 * 86_400);
        assert!(!operations[1].remote);
    }

    #[test]
    fn refuses_what_netbackup_refuses() {
        for (list, named) in [
            (json!([]), "operationList"),
            (json!([{"operationType": "DUPLICATION", "storage": {"name": "stu-disk-01"}}]), "operationType"),
            (json!([{"operationType": "BACKUP", "storage": {"name": "nope"}}]), "storage.name"),
            (
                json!([{"operationType": "BACKUP", "storage": {"name": "stu-disk-01"}},
                    {"operationType": "DUPLICATION", "sourceOperationIndex": 2, "storage": {"name": "stu-disk-01"}}]),
                "sourceOperationIndex",
            ),
            (
                json!([{"operationType": "BACKUP", "storage": {"name": "stu-disk-01"}, "retentionPeriod": {"value": 1, "unit": "FORTNIGHTS"}}]),
                "retentionPeriod",
            ),
            (json!([{"operationType": "LAUNCH", "storage": {"name": "stu-disk-01"}}]), "operationType"),
        ] {
            let error = normalise(&attributes(list.clone()), storage, Utc::now()).unwrap_err();
            assert_eq!(error.status.as_u16(), 400);
            assert!(error.details.iter().any(|d| d.contains(named)), "{list}: {error:?}");
        }
    }
}
