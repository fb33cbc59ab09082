//! MQTT topic names of the v1 contract, parsed and built in one place.
//!
//! ```text
//! ecg/v1/dev/{device_id}/visit/{visit_id}/{meta|chunk|end}   device -> pipeline
//! ecg/v1/dev/{device_id}/visit/{visit_id}/result             pipeline -> device
//! ecg/v1/alerts/{centre_id}                                  pipeline -> cardiologists
//! ecg/v1/alerts/{centre_id}/ack                              cardiologist -> pipeline
//! ecg/v1/alerts/{centre_id}/escalation                       pipeline -> senior staff
//! ecg/v1/deadletter                                          pipeline -> operators
//! ```

use std::fmt;
use std::str::FromStr;

use crate::ids::{CentreId, DeviceId, IdError, VisitId};

/// Every v1 topic starts with this.
pub const PREFIX: &str = "ecg/v1";
/// Longest topic string the parser looks at; longer input is refused before
/// any splitting (the longest valid topic is about 130 bytes).
pub const MAX_TOPIC_LEN: usize = 256;
/// Subscription filter for everything devices publish (and the results the
/// pipeline sends back, which a subscriber skips by [`VisitTopic`]).
pub const DEVICE_FILTER: &str = "ecg/v1/dev/+/visit/+/+";
/// Subscription filter for all centres' alerts (acks excluded).
pub const ALERTS_FILTER: &str = "ecg/v1/alerts/+";
/// Subscription filter for all centres' acknowledgements.
pub const ACKS_FILTER: &str = "ecg/v1/alerts/+/ack";

/// The last level of a visit topic.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum VisitTopic {
    /// JSON [`crate::VisitMeta`], device -> pipeline.
    Meta,
    /// Binary [`crate::Chunk`], device -> pipeline.
    Chunk,
    /// JSON [`crate::VisitEnd`], device -> pipeline.
    End,
    /// JSON [`crate::VisitResult`], pipeline -> device.
    Result,
}

impl VisitTopic {
    pub fn as_str(self) -> &'static str {
        match self {
            VisitTopic::Meta => "meta",
            VisitTopic::Chunk => "chunk",
            VisitTopic::End => "end",
            VisitTopic::Result => "result",
        }
    }
}

/// A parsed v1 topic.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Topic {
    Visit {
        device_id: DeviceId,
        visit_id: VisitId,
        kind: VisitTopic,
    },
    Alert {
        centre_id: CentreId,
    },
    AlertAck {
        centre_id: CentreId,
    },
    /// An alert not acknowledged in time, published again for the senior
    /// staff (the alert JSON, `escalation_level` >= 1).
    AlertEscalation {
        centre_id: CentreId,
    },
    DeadLetter,
}

/// Why a string is not a v1 topic.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TopicError {
    #[error("topic is {len} bytes, more than {MAX_TOPIC_LEN}")]
    TooLong { len: usize },
    #[error("topic does not start with \"{PREFIX}/\"")]
    NotV1,
    #[error("topic {0:?} has no v1 meaning")]
    Unknown(String),
    #[error("unknown visit topic kind {0:?} (meta, chunk, end, result)")]
    UnknownVisitKind(String),
    #[error("bad device id in topic: {0}")]
    DeviceId(#[source] IdError),
    #[error("bad visit id in topic: {0}")]
    VisitId(#[source] IdError),
    #[error("bad centre id in topic: {0}")]
    CentreId(#[source] IdError),
}

impl Topic {
    pub fn visit(device_id: DeviceId, visit_id: VisitId, kind: VisitTopic) -> Topic {
        Topic::Visit {
            device_id,
            visit_id,
            kind,
        }
    }

    pub fn parse(s: &str) -> Result<Topic, TopicError> {
        if s.len() > MAX_TOPIC_LEN {
            return Err(TopicError::TooLong { len: s.len() });
        }
        let rest = s
            .strip_prefix(PREFIX)
            .and_then(|r| r.strip_prefix('/'))
            .ok_or(TopicError::NotV1)?;
        let levels: Vec<&str> = rest.split('/').collect();
        match levels.as_slice() {
            ["dev", device, "visit", visit, kind] => {
                let device_id = DeviceId::new(*device).map_err(TopicError::DeviceId)?;
                let visit_id = visit.parse().map_err(TopicError::VisitId)?;
                let kind = match *kind {
                    "meta" => VisitTopic::Meta,
                    "chunk" => VisitTopic::Chunk,
                    "end" => VisitTopic::End,
                    "result" => VisitTopic::Result,
                    other => return Err(TopicError::UnknownVisitKind(other.to_owned())),
                };
                Ok(Topic::Visit {
                    device_id,
                    visit_id,
                    kind,
                })
            }
            ["alerts", centre] => Ok(Topic::Alert {
                centre_id: CentreId::new(*centre).map_err(TopicError::CentreId)?,
            }),
            ["alerts", centre, "ack"] => Ok(Topic::AlertAck {
                centre_id: CentreId::new(*centre).map_err(TopicError::CentreId)?,
            }),
            ["alerts", centre, "escalation"] => Ok(Topic::AlertEscalation {
                centre_id: CentreId::new(*centre).map_err(TopicError::CentreId)?,
            }),
            ["deadletter"] => Ok(Topic::DeadLetter),
            _ => Err(TopicError::Unknown(s.to_owned())),
        }
    }

    /// The device a topic belongs to, for checking it against the MQTT user.
    pub fn device_id(&self) -> Option<&DeviceId> {
        match self {
            Topic::Visit { device_id, .. } => Some(device_id),
            _ => None,
        }
    }
}

impl fmt::Display for Topic {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Topic::Visit {
                device_id,
                visit_id,
                kind,
            } => write!(
                f,
                "{PREFIX}/dev/{device_id}/visit/{visit_id}/{}",
                kind.as_str()
            ),
            Topic::Alert { centre_id } => write!(f, "{PREFIX}/alerts/{centre_id}"),
            Topic::AlertAck { centre_id } => write!(f, "{PREFIX}/alerts/{centre_id}/ack"),
            Topic::AlertEscalation { centre_id } => {
                write!(f, "{PREFIX}/alerts/{centre_id}/escalation")
            }
            Topic::DeadLetter => write!(f, "{PREFIX}/deadletter"),
        }
    }
}

impl FromStr for Topic {
    type Err = TopicError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Topic::parse(s)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const VISIT: &str = "0f8fad5b-d9cb-469f-a165-70867728950e";

    #[test]
    fn every_documented_topic_parses_and_prints_back() {
        for s in [
            format!("ecg/v1/dev/dev-0001/visit/{VISIT}/meta"),
            format!("ecg/v1/dev/dev-0001/visit/{VISIT}/chunk"),
            format!("ecg/v1/dev/dev-0001/visit/{VISIT}/end"),
            format!("ecg/v1/dev/dev-0001/visit/{VISIT}/result"),
            "ecg/v1/alerts/county-cpc".to_owned(),
            "ecg/v1/alerts/county-cpc/ack".to_owned(),
            "ecg/v1/deadletter".to_owned(),
        ] {
            let topic = Topic::parse(&s).unwrap();
            assert_eq!(topic.to_string(), s);
        }
    }

    #[test]
    fn wrong_topics_say_what_is_wrong() {
        let p = |s: &str| Topic::parse(s);
        assert_eq!(p("ecg/v2/deadletter"), Err(TopicError::NotV1));
        assert!(matches!(
            p("ecg/v1/dev/a+b/visit/x/meta"),
            Err(TopicError::DeviceId(_))
        ));
        assert!(matches!(
            p("ecg/v1/dev//visit/x/meta"),
            Err(TopicError::DeviceId(_))
        ));
        assert!(matches!(
            p("ecg/v1/dev/d/visit/v-1/meta"),
            Err(TopicError::VisitId(_))
        ));
        assert!(matches!(
            p(&format!("ecg/v1/dev/d/visit/{VISIT}/beats")),
            Err(TopicError::UnknownVisitKind(_))
        ));
        assert!(matches!(
            p(&format!("ecg/v1/dev/d/visit/{VISIT}/meta/")),
            Err(TopicError::Unknown(_))
        ));
        assert!(matches!(p("ecg/v1/alerts/#"), Err(TopicError::CentreId(_))));
        assert!(matches!(
            p(&"x".repeat(MAX_TOPIC_LEN + 1)),
            Err(TopicError::TooLong { .. })
        ));
    }

    fn arb_topic() -> impl Strategy<Value = Topic> {
        let name = "[A-Za-z0-9._-]{1,64}";
        let visit = any::<[u8; 16]>().prop_filter_map("non-nil", |b| VisitId::from_bytes(b).ok());
        let kind = prop_oneof![
            Just(VisitTopic::Meta),
            Just(VisitTopic::Chunk),
            Just(VisitTopic::End),
            Just(VisitTopic::Result)
        ];
        prop_oneof![
            (name, visit, kind).prop_map(|(d, v, k)| Topic::visit(DeviceId::new(d).unwrap(), v, k)),
            name.prop_map(|c| Topic::Alert {
                centre_id: CentreId::new(c).unwrap()
            }),
            name.prop_map(|c| Topic::AlertAck {
                centre_id: CentreId::new(c).unwrap()
            }),
            name.prop_map(|c| Topic::AlertEscalation {
                centre_id: CentreId::new(c).unwrap()
            }),
            Just(Topic::DeadLetter),
        ]
    }

    proptest! {
        #[test]
        fn round_trip(topic in arb_topic()) {
            prop_assert_eq!(Topic::parse(&topic.to_string()), Ok(topic));
        }
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(10_000))]

        #[test]
        fn arbitrary_strings_never_panic(s in ".{0,300}") {
            if let Ok(topic) = Topic::parse(&s) {
                // Whatever parses must print back to the very same string.
                prop_assert_eq!(topic.to_string(), s);
            }
        }

        #[test]
        fn topic_shaped_strings_never_panic(
            a in "[a-z0-9/+#._-]{0,20}", b in "[a-f0-9/+#-]{0,40}", c in "[a-z/+#]{0,10}",
        ) {
            for s in [
                format!("ecg/v1/dev/{a}/visit/{b}/{c}"),
                format!("ecg/v1/alerts/{a}/{c}"),
                format!("ecg/v1/{c}"),
            ] {
                if let Ok(topic) = Topic::parse(&s) {
                    prop_assert_eq!(topic.to_string(), s);
                }
            }
        }
    }
}
