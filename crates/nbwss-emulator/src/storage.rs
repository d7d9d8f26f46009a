//! Storage configuration: storage servers, the disk pools on them and the storage units on those pools,
//! as `/storage/...` shows them.
//!
//! Each record keeps its relation (the server of a pool, the pool of a unit) as a typed key and the
//! attributes a client sees as JSON, so that everything a client may set and read back round-trips.
//! Capacity used is computed from the catalog: the images' copies on a unit's pool.

use serde_json::{json, Map, Value};

use crate::model::Image;

/// Raw size of every emulated disk volume: 50 TiB.
const VOLUME_BYTES: i64 = 50 << 40;

/// A storage server (`id` = `sType:name`, e.g. `PureDisk:nbu-media01.example.com`).
#[derive(Debug, Clone)]
pub(crate) struct StorageServer {
    pub(crate) id: String,
    pub(crate) name: String,
    pub(crate) category: String,
    /// The server type: `PureDisk` for MSDP, `AdvancedDisk`, a cloud provider id, ...
    pub(crate) stype: String,
    pub(crate) media_server: String,
    /// Every other attribute as the client sees it (`encryptionEnabled`, `msdpAttributes`, ...).
    pub(crate) attributes: Map<String, Value>,
}

/// A disk pool on one storage server (`id` = `sType_name`).
#[derive(Debug, Clone)]
pub(crate) struct DiskPool {
    pub(crate) id: String,
    pub(crate) name: String,
    pub(crate) server_id: String,
    pub(crate) attributes: Map<String, Value>,
}

/// A storage unit on one disk pool (`id` = its name).
#[derive(Debug, Clone)]
pub(crate) struct StorageUnit {
    pub(crate) name: String,
    pub(crate) pool_id: String,
    pub(crate) attributes: Map<String, Value>,
}

/// The server type NetBackup gives a storage server of `category`.
pub(crate) fn server_type(category: &str, attributes: &Map<String, Value>) -> String {
    let nested = |object: &str, key: &str| {
        attributes.get(object).and_then(|o| o.get(key)).and_then(Value::as_str).map(str::to_owned)
    };
    match category {
        "MSDP" | "CLOUD_CATALYST" => "PureDisk".to_owned(),
        "ADVANCED_DISK" => "AdvancedDisk".to_owned(),
        "CLOUD" => {
            format!("{}_raw", nested("cloudAttributes", "providerId").unwrap_or_else(|| "cloud".into()))
        }
        _ => nested("openStorageAttributes", "storageServerType").unwrap_or_else(|| "OpenStorage".into()),
    }
}

impl StorageServer {
    /// A storage server of `category` on `media_server` with NetBackup's defaults; `extra` (what the client
    /// sent) overrides them. Credentials are never kept.
    pub(crate) fn new(name: &str, category: &str, media_server: &str, extra: &Map<String, Value>) -> Self {
        let stype = server_type(category, extra);
        let msdp = category == "MSDP";
        let mut attributes = json!({
            "encryptionEnabled": false,
            "kmsEnabled": false,
            "isSnapshotSupported": false,
            "isAcceleratorSupported": msdp,
            "isAIRSupported": msdp,
            "storageServerState": "UP",
            "storageServerCapabilities": if msdp {
                json!(["OPEN_STORAGE", "DISK_GROUPS", "ACTIVE_DISK_GROUPS", "COPY_EXTENTS", "ADMIN_UP", "INTERNAL_UP",
                       "SPAN_IMAGES", "LIFE_CYCLE", "CAPACITY_MANAGEMENT", "FRAGMENT_IMAGES", "OPTIMIZED_IMAGE",
                       "INSTANT_ACCESS", "SUPPORTS_REPLICATION"])
            } else {
                json!(["DISK_GROUPS", "ADMIN_UP", "INTERNAL_UP", "SPAN_IMAGES", "LIFE_CYCLE", "CAPACITY_MANAGEMENT",
                       "FRAGMENT_IMAGES"])
            },
            "isWormSupported": false,
            "isUshareSupported": false,
            "additionalMediaServersDetails": [],
            "nbuHostVersion": "11.2.0.0",
        })
        .as_object()
        .cloned()
        .unwrap_or_default();
        for (key, value) in extra {
            // Only the attribute object of this category of server (an MSDP server has no cloudAttributes).
            let own = category_object(category);
            if key.ends_with("Attributes") && Some(key.as_str()) != own {
                continue;
            }
            attributes.insert(key.clone(), value.clone());
        }
        forget_secrets(&mut attributes);
        if msdp {
            let path = attributes
                .get("msdpAttributes")
                .and_then(|m| m.get("storagePath"))
                .and_then(Value::as_str)
                .unwrap_or("/msdp/data")
                .to_owned();
            let defaults = json!({
                "storagePath": path,
                "spaLogPath": format!("{path}/log"),
                "deduplicationDBPath": format!("{path}/databases"),
                "specificNetworkInterface": "",
                "spaLogRetention": 90,
                "verboseLevel": 3,
                "fipsEnabled": false,
                "storagePoolDetails": {
                    "rawSizeBytes": VOLUME_BYTES, "reservedSpaceBytes": 0, "sizeBytes": VOLUME_BYTES,
                    "usedSpaceBytes": 0, "availableSpaceBytes": VOLUME_BYTES,
                },
                "catalogLogicalSizeBytes": 0,
                "catalogFilesCount": 0,
                "deduplicationRatioPercentage": 0.0,
            });
            merge_defaults(&mut attributes, "msdpAttributes", defaults);
        }
        if category == "CLOUD" {
            let endpoint = attributes
                .get("cloudAttributes")
                .and_then(|c| c.get("s3RegionDetails"))
                .and_then(|regions| regions.get(0))
                .and_then(|region| region.get("serviceHost"))
                .cloned()
                .unwrap_or_else(|| "".into());
            let defaults = json!({
                "compressionEnabled": false,
                "proxyServerEnabled": false,
                "serviceEndpoint": endpoint,
                "urlAccessStyle": "PATH_STYLE",
                "serverSideEncryptionEnabled": false,
                "readBufferSizeBytes": 0,
                "writeBufferSizeBytes": 0,
                "objectSizeMegabytes": 64,
                "authType": "ACCESS_KEY",
                "curlDetails": {"curlLoggingEnabled": false, "curlTimeOutSeconds": 900, "curlConnectionTimeOutSeconds": 300},
                "sslDetails": {"useSSLMode": "DATA", "checkCertificateRevocation": false, "httpPort": 80, "httpsPort": 443},
            });
            merge_defaults(&mut attributes, "cloudAttributes", defaults);
        }
        Self {
            id: format!("{stype}:{name}"),
            name: name.to_owned(),
            category: category.to_owned(),
            stype,
            media_server: media_server.to_owned(),
            attributes,
        }
    }

    pub(crate) fn render(&self) -> Map<String, Value> {
        let mut attributes = self.attributes.clone();
        attributes.insert("name".into(), self.name.clone().into());
        attributes.insert("storageCategory".into(), self.category.clone().into());
        attributes.insert("sType".into(), self.stype.clone().into());
        attributes.insert(
            "mediaServerDetails".into(),
            json!({"name": self.media_server, "operatingSystem": "linux", "netbackupVersion": "11.2.0.0"}),
        );
        attributes
    }
}

impl DiskPool {
    /// A disk pool on `server` with NetBackup's defaults; `extra` overrides them.
    pub(crate) fn new(name: &str, server: &StorageServer, extra: &Map<String, Value>) -> Self {
        let mut attributes = json!({
            "highWaterMark": 98,
            "lowWaterMark": 80,
            "maximumIoStreams": {"limitIoStreams": false},
            "diskPoolState": "UP",
            "wormCapable": false,
            "readOnly": false,
            "comment": "",
            "diskPoolCapabilities": if server.category == "MSDP" {
                json!(["VISIBLE", "OPEN_STORAGE", "COPY_EXTENTS", "ADMIN_UP", "INTERNAL_UP", "SPAN_IMAGES", "LIFE_CYCLE",
                       "CAPACITY_MANAGEMENT", "FRAGMENT_IMAGES", "OPTIMIZED_IMAGE", "REPLICATION_SOURCE", "REPLICATION_TARGET"])
            } else {
                json!(["VISIBLE", "ADMIN_UP", "INTERNAL_UP", "SPAN_IMAGES", "LIFE_CYCLE", "CAPACITY_MANAGEMENT",
                       "FRAGMENT_IMAGES"])
            },
            "mediaServersCount": 1,
        })
        .as_object()
        .cloned()
        .unwrap_or_default();
        for (key, value) in extra {
            attributes.insert(key.clone(), value.clone());
        }
        let id = format!("{}_{name}", server.stype);
        let volumes: Vec<Value> = attributes
            .get("diskVolumes")
            .and_then(Value::as_array)
            .cloned()
            .unwrap_or_default()
            .iter()
            .enumerate()
            .map(|(index, volume)| {
                let name = volume.get("name").and_then(Value::as_str).unwrap_or("PureDiskVolume");
                json!({
                    "name": name,
                    "id": format!("{}:{name}", server.id),
                    "diskMediaId": format!("@aaaa{}", char::from(b'a' + (index % 26) as u8)),
                    "state": "UP",
                    "isReplicationSource": server.category == "MSDP",
                    "isReplicationTarget": server.category == "MSDP",
                    "wormIndelibleMinimumInterval": 0,
                    "wormIndelibleMaximumInterval": 0,
                })
            })
            .collect();
        attributes.insert("diskVolumes".into(), Value::Array(volumes));
        Self { id, name: name.to_owned(), server_id: server.id.clone(), attributes }
    }

    pub(crate) fn render(&self, server: Option<&StorageServer>, used_bytes: i64) -> Map<String, Value> {
        let mut attributes = self.attributes.clone();
        let volumes = attributes.get("diskVolumes").and_then(Value::as_array).map_or(1, Vec::len).max(1);
        let raw = VOLUME_BYTES.saturating_mul(volumes as i64);
        attributes.insert("name".into(), self.name.clone().into());
        if let Some(server) = server {
            attributes.insert("sType".into(), server.stype.clone().into());
            attributes.insert("storageCategory".into(), server.category.clone().into());
        }
        attributes.insert("rawSizeBytes".into(), raw.into());
        attributes.insert("usableSizeBytes".into(), raw.into());
        attributes.insert("usedCapacityBytes".into(), used_bytes.into());
        attributes.insert("availableSpaceBytes".into(), raw.saturating_sub(used_bytes).max(0).into());
        attributes
    }
}

impl StorageUnit {
    /// A disk storage unit on `pool` with NetBackup's defaults; `extra` overrides them.
    pub(crate) fn new(
        name: &str,
        pool: &DiskPool,
        server: &StorageServer,
        extra: &Map<String, Value>,
    ) -> Self {
        let msdp = server.category == "MSDP";
        let mut attributes = json!({
            "useAnyAvailableMediaServer": true,
            "maxFragmentSizeMegabytes": 51_200,
            "maxConcurrentJobs": 10,
            "onDemandOnly": false,
            "useWorm": false,
            "accelerator": msdp,
            "replicationCapable": msdp,
            "replicationSourceCapable": msdp,
            "replicationTargetCapable": msdp,
            "instantAccessEnabled": msdp,
            "scaleOutEnabled": false,
            "isCloudSTU": server.category == "CLOUD",
            "wormCapable": false,
            "snapshot": false,
            "mirror": false,
            "independent": false,
            "primary": false,
            "okOnRoot": false,
            "stageData": false,
        })
        .as_object()
        .cloned()
        .unwrap_or_default();
        for (key, value) in extra {
            attributes.insert(key.clone(), value.clone());
        }
        Self { name: name.to_owned(), pool_id: pool.id.clone(), attributes }
    }

    /// The attributes a client sees; `used_bytes` is what the catalog holds on this unit.
    pub(crate) fn render(
        &self,
        pool: Option<&DiskPool>,
        server: Option<&StorageServer>,
        used_bytes: i64,
    ) -> Map<String, Value> {
        let mut attributes = self.attributes.clone();
        attributes.insert("name".into(), self.name.clone().into());
        attributes.insert("storageType".into(), "Disk".into());
        if let Some(server) = server {
            attributes.insert("storageSubType".into(), server.stype.clone().into());
            attributes.insert("storageServerType".into(), server.stype.clone().into());
            attributes.insert("storageCategory".into(), server.category.clone().into());
            let media = json!([{"name": server.media_server, "operatingSystem": "linux", "netbackupVersion": "11.2.0.0"}]);
            attributes.entry("mediaServerDetails").or_insert(media);
        }
        let volumes = pool
            .and_then(|pool| pool.attributes.get("diskVolumes"))
            .and_then(Value::as_array)
            .map_or(1, Vec::len)
            .max(1);
        let total = VOLUME_BYTES.saturating_mul(volumes as i64);
        attributes.insert("totalCapacityBytes".into(), total.into());
        attributes.insert("usedCapacityBytes".into(), used_bytes.into());
        attributes.insert("freeCapacityBytes".into(), total.saturating_sub(used_bytes).max(0).into());
        attributes
    }
}

/// The attribute object that belongs to storage servers of `category`.
fn category_object(category: &str) -> Option<&'static str> {
    match category {
        "MSDP" => Some("msdpAttributes"),
        "CLOUD" => Some("cloudAttributes"),
        "ADVANCED_DISK" => Some("advancedDiskAttributes"),
        "OPEN_STORAGE" => Some("openStorageAttributes"),
        _ => None,
    }
}

/// Removes credentials from what a client sent: the emulator never keeps or shows secrets.
fn forget_secrets(attributes: &mut Map<String, Value>) {
    for value in attributes.values_mut() {
        if let Value::Object(object) = value {
            object.remove("credentials");
            object.remove("cloudCredentials");
            object.remove("password");
            forget_secrets(object);
        }
    }
}

/// Fills the missing keys of the object `key` of `attributes` from `defaults`.
fn merge_defaults(attributes: &mut Map<String, Value>, key: &str, defaults: Value) {
    let entry = attributes.entry(key).or_insert_with(|| json!({}));
    if let (Value::Object(target), Value::Object(defaults)) = (entry, defaults) {
        for (name, value) in defaults {
            target.entry(name).or_insert(value);
        }
    }
}

/// Bytes the catalog's copies hold on the storage units `units`.
pub(crate) fn used_bytes<'a>(images: impl Iterator<Item = &'a Image>, units: &[&str]) -> i64 {
    images
        .flat_map(|image| image.copies.iter().map(move |copy| (image.kbytes, copy)))
        .filter(|(_, copy)| units.contains(&copy.storage.as_str()))
        .map(|(kbytes, _)| kbytes.saturating_mul(1024))
        .sum()
}
