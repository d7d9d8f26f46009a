//! The relay's allow-list: method + path patterns; by default everything under `/netbackup/`. Patterns
//! match the normalised path (`check_command_uri`), never the text as sent, so no spelling of a path
//! (dot-segments, `;` parameters, escapes) can reach what the patterns do not allow.

use nbwss_protocol::Method;

use crate::config::PolicyConfig;

/// A compiled allow-list.
#[derive(Debug, Clone, Default)]
pub struct Policy {
    rules: Vec<(Option<Method>, String)>,
}

impl Policy {
    /// Compiles the configuration (already validated).
    pub fn new(config: &PolicyConfig) -> Self {
        let rules = config
            .allow
            .iter()
            .map(|rule| {
                (if rule.method == "*" { None } else { Method::parse(&rule.method) }, rule.path.clone())
            })
            .collect();
        Self { rules }
    }

    /// Whether a call may be relayed; `path` is the path as the primary server reads it
    /// ([`nbwss_protocol::CommandUri::path`]: decoded, normalised, no query string).
    pub fn allows(&self, method: Method, path: &str) -> bool {
        if self.rules.is_empty() {
            return path.starts_with("/netbackup/");
        }
        self.rules.iter().any(|(rule_method, pattern)| {
            rule_method.is_none_or(|m| m == method) && glob_match(pattern, path)
        })
    }
}

/// `*` matches any run of characters (slashes included); everything else matches itself.
fn glob_match(pattern: &str, text: &str) -> bool {
    let parts: Vec<&str> = pattern.split('*').collect();
    if parts.len() == 1 {
        return pattern == text;
    }
    let (first, last) = (parts[0], parts[parts.len() - 1]);
    if !text.starts_with(first) || text.len() < first.len() + last.len() || !text.ends_with(last) {
        return false;
    }
    let mut rest = &text[first.len()..text.len() - last.len()];
    for middle in &parts[1..parts.len() - 1] {
        match rest.find(middle) {
            Some(at) => rest = &rest[at + middle.len()..],
            None => return false,
        }
    }
    true
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::AllowRule;

    #[test]
    fn default_and_rules() {
        let open = Policy::default();
        assert!(open.allows(Method::Delete, "/netbackup/anything"));
        let policy = Policy::new(&PolicyConfig {
            allow: vec![
                AllowRule { method: "GET".into(), path: "/netbackup/admin/jobs*".into() },
                AllowRule { method: "*".into(), path: "/netbackup/login".into() },
                AllowRule { method: "POST".into(), path: "/netbackup/config/*/vmservers".into() },
            ],
        });
        assert!(policy.allows(Method::Get, "/netbackup/admin/jobs"));
        assert!(policy.allows(Method::Get, "/netbackup/admin/jobs/5"));
        assert!(!policy.allows(Method::Post, "/netbackup/admin/jobs"));
        assert!(policy.allows(Method::Post, "/netbackup/login"));
        assert!(!policy.allows(Method::Post, "/netbackup/login/x"));
        assert!(policy.allows(Method::Post, "/netbackup/config/servers/vmservers"));
        assert!(!policy.allows(Method::Post, "/netbackup/config/servers/vmservers/x"));
        assert!(glob_match("a*b*c", "axxbyyc"));
        assert!(!glob_match("a*b*c", "axxc"));
    }
}
