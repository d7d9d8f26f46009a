//! NOTIFICATION REQUESTs written from records kept as their JSON text (§6.3): the service's outbox keeps
//! each record's text from ingest to the wire, and a message is put together from those texts without
//! parsing them into trees. The text is exactly what [`Codec::encode`](crate::Codec::encode) writes for the
//! same message: the envelope's keys in the guide's order, consecutive records of one object in one
//! payload element, `notificationType` `INFO`.

use serde::de::IgnoredAny;

use crate::{FieldError, ObjectKind};

/// A NOTIFICATION REQUEST being written, record by record; [`NotificationText::len_with`] tells the size a
/// record would make before it is added, so a message can be filled up to a size limit in one pass.
#[derive(Debug, Clone)]
pub struct NotificationText {
    out: String,
    /// The object of the open payload element, if any.
    object: Option<ObjectKind>,
    records: usize,
}

/// What closes the open payload element, then the payload and the envelope.
const CLOSE_ELEMENT: &str = "]}";
const CLOSE_MESSAGE: &str = "]}";

impl NotificationText {
    /// An empty NOTIFICATION REQUEST with this id and `timeStamp` (Unix seconds).
    pub fn new(id: &str, time_stamp: i64) -> Self {
        let mut out = String::with_capacity(256);
        out.push_str("{\"version\":");
        push_string(&mut out, crate::PROTOCOL_VERSION);
        out.push_str(",\"id\":");
        push_string(&mut out, id);
        out.push_str(",\"type\":\"NOTIFICATION\",\"subType\":\"REQUEST\",\"timeStamp\":");
        out.push_str(&time_stamp.to_string());
        out.push_str(",\"payload\":[");
        Self { out, object: None, records: 0 }
    }

    /// Records added so far.
    pub fn records(&self) -> usize {
        self.records
    }

    /// The size in bytes of the finished message as it stands.
    pub fn len(&self) -> usize {
        self.out.len() + self.closing_len()
    }

    /// Whether no record was added.
    pub fn is_empty(&self) -> bool {
        self.records == 0
    }

    /// The size in bytes the finished message would have with `record` (of `object`) added.
    pub fn len_with(&self, object: &ObjectKind, record: &str) -> usize {
        let record = record.trim();
        let opening = if self.object.as_ref() == Some(object) {
            1 // the comma between two records of one element
        } else {
            let separator = usize::from(self.object.is_some()) * (CLOSE_ELEMENT.len() + 1);
            separator + element_opening(object).len()
        };
        self.out.len() + opening + record.len() + CLOSE_ELEMENT.len() + CLOSE_MESSAGE.len()
    }

    /// Adds a record of `object`, given as its JSON text (a JSON object; surrounding white space is
    /// dropped). The text is checked to be one JSON object, never parsed into a tree.
    pub fn push(&mut self, object: &ObjectKind, record: &str) -> Result<(), FieldError> {
        let record = record.trim();
        let at = || format!("payload.data[{}]", self.records);
        if !record.starts_with('{') {
            return Err(FieldError::new(at(), "a record must be a JSON object"));
        }
        serde_json::from_str::<IgnoredAny>(record)
            .map_err(|error| FieldError::new(at(), format!("not JSON: {error}")))?;
        if self.object.as_ref() == Some(object) {
            self.out.push(',');
        } else {
            if self.object.is_some() {
                self.out.push_str(CLOSE_ELEMENT);
                self.out.push(',');
            }
            self.out.push_str(&element_opening(object));
            self.object = Some(object.clone());
        }
        self.out.push_str(record);
        self.records += 1;
        Ok(())
    }

    /// The message's text.
    pub fn finish(mut self) -> String {
        if self.object.is_some() {
            self.out.push_str(CLOSE_ELEMENT);
        }
        self.out.push_str(CLOSE_MESSAGE);
        self.out
    }

    fn closing_len(&self) -> usize {
        usize::from(self.object.is_some()) * CLOSE_ELEMENT.len() + CLOSE_MESSAGE.len()
    }
}

/// `{"notificationType":"INFO","object":"JOB","data":[`
fn element_opening(object: &ObjectKind) -> String {
    let mut out = String::from("{\"notificationType\":\"INFO\",\"object\":");
    push_string(&mut out, object.as_str());
    out.push_str(",\"data\":[");
    out
}

fn push_string(out: &mut String, text: &str) {
    // Serialising a &str cannot fail.
    out.push_str(&serde_json::to_string(text).unwrap_or_default());
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{
        Body, Codec, ImageOperation, ImageRecord, JobRecord, JobState, JobType, Message, NotificationGroup,
        ScheduleType,
    };

    fn job(job_id: i64) -> JobRecord {
        JobRecord {
            schedule_type: ScheduleType::Full,
            client_name: "client \"one\" ü".into(),
            status: 0,
            start_time: 1_700_000_000,
            state: JobState::Done,
            policy_name: "p".into(),
            parent_job_id: job_id,
            job_id,
            policy_type: "STANDARD".into(),
            job_type: JobType::Backup,
        }
    }

    fn image(time: i64) -> ImageRecord {
        ImageRecord {
            client_type: "STANDARD".into(),
            client_name: "c".into(),
            backup_time: time,
            created_time: time + 1,
            operation_id: ImageOperation::Create,
            backup_id: format!("c_{time}"),
        }
    }

    #[test]
    fn writes_what_the_codec_writes_and_decodes_to_the_same_records() {
        let groups = vec![
            NotificationGroup::jobs(vec![job(1), job(2)]),
            NotificationGroup::images(vec![image(10)]),
            NotificationGroup::jobs(vec![job(3)]),
        ];
        let typed = Message::with_id("B1C2", Body::NotificationRequest(groups.clone()));
        let mut text = NotificationText::new(&typed.id, typed.time_stamp);
        let records: Vec<(ObjectKind, String)> = vec![
            (ObjectKind::Job, serde_json::to_string(&job(1)).unwrap()),
            (ObjectKind::Job, format!(" {} ", serde_json::to_string(&job(2)).unwrap())),
            (ObjectKind::Image, serde_json::to_string(&image(10)).unwrap()),
            (ObjectKind::Job, serde_json::to_string(&job(3)).unwrap()),
        ];
        for (object, record) in &records {
            let expected = text.len_with(object, record);
            text.push(object, record).unwrap();
            assert_eq!(text.len(), expected, "the size told before adding is the size after");
        }
        assert_eq!(text.records(), 4);
        let length = text.len();
        let written = text.finish();
        assert_eq!(written.len(), length);
        assert_eq!(written, Codec::default().encode(&typed), "byte for byte what the codec writes");
        let decoded = Codec::default().decode(&written).unwrap();
        assert_eq!(decoded.body, Body::NotificationRequest(groups));
        assert_eq!(decoded.id, "B1C2");
    }

    #[test]
    fn an_empty_message_is_valid_and_bad_record_text_is_refused() {
        let text = NotificationText::new("ID", 5);
        assert!(text.is_empty());
        let length = text.len();
        let written = text.finish();
        assert_eq!(written.len(), length);
        let decoded = Codec::default().decode(&written).unwrap();
        assert_eq!(decoded.body, Body::NotificationRequest(Vec::new()));

        let mut text = NotificationText::new("ID", 5);
        for bad in ["[1]", "{\"jobId\":", "{} {}", "", "7"] {
            assert!(text.push(&ObjectKind::Job, bad).is_err(), "{bad:?} accepted");
        }
        assert!(text.is_empty(), "a refused record leaves the message as it was");
        text.push(&ObjectKind::Other("NEW\"KIND".into()), "{\"a\":1}").unwrap();
        let decoded = Codec::default().decode(&text.finish()).unwrap();
        let Body::NotificationRequest(groups) = decoded.body else { panic!() };
        assert_eq!(groups[0].object().as_str(), "NEW\"KIND");
    }
}
