//! The files an image holds: derived from the policy's backup selections when the image was made, the
//! same every time for the same image, and exactly as many files as the image's `numFiles`.
//!
//! Directories end with `/`, as NetBackup's catalog writes them. Windows paths are written
//! `/C/Users/...`, as NetBackup stores them.

use chrono::{DateTime, TimeDelta, Utc};

use crate::model::Image;

/// One file or directory of an image.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Entry {
    /// The full path; directories end with `/`.
    pub(crate) full_path: String,
    pub(crate) directory: bool,
    /// Bytes (0 for directories).
    pub(crate) size: i64,
    pub(crate) modified: DateTime<Utc>,
}

impl Entry {
    /// The directory that holds the entry, with a trailing `/`.
    pub(crate) fn parent(&self) -> &str {
        let trimmed = self.full_path.trim_end_matches('/');
        trimmed.rfind('/').map_or("/", |at| &self.full_path[..=at])
    }

    /// The entry's own name (directories keep their trailing `/`).
    pub(crate) fn name(&self) -> &str {
        &self.full_path[self.parent().len()..]
    }
}

/// Subdirectories per root.
const SUBDIRECTORIES: usize = 3;
const EXTENSIONS: &[&str] = &["conf", "log", "txt", "dat", "json", "xml", "db", "bin"];

/// A stable hash (FNV-1a), so the contents never depend on the process.
fn hash(parts: &[&str], index: usize) -> u64 {
    let mut value: u64 = 0xcbf2_9ce4_8422_2325;
    for byte in parts.iter().flat_map(|part| part.bytes().chain([0])).chain(index.to_le_bytes()) {
        value ^= u64::from(byte);
        value = value.wrapping_mul(0x0100_0000_01b3);
    }
    value
}

/// The directories a backup of `selections` starts from.
fn roots(image: &Image) -> Vec<String> {
    let windows = image.policy_type.to_ascii_lowercase().contains("windows");
    let mut roots: Vec<String> = image
        .selections
        .iter()
        .filter_map(|selection| {
            let selection = selection.trim();
            if selection.starts_with("vmware:") || selection.is_empty() {
                None
            } else if selection.eq_ignore_ascii_case("ALL_LOCAL_DRIVES") {
                Some(if windows { "/C/".to_owned() } else { "/".to_owned() })
            } else if let Some((drive, rest)) =
                selection.split_once(":\\").or_else(|| selection.split_once(":/"))
            {
                Some(format!("/{drive}/{}", rest.replace('\\', "/")))
            } else {
                Some(selection.to_owned())
            }
        })
        .map(|root| if root.ends_with('/') { root } else { format!("{root}/") })
        .collect();
    if roots.is_empty() {
        // A virtual machine's guest file systems (and selections that name none).
        roots = vec!["/etc/".into(), "/home/".into(), "/opt/".into(), "/var/log/".into()];
    }
    roots.sort();
    roots.dedup();
    roots
}

/// Every file and directory of `image`, in path order.
pub(crate) fn entries(image: &Image) -> Vec<Entry> {
    let roots = roots(image);
    let files = usize::try_from(image.num_files.max(0)).unwrap_or(0);
    let id = image.backup_id.as_str();
    let modified = |index: usize| {
        image.backup_time - TimeDelta::seconds((hash(&[id, "m"], index) % (30 * 86_400)) as i64)
    };
    let mut entries = Vec::with_capacity(files + roots.len() * (SUBDIRECTORIES + 1));
    for (root_index, root) in roots.iter().enumerate() {
        entries.push(Entry {
            full_path: root.clone(),
            directory: true,
            size: 0,
            modified: modified(root_index),
        });
        for sub in 0..SUBDIRECTORIES {
            let directory = format!("{root}dir{sub:02}/");
            let first = (root_index * SUBDIRECTORIES + sub) * files / (roots.len() * SUBDIRECTORIES);
            let last = (root_index * SUBDIRECTORIES + sub + 1) * files / (roots.len() * SUBDIRECTORIES);
            entries.push(Entry {
                full_path: directory.clone(),
                directory: true,
                size: 0,
                modified: modified(first),
            });
            for index in first..last {
                let extension = EXTENSIONS[(hash(&[id, "x"], index) % EXTENSIONS.len() as u64) as usize];
                entries.push(Entry {
                    full_path: format!("{directory}file{index:04}.{extension}"),
                    directory: false,
                    size: (hash(&[id, "s"], index) % (8 << 20)) as i64 + 1,
                    modified: modified(index),
                });
            }
        }
    }
    entries
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::ScheduleKind;

    fn image(policy_type: &str, selections: &[&str], files: i64) -> Image {
        Image {
            backup_id: "client01_1700000000".into(),
            policy_name: "p".into(),
            policy_type: policy_type.into(),
            client_name: "client01".into(),
            backup_time: DateTime::from_timestamp(1_700_000_000, 0).unwrap(),
            schedule_name: "FULL".into(),
            schedule_kind: ScheduleKind::Full,
            job_id: 1,
            kbytes: 1,
            num_files: files,
            elapsed_seconds: 1,
            keyword: String::new(),
            copies: Vec::new(),
            slp: None,
            selections: selections.iter().map(|s| (*s).to_owned()).collect(),
        }
    }

    #[test]
    fn as_many_files_as_the_image_says_the_same_every_time() {
        let image = image("Standard", &["/etc", "/home"], 101);
        let entries = entries(&image);
        assert_eq!(entries.iter().filter(|e| !e.directory).count(), 101);
        assert_eq!(entries, super::entries(&image));
        let file = entries.iter().find(|e| !e.directory).unwrap();
        assert!(file.full_path.starts_with("/etc/dir00/file0000."), "{file:?}");
        assert_eq!(file.parent(), "/etc/dir00/");
        assert!(file.name().starts_with("file0000."));
        let root = &entries[0];
        assert_eq!((root.full_path.as_str(), root.parent(), root.name()), ("/etc/", "/", "etc/"));
        assert!(entries.iter().all(|e| e.modified <= image.backup_time && (e.size > 0) != e.directory));
    }

    #[test]
    fn windows_drives_and_virtual_machines() {
        let windows = entries(&image("MS-Windows", &["ALL_LOCAL_DRIVES", "D:\\Shares"], 10));
        assert!(windows.iter().any(|e| e.full_path == "/C/"));
        assert!(windows.iter().any(|e| e.full_path == "/D/Shares/"));
        let vm = entries(&image("VMware", &["vmware:/?filter=Displayname Contains 'vm-'"], 10));
        assert!(vm.iter().any(|e| e.full_path == "/var/log/"));
    }
}
