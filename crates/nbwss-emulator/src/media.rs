//! Versioned media types (`application/vnd.netbackup+json;version=8.0`) and the tolerant negotiation
//! real clients need: missing headers, `*/*`, plain `application/json`, `; version=` with a space,
//! `;charset=UTF-8`, and the version only in `Content-Type`.

use std::fmt;

/// The lowest and highest API versions the emulator serves.
const LOWEST_MAJOR: u32 = 1;
const HIGHEST_MAJOR: u32 = 14;

/// An API version such as 8.0.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct ApiVersion {
    /// Major number.
    pub major: u32,
    /// Minor number.
    pub minor: u32,
}

impl ApiVersion {
    /// The newest version the emulator serves.
    pub const NEWEST: ApiVersion = ApiVersion { major: HIGHEST_MAJOR, minor: 0 };

    /// Parses `8.0` (or `8`).
    pub fn parse(text: &str) -> Option<Self> {
        let text = text.trim().trim_matches('"');
        let (major, minor) = text.split_once('.').unwrap_or((text, "0"));
        Some(Self { major: major.parse().ok()?, minor: minor.parse().ok()? })
    }

    /// Whether the emulator serves this version.
    pub fn is_supported(self) -> bool {
        (LOWEST_MAJOR..=HIGHEST_MAJOR).contains(&self.major) && self.minor == 0
    }

    /// Whether `GET /admin/jobs` uses cursor pagination at this version.
    pub(crate) fn cursor_jobs(self) -> bool {
        self.major >= 9
    }
}

impl fmt::Display for ApiVersion {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}.{}", self.major, self.minor)
    }
}

/// What one media range of a header says.
#[derive(Debug, PartialEq, Eq)]
enum MediaRange {
    /// A `vnd.netbackup` type, with the version it names if any (`Err` holds an unreadable version).
    NetBackup(Option<Result<ApiVersion, String>>),
    /// JSON, `*/*`, `application/*` and friends: no version.
    Generic,
    /// Something else, e.g. `text/xml`.
    Other,
}

fn parse_range(range: &str) -> MediaRange {
    let mut parts = range.split(';');
    let essence = parts.next().unwrap_or_default().trim().to_ascii_lowercase();
    if essence.contains("vnd.netbackup") {
        let version = parts.find_map(|parameter| {
            let (name, value) = parameter.split_once('=')?;
            name.trim().eq_ignore_ascii_case("version").then(|| value.trim().to_owned())
        });
        let version = version.map(|text| ApiVersion::parse(&text).ok_or(text));
        return MediaRange::NetBackup(version);
    }
    let generic = essence.is_empty()
        || essence == "*/*"
        || essence == "application/*"
        || essence == "text/*"
        || essence == "text/plain"
        || essence.ends_with("/json")
        || essence.ends_with("+json");
    if generic {
        MediaRange::Generic
    } else {
        MediaRange::Other
    }
}

/// Why negotiation failed.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Rejection {
    /// `Accept` asks for a version the emulator does not serve (406).
    NotAcceptable(String),
    /// `Content-Type` names a type or version the emulator does not take (415).
    UnsupportedMediaType(String),
}

/// Picks the version of a request from its `Accept` and `Content-Type` headers.
///
/// `Accept` wins when it names a version; otherwise `Content-Type`; otherwise the default. Only an
/// explicit unsupported vnd version in `Accept` is refused (406). `Content-Type` is only checked when the
/// request carries a body (`has_body`), so a stray header on a GET never breaks a client.
pub(crate) fn negotiate(
    accept: Option<&str>,
    content_type: Option<&str>,
    has_body: bool,
    default: ApiVersion,
) -> Result<ApiVersion, Rejection> {
    let mut chosen = None;
    if let Some(accept) = accept {
        for range in accept.split(',') {
            if let MediaRange::NetBackup(Some(version)) = parse_range(range) {
                match version {
                    Ok(version) if version.is_supported() => {
                        chosen = Some(version);
                        break;
                    }
                    Ok(version) => {
                        return Err(Rejection::NotAcceptable(format!(
                            "API version {version} is not supported"
                        )))
                    }
                    Err(text) => {
                        return Err(Rejection::NotAcceptable(format!("API version {text:?} is not valid")))
                    }
                }
            }
        }
    }
    if let Some(content_type) = content_type {
        match parse_range(content_type) {
            MediaRange::NetBackup(Some(Ok(version))) if version.is_supported() => {
                chosen = chosen.or(Some(version));
            }
            MediaRange::NetBackup(Some(Ok(version))) if has_body => {
                return Err(Rejection::UnsupportedMediaType(format!(
                    "API version {version} is not supported"
                )))
            }
            MediaRange::NetBackup(Some(Err(text))) if has_body => {
                return Err(Rejection::UnsupportedMediaType(format!("API version {text:?} is not valid")))
            }
            MediaRange::Other if has_body => {
                return Err(Rejection::UnsupportedMediaType(format!(
                    "content type {content_type:?} is not supported"
                )))
            }
            _ => {}
        }
    }
    Ok(chosen.unwrap_or(default))
}

#[cfg(test)]
mod tests {
    use super::*;

    const DEFAULT: ApiVersion = ApiVersion { major: 8, minor: 0 };

    fn v(major: u32) -> ApiVersion {
        ApiVersion { major, minor: 0 }
    }

    #[test]
    fn tolerates_what_real_clients_send() {
        let cases: &[(Option<&str>, Option<&str>, ApiVersion)] = &[
            (None, None, DEFAULT),
            (Some("*/*"), Some("application/vnd.netbackup+json; version=1.0"), v(1)),
            (Some("*/*"), Some("application/vnd.netbackup+json;version=4.0"), v(4)),
            (None, Some("application/json"), DEFAULT),
            (Some("application/vnd.netbackup+json;version=3.0;charset=UTF-8"), None, v(3)),
            (Some("application/vnd.netbackup+json; version=9.0"), Some("application/json"), v(9)),
            (Some("application/json"), None, DEFAULT),
            (Some("text/html"), None, DEFAULT),
            (Some("application/vnd.netbackup+json"), None, DEFAULT),
            (Some("text/vnd.netbackup+plain;version=2.0"), None, v(2)),
        ];
        for (accept, content_type, expected) in cases {
            assert_eq!(
                negotiate(*accept, *content_type, true, DEFAULT),
                Ok(*expected),
                "{accept:?} {content_type:?}"
            );
        }
    }

    #[test]
    fn refuses_explicit_unsupported_versions() {
        assert!(matches!(
            negotiate(Some("application/vnd.netbackup+json;version=99.0"), None, false, DEFAULT),
            Err(Rejection::NotAcceptable(_))
        ));
        assert!(matches!(
            negotiate(Some("application/vnd.netbackup+json;version=abc"), None, false, DEFAULT),
            Err(Rejection::NotAcceptable(_))
        ));
        assert!(matches!(
            negotiate(None, Some("application/vnd.netbackup+json;version=99.0"), true, DEFAULT),
            Err(Rejection::UnsupportedMediaType(_))
        ));
        assert!(matches!(
            negotiate(None, Some("text/xml"), true, DEFAULT),
            Err(Rejection::UnsupportedMediaType(_))
        ));
        assert_eq!(negotiate(None, Some("text/xml"), false, DEFAULT), Ok(DEFAULT));
    }
}
