//! VMware assets as the asset service shows them: the virtual machines of each known vCenter, and the VM
//! groups clients create through `/asset-service/queries`.
//!
//! A vCenter's inventory is fixed when the vCenter is added (the seed vCenter holds the seed VMware
//! policy's virtual machines and a few unprotected ones); which policies protect a VM is computed from
//! the policies whenever an asset is shown, so assets and policies never disagree.

use serde_json::{json, Value};

use crate::model::Policy;

/// A virtual machine or a VM group.
#[derive(Debug, Clone)]
pub(crate) struct Asset {
    pub(crate) id: String,
    /// The vCenter that holds the VM, or that a group draws its VMs from.
    pub(crate) vcenter: String,
    pub(crate) display_name: String,
    pub(crate) kind: AssetKind,
}

#[derive(Debug, Clone)]
pub(crate) enum AssetKind {
    Vm { number: u32, esxi_host: String, guest_os: String },
    Group { filter: String, description: String },
}

/// A stable UUID-shaped id for `text`.
pub(crate) fn uuid_of(text: &str) -> String {
    let digest = ring::digest::digest(&ring::digest::SHA256, text.as_bytes());
    let mut bytes = [0u8; 16];
    bytes.copy_from_slice(&digest.as_ref()[..16]);
    uuid::Builder::from_random_bytes(bytes).into_uuid().to_string()
}

/// The virtual machines of a vCenter named `vcenter` that holds `names` (each on one of two ESXi hosts).
pub(crate) fn inventory(vcenter: &str, names: &[String]) -> Vec<Asset> {
    let domain = vcenter.split_once('.').map_or("example.com", |(_, domain)| domain);
    names
        .iter()
        .enumerate()
        .map(|(index, name)| Asset {
            id: uuid_of(&format!("vmware:{vcenter}:{name}")),
            vcenter: vcenter.to_owned(),
            display_name: name.clone(),
            kind: AssetKind::Vm {
                number: index as u32 + 1,
                esxi_host: format!("esxi{:02}.{domain}", index % 2 + 1),
                guest_os: if name.contains("win") {
                    "Microsoft Windows Server 2019 (64-bit)"
                } else {
                    "Red Hat Enterprise Linux 8 (64-bit)"
                }
                .to_owned(),
            },
        })
        .collect()
}

/// The virtual machines a new vCenter (added by a client) holds: three, named after it.
pub(crate) fn default_names(vcenter: &str) -> Vec<String> {
    let short = vcenter.split('.').next().unwrap_or(vcenter);
    (1..=3).map(|n| format!("{short}-vm{n:02}")).collect()
}

impl Asset {
    pub(crate) fn is_group(&self) -> bool {
        matches!(self.kind, AssetKind::Group { .. })
    }

    /// The attributes a client sees; `policies` decide which protect a VM.
    pub(crate) fn attributes<'a>(&self, policies: impl Iterator<Item = &'a Policy>) -> Value {
        let protection: Vec<Value> = match &self.kind {
            AssetKind::Vm { .. } => policies
                .filter(|policy| policy.is_vmware() && policy.clients().contains(&self.display_name))
                .map(|policy| {
                    json!({"protectionPlanName": "", "policyName": policy.name(), "policyType": "VMware", "isProtectionPlanCustomized": false})
                })
                .collect(),
            AssetKind::Group { .. } => Vec::new(),
        };
        let mut common = json!({
            "displayName": self.display_name,
            "workloadType": "vmware",
            "detection": {"detectionMethod": if self.is_group() { "MANUAL" } else { "DISCOVERED" }},
            "protectionCapabilities": {"isProtectable": "YES", "isRecoverable": if self.is_group() { "NO" } else { "YES" }},
        });
        if !protection.is_empty() {
            common["activeProtection"] = json!({"protectionDetailsList": protection});
        }
        match &self.kind {
            AssetKind::Vm { number, esxi_host, guest_os } => json!({
                "assetType": "vm",
                "workloadType": "vmware",
                "commonAssetAttributes": common,
                "instanceUuid": uuid_of(&format!("instance:{}:{}", self.vcenter, self.display_name)),
                "biosUuid": uuid_of(&format!("bios:{}:{}", self.vcenter, self.display_name)),
                "vCenter": self.vcenter,
                "host": esxi_host,
                "datacenter": "DC1",
                "cluster": "Cluster1",
                "hostName": self.display_name,
                "ipAddress": format!("10.0.1.{}", 10 + number),
                "guestOs": guest_os,
                "powerState": "poweredOn",
                "vmFolder": "/DC1/vm",
                "resourcePool": "/DC1/host/Cluster1/Resources",
                "datastore": ["datastore1"],
                "vmxDatastore": "datastore1",
                "vmVersion": "vmx-19",
                "isTemplate": false,
            }),
            AssetKind::Group { filter, description } => json!({
                "assetType": "vmGroup",
                "workloadType": "vmware",
                "commonAssetAttributes": common,
                "filterConstraint": self.vcenter,
                "oDataQueryFilter": filter,
                "description": description,
            }),
        }
    }
}
