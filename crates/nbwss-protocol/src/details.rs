//! The endpoint details file a cloud provider hands to the NetBackup administrator (§7, D15).

use serde_json::{Map, Value};

use crate::fields::Fields;
use crate::{FieldError, Secret};

/// One endpoint as a provider describes it: where it is, its group and priority, and its token.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EndpointDetails {
    /// Host name or IP address of the cloud server; the WebSocket server's identity in NetBackup.
    pub host_name: String,
    /// Full `wss://` URL of the endpoint.
    pub url: String,
    /// Server group: at most one connection per group is active.
    pub group_id: String,
    /// Priority within the group; a lower number is tried first.
    pub priority: i64,
    /// The token NetBackup presents in CONNECT.
    pub token: Secret,
}

/// Parses an endpoint details file: one host object or an array of them.
pub fn parse_endpoint_details(text: &str) -> Result<Vec<EndpointDetails>, FieldError> {
    let value: Value = serde_json::from_str(text)
        .map_err(|error| FieldError::new("", format!("not valid JSON: {error}")))?;
    match &value {
        Value::Array(items) if items.is_empty() => {
            Err(FieldError::new("", "is an empty array: it must describe at least one endpoint"))
        }
        Value::Array(items) => items
            .iter()
            .enumerate()
            .map(|(index, item)| EndpointDetails::decode(&Fields::of(item, &format!("[{index}]"))?))
            .collect(),
        Value::Object(_) => Ok(vec![EndpointDetails::decode(&Fields::of(&value, "")?)?]),
        _ => Err(FieldError::new("", "must be a host object or an array of host objects")),
    }
}

impl EndpointDetails {
    pub(crate) fn decode(fields: &Fields<'_>) -> Result<Self, FieldError> {
        let (host_name, url, group_id, priority) = decode_location(fields)?;
        let token = Secret::new(fields.non_empty_string("token")?);
        Ok(Self { host_name, url, group_id, priority, token })
    }

    /// The details as the host object JSON of the `wssendpoints` API.
    pub fn to_value(&self) -> Value {
        let mut map = Map::new();
        map.insert("hostName".into(), Value::String(self.host_name.clone()));
        map.insert("url".into(), Value::String(self.url.clone()));
        map.insert("groupId".into(), Value::String(self.group_id.clone()));
        map.insert("priority".into(), Value::from(self.priority));
        map.insert("token".into(), Value::String(self.token.expose().to_owned()));
        Value::Object(map)
    }
}

/// Reads and checks `hostName`, `url`, `groupId` and `priority`, shared by the details file and the host
/// object.
pub(crate) fn decode_location(fields: &Fields<'_>) -> Result<(String, String, String, i64), FieldError> {
    let host_name = fields.non_empty_string("hostName")?;
    if host_name.len() > 255 || host_name.chars().any(|c| c.is_whitespace() || c == '/' || c.is_control()) {
        return Err(FieldError::new(
            fields.path_of("hostName"),
            "must be a host name or IP address (no spaces or slashes, at most 255 characters)",
        ));
    }
    let url = fields.non_empty_string("url")?;
    check_wss_url(url).map_err(|rule| FieldError::new(fields.path_of("url"), rule))?;
    let group_id = fields.non_empty_string("groupId")?;
    if group_id.len() > 255 || group_id.chars().any(char::is_control) {
        return Err(FieldError::new(fields.path_of("groupId"), "must be at most 255 printable characters"));
    }
    let priority = fields.integer("priority")?;
    if !(0..=i64::from(i32::MAX)).contains(&priority) {
        return Err(FieldError::new(fields.path_of("priority"), "must be a non-negative integer"));
    }
    Ok((host_name.to_owned(), url.to_owned(), group_id.to_owned(), priority))
}

/// Checks that a URL is a usable `wss://` URL; `ws://` is never accepted (§2).
pub(crate) fn check_wss_url(url: &str) -> Result<(), String> {
    let lower = url.to_ascii_lowercase();
    if lower.starts_with("ws://") {
        return Err("must start with wss:// (ws:// is not supported: NBWSS connects over TLS only)".into());
    }
    let Some(rest) = lower.strip_prefix("wss://") else {
        return Err("must start with wss://".into());
    };
    let authority = rest.split(['/', '?', '#']).next().unwrap_or_default();
    if authority.is_empty() || authority.starts_with(':') {
        return Err("must name a host after wss://".into());
    }
    if url.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return Err("must not contain spaces".into());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    const GOOD: &str = r#"{ "hostName": "cloud.example.com", "url": "wss://cloud.example.com/nbwss",
        "groupId": "sg1", "priority": 1, "token": "qwerrtrtrtrt2234344===" }"#;

    #[test]
    fn one_object_or_an_array() {
        let one = parse_endpoint_details(GOOD).unwrap();
        assert_eq!(one.len(), 1);
        assert_eq!(one[0].host_name, "cloud.example.com");
        assert_eq!(one[0].priority, 1);
        assert_eq!(one[0].token.expose(), "qwerrtrtrtrt2234344===");
        let two = parse_endpoint_details(&format!("[{GOOD}, {GOOD}]")).unwrap();
        assert_eq!(two.len(), 2);
        let round = parse_endpoint_details(&one[0].to_value().to_string()).unwrap();
        assert_eq!(round, one);
    }

    #[test]
    fn refusals_name_the_field() {
        let cases = [
            (GOOD.replace("wss://", "ws://"), "url: must start with wss:// (ws:// is not supported"),
            (GOOD.replace("wss://", "https://"), "url: must start with wss://"),
            (GOOD.replace(r#", "token": "qwerrtrtrtrt2234344===""#, ""), "token: missing"),
            (
                GOOD.replace(r#""token": "qwerrtrtrtrt2234344===""#, r#""token": """#),
                "token: must not be empty",
            ),
            (
                GOOD.replace(r#""priority": 1"#, r#""priority": "1""#),
                "priority: must be an integer, not a string",
            ),
            (
                GOOD.replace(r#""priority": 1"#, r#""priority": 1.5"#),
                "priority: must be an integer, not a number",
            ),
            (
                GOOD.replace(r#""priority": 1"#, r#""priority": -1"#),
                "priority: must be a non-negative integer",
            ),
            (GOOD.replace(r#""groupId": "sg1","#, ""), "groupId: missing"),
            (GOOD.replace("cloud.example.com\"", "cloud example\""), "hostName: must be a host name"),
            (format!("[{GOOD}, {}]", GOOD.replace("wss://", "ws://")), "[1].url: must start with wss://"),
            ("[]".to_owned(), "empty array"),
            ("{".to_owned(), "not valid JSON"),
            ("42".to_owned(), "must be a host object or an array"),
        ];
        for (text, expected) in cases {
            let error = parse_endpoint_details(&text).expect_err(&text).to_string();
            assert!(error.starts_with(expected) || error.contains(expected), "{error} ≠ {expected}");
        }
    }
}
