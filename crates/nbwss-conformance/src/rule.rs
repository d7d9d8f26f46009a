//! The rules of `docs/protocol.md` that the kit checks: one [`Rule`] per testable statement, with the id
//! the document gives it, the section that states it and the modes that exercise it.

/// Which side of a connection the kit checks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Mode {
    /// The kit plays the service and checks a third-party endpoint (`nbwss conformance endpoint`).
    Endpoint,
    /// The kit plays an endpoint and checks a third-party service (`nbwss conformance service`).
    Service,
}

impl Mode {
    /// `endpoint` or `service`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Endpoint => "endpoint",
            Self::Service => "service",
        }
    }
}

/// One testable rule of the protocol document.
#[derive(Debug, PartialEq, Eq)]
pub struct Rule {
    /// Stable id, e.g. `R-ENV-3`; the protocol document uses it as an anchor (`#r-env-3`).
    pub id: &'static str,
    /// The rule in one line.
    pub title: &'static str,
    /// Section of `docs/protocol.md` that states it.
    pub section: &'static str,
    /// Where it comes from: the guide, a decision (`D4`), RFC 6455.
    pub basis: &'static str,
    /// Checked when the kit checks an endpoint.
    pub endpoint: bool,
    /// Checked when the kit checks a service.
    pub service: bool,
}

impl Rule {
    /// Whether `mode` checks this rule.
    pub fn applies_to(&self, mode: Mode) -> bool {
        match mode {
            Mode::Endpoint => self.endpoint,
            Mode::Service => self.service,
        }
    }

    /// Link to the rule in the protocol document, relative to the repository root.
    pub fn doc_link(&self) -> String {
        format!("docs/protocol.md#{}", self.id.to_ascii_lowercase())
    }
}

macro_rules! rules {
    ($($name:ident = $id:literal, $section:literal, $basis:literal, $modes:ident, $title:literal;)*) => {
        $(
            #[doc = $title]
            pub const $name: Rule = Rule {
                id: $id,
                title: $title,
                section: $section,
                basis: $basis,
                endpoint: matches!(Applies::$modes, Applies::Endpoint | Applies::Both),
                service: matches!(Applies::$modes, Applies::Service | Applies::Both),
            };
        )*
        /// Every rule, in the order of the protocol document's rule index (§16).
        pub const ALL: &[&Rule] = &[$(&$name),*];
    };
}

#[allow(dead_code)] // only read inside `rules!`
enum Applies {
    Endpoint,
    Service,
    Both,
}

rules! {
    WS_1 = "R-WS-1", "§2", "guide", Both,
        "wss:// only: a TLS handshake, then the WebSocket upgrade at the URL's path";
    ENV_1 = "R-ENV-1", "§3", "D4", Both,
        "Every message is one WebSocket text message, never binary";
    ENV_2 = "R-ENV-2", "§3", "guide", Both,
        "A message is one JSON object with version, id, type, subType, timeStamp and payload";
    ENV_3 = "R-ENV-3", "§3", "guide, D1", Both,
        "version is \"1.0\"";
    ENV_4 = "R-ENV-4", "§3", "D2", Both,
        "id is a non-empty string of at most 128 bytes";
    ENV_5 = "R-ENV-5", "§3", "guide", Both,
        "type and subType form a pair this side sends";
    ENV_6 = "R-ENV-6", "§3", "D3", Both,
        "timeStamp is an integer: Unix time in seconds";
    ENV_7 = "R-ENV-7", "§3", "guide", Both,
        "payload is an object for CONNECT and COMMAND, an array for NOTIFICATION";
    ENV_8 = "R-ENV-8", "§3", "D1", Both,
        "Unknown extra keys are ignored";
    CONNECT_1 = "R-CONNECT-1", "§4", "guide", Service,
        "The first message is a CONNECT REQUEST carrying the saved token";
    CONNECT_2 = "R-CONNECT-2", "§4", "guide, D5", Endpoint,
        "CONNECT REQUEST is answered in time by a CONNECT RESPONSE with its id and valid: true";
    CONNECT_3 = "R-CONNECT-3", "§4", "guide", Endpoint,
        "A token the endpoint did not issue is answered valid: false, with the request's id";
    CONNECT_4 = "R-CONNECT-4", "§4", "§4", Endpoint,
        "Nothing sent before CONNECT is acknowledged";
    CONNECT_5 = "R-CONNECT-5", "§4", "D5", Service,
        "Nothing but CONNECT is sent before valid: true";
    CONNECT_6 = "R-CONNECT-6", "§4", "guide, D5", Service,
        "valid: false closes the connection with 1008";
    CONNECT_7 = "R-CONNECT-7", "§4", "D5", Service,
        "A CONNECT RESPONSE with another id is no acceptance: the connection is closed";
    KEEPALIVE_1 = "R-KEEPALIVE-1", "§2", "RFC 6455", Both,
        "A ping is answered by a pong with the same payload";
    KEEPALIVE_2 = "R-KEEPALIVE-2", "§2", "guide", Service,
        "The service pings every keepAlive.scheduledRate seconds";
    KEEPALIVE_3 = "R-KEEPALIVE-3", "§2", "D18", Service,
        "After keepAlive.maxPongMissAllowed pings without a pong the service closes the connection";
    COMMAND_1 = "R-COMMAND-1", "§5.2", "guide, D6", Endpoint,
        "COMMAND REQUEST payload: uri under /netbackup/, a method, string headers, parameters as a string";
    COMMAND_2 = "R-COMMAND-2", "§5.1", "guide", Endpoint,
        "Each COMMAND REQUEST has a fresh id";
    COMMAND_3 = "R-COMMAND-3", "§5.3", "D7", Endpoint,
        "The endpoint takes the COMMAND RESPONSE with the request's id (D7 payload)";
    COMMAND_4 = "R-COMMAND-4", "§5.3", "D7", Endpoint,
        "The endpoint also takes a Spring-style COMMAND RESPONSE (reason, statusCodeValue, JSON body)";
    COMMAND_5 = "R-COMMAND-5", "§5.3", "guide, D7", Service,
        "A COMMAND is answered with its id: integer statusCode, headers, body as a string";
    COMMAND_6 = "R-COMMAND-6", "§5.3", "D7", Service,
        "COMMAND RESPONSE headers have lower-case names and no hop-by-hop headers";
    COMMAND_7 = "R-COMMAND-7", "§5.4", "D8", Service,
        "A malformed COMMAND gets 400 from the service: x-nbwss-origin: service, NetBackup error body";
    COMMAND_8 = "R-COMMAND-8", "§5.2", "D6, D8", Service,
        "A uri outside /netbackup/ is refused by the service, never relayed";
    COMMAND_9 = "R-COMMAND-9", "§5.4", "D1, D8", Service,
        "A COMMAND of another major version gets 400 from the service";
    COMMAND_10 = "R-COMMAND-10", "§5.5", "D9", Service,
        "Several COMMANDs in flight are each answered, matched by id";
    NOTIF_1 = "R-NOTIF-1", "§6.4", "guide, D11", Endpoint,
        "Each NOTIFICATION REQUEST is acknowledged with its id within notification.scheduledRate";
    NOTIF_2 = "R-NOTIF-2", "§6.4", "D11", Endpoint,
        "The acknowledgement's payload is []";
    NOTIF_3 = "R-NOTIF-3", "§6.1", "D12", Endpoint,
        "A notification sent again with the same id is acknowledged again";
    NOTIF_4 = "R-NOTIF-4", "§6.3", "guide, D14", Endpoint,
        "A message with several elements and records is acknowledged as one";
    NOTIF_5 = "R-NOTIF-5", "§6.4", "D11, D13", Endpoint,
        "Outstanding notifications are acknowledged independently, each by its id";
    NOTIF_6 = "R-NOTIF-6", "§6.3", "guide", Service,
        "NOTIFICATION payload: elements with notificationType, object and a non-empty data array";
    NOTIF_7 = "R-NOTIF-7", "§6.3", "guide, D14", Service,
        "JOB records have exactly the guide's 10 keys, IMAGE records its 6, with their types";
    NOTIF_8 = "R-NOTIF-8", "§6.1", "guide, D12", Service,
        "An unacknowledged notification is sent again with the same id and payload";
    NOTIF_9 = "R-NOTIF-9", "§6.4", "D11, D12", Service,
        "An acknowledged notification is not sent again";
    NOTIF_10 = "R-NOTIF-10", "§6.4", "D11", Service,
        "Any NOTIFICATION RESPONSE with the id acknowledges, whatever its payload";
    LIMIT_1 = "R-LIMIT-1", "§12", "D4", Both,
        "No message larger than the limit is sent";
    LIMIT_2 = "R-LIMIT-2", "§12", "D4", Both,
        "A message as large as the limit is accepted";
    LIMIT_3 = "R-LIMIT-3", "§12", "D4", Both,
        "A message over the limit closes the connection with 1009";
    CLOSE_1 = "R-CLOSE-1", "§11", "D8", Both,
        "Text that is not JSON closes the connection with 1007";
    CLOSE_2 = "R-CLOSE-2", "§11", "D8", Both,
        "JSON that is not an NBWSS envelope closes the connection with 1002";
    CLOSE_3 = "R-CLOSE-3", "§11", "D4", Both,
        "A binary message closes the connection with 1002 or 1003";
    CLOSE_4 = "R-CLOSE-4", "§11", "RFC 6455", Both,
        "A close frame is answered with a close frame";
    CONN_1 = "R-CONN-1", "§10", "guide, D17", Service,
        "A refused or closed connection is tried again within connectionInfo.period";
    CONN_2 = "R-CONN-2", "§10", "guide", Service,
        "At most one connection to an endpoint at a time";
}

/// The rule with this id.
pub fn by_id(id: &str) -> Option<&'static Rule> {
    ALL.iter().copied().find(|rule| rule.id.eq_ignore_ascii_case(id))
}

#[cfg(test)]
mod tests {
    use std::collections::HashSet;

    use super::*;

    #[test]
    fn ids_are_unique_and_every_rule_has_a_mode() {
        let mut ids = HashSet::new();
        for rule in ALL {
            assert!(ids.insert(rule.id), "duplicate {}", rule.id);
            assert!(rule.endpoint || rule.service, "{} applies to no mode", rule.id);
            assert!(rule.section.starts_with('§'), "{}", rule.id);
        }
        assert_eq!(by_id("r-env-3"), Some(&ENV_3));
        assert_eq!(ENV_3.doc_link(), "docs/protocol.md#r-env-3");
    }
}
