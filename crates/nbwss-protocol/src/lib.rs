//! The NBWSS wire model: every JSON shape that crosses a process boundary.
//!
//! * [`Message`] and its typed [`Body`]: CONNECT, COMMAND and NOTIFICATION requests and responses
//!   (the NBWSS guide's message formats plus this project's decisions where the guide is silent);
//! * [`Codec`]: text ⇄ message, with the size limit and errors that name the JSON path and the rule broken;
//! * notification records ([`JobRecord`], [`ImageRecord`]) with exactly the guide's keys;
//! * the WebSocket-server host object of NetBackup's `wssendpoints` API ([`HostObject`]) and the endpoint
//!   details file ([`EndpointDetails`]);
//! * `nbwss.properties` ([`Properties`]);
//! * liberal reception of notifications ([`ReceivedNotification`]): every record kept as received, with
//!   what does not conform to the guide's layout.
//!
//! This crate has no async runtime and does no I/O.
#![warn(missing_docs)]

mod codec;
mod command;
mod connect;
mod details;
mod direct;
mod error;
mod fields;
mod host;
mod message;
mod notification;
mod notification_text;
mod open_enum;
mod properties;
mod received;
mod secret;
mod uri;

pub use codec::{Codec, DEFAULT_MAX_MESSAGE_BYTES};
pub use command::{
    CommandRequest, CommandResponse, ErrorBody, Headers, Method, HEADER_ORIGIN, ORIGIN_SERVICE,
};
pub use connect::{ConnectRequest, ConnectResponse};
pub use details::{parse_endpoint_details, EndpointDetails};
pub use error::{DecodeError, DecodeErrorKind, FieldError};
pub use host::{
    CloseReason, CloseStatus, ConnectionState, EndpointType, HostObject, HostState, HostUpdate, LastClose,
    PresentedCertificate,
};
pub use message::{new_message_id, unix_now, Body, Message, MessageType, SubType, PROTOCOL_VERSION};
pub use notification::{
    ImageOperation, ImageRecord, JobRecord, JobState, JobType, NotificationGroup, NotificationType,
    ObjectKind, ScheduleType,
};
pub use notification_text::NotificationText;
pub use properties::{Properties, PropertiesError, PropertyWarning};
pub use received::{record_problems, ReceivedNotification, ReceivedRecord, IMAGE_KEYS, JOB_KEYS};
pub use secret::Secret;
pub use uri::{check_command_uri, CommandUri, NETBACKUP_PREFIX};
