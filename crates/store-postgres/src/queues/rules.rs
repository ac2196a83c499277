//! The queue decisions, as pure functions of what was read and the database's `now`: what a
//! batch may hold, which messages of it are duplicates and what sequence numbers the rest
//! get, whether a lock token still holds its lock, and what a settlement does. The SQL around
//! them only loads, locks and writes.

use std::collections::HashSet;

use baton_store::Millis;
use baton_store::queues::{MessageState, NewMessage, QueueSpec, Sent, Settle};

/// The reasons Service Bus gives.
pub(super) const MAX_DELIVERY: &str = "MaxDeliveryCountExceeded";
pub(super) const MAX_DELIVERY_DESCRIPTION: &str =
    "The message was delivered the maximum number of times without being completed.";
pub(super) const EXPIRED: &str = "TTLExpiredException";
pub(super) const EXPIRED_DESCRIPTION: &str = "The message expired and was dead-lettered.";

/// Whether PostgreSQL can store `s` as `text` (it refuses NUL), so that a name it cannot
/// hold is told apart from a failing database.
pub(super) fn storable(s: &str) -> bool {
    !s.contains('\0')
}

/// What is wrong with a batch for `spec`'s queue, if anything: the rules every store keeps
/// ([`QueueSpec::batch_problem`]), and no NUL in ids or content types, which PostgreSQL
/// cannot store. Everything is checked before anything is written.
pub(super) fn problem(spec: &QueueSpec, messages: &[NewMessage]) -> Option<String> {
    spec.batch_problem(messages).or_else(|| {
        messages.iter().enumerate().find_map(|(i, m)| {
            [
                &m.message_id,
                &m.session_id,
                &m.correlation_id,
                &m.content_type,
            ]
            .iter()
            .any(|t| t.as_deref().is_some_and(|t| !storable(t)))
            .then(|| format!("message {i}: its ids and content type cannot hold NUL"))
        })
    })
}

/// A message to insert.
#[derive(Debug, PartialEq)]
pub(super) struct Row<'a> {
    pub seq: i64,
    pub message_id: String,
    pub message: &'a NewMessage,
    pub visible_at: Millis,
    pub expires_at: Option<Millis>,
}

/// What a batch does to its queue.
#[derive(Debug, PartialEq)]
pub(super) struct Plan<'a> {
    /// One per message, in order.
    pub sent: Vec<Sent>,
    pub rows: Vec<Row<'a>>,
    /// Message ids to remember for duplicate detection, with when they are forgotten.
    pub remember: Vec<(String, Millis)>,
    /// The queue's next sequence number afterwards.
    pub next_seq: i64,
}

/// Sequence numbers from `next_seq` on for the messages that are not duplicates: of an id in
/// `seen` (accepted within the window) or of one earlier in the batch.
pub(super) fn plan<'a>(
    spec: &QueueSpec,
    messages: &'a [NewMessage],
    seen: &HashSet<String>,
    mut next_seq: i64,
    now: Millis,
) -> Plan<'a> {
    let mut taken: HashSet<String> = HashSet::new();
    let mut plan = Plan {
        sent: Vec::with_capacity(messages.len()),
        rows: Vec::with_capacity(messages.len()),
        remember: Vec::new(),
        next_seq,
    };
    for m in messages {
        let message_id = m
            .message_id
            .clone()
            .unwrap_or_else(|| format!("{now:012x}{next_seq:012x}"));
        if let Some(window) = spec.duplicate_window_ms {
            if seen.contains(&message_id) || !taken.insert(message_id.clone()) {
                plan.sent.push(Sent::Duplicate { message_id });
                continue;
            }
            plan.remember
                .push((message_id.clone(), now.saturating_add(window)));
        }
        let visible_at = m.scheduled_at.unwrap_or(now).max(now);
        plan.rows.push(Row {
            seq: next_seq,
            message_id: message_id.clone(),
            message: m,
            visible_at,
            expires_at: ttl(m.ttl_ms, spec.default_ttl_ms).map(|t| visible_at.saturating_add(t)),
        });
        plan.sent.push(Sent::Accepted {
            sequence: next_seq,
            message_id,
        });
        next_seq += 1;
    }
    plan.next_seq = next_seq;
    plan
}

/// A message's time to live: its own, capped by the queue's default (as Service Bus does).
pub(super) fn ttl(own: Option<i64>, default: Option<i64>) -> Option<i64> {
    match (own, default) {
        (Some(a), Some(b)) => Some(a.min(b)),
        (a, b) => a.or(b),
    }
}

/// The fence a message lock token `"<sequence>.<fence>"` names, if it is one of `sequence`'s.
pub(super) fn message_fence(sequence: i64, token: &str) -> Option<i64> {
    let (seq, fence) = token.split_once('.')?;
    (seq == sequence.to_string()).then_some(())?;
    session_fence(fence)
}

/// The fence a session lock token names (the fence, written the way the store writes it).
pub(super) fn session_fence(token: &str) -> Option<i64> {
    token.parse::<i64>().ok().filter(|f| f.to_string() == token)
}

/// A message's lock as read (under the row's lock).
#[derive(Debug, Clone, Copy)]
pub(super) struct LockRow {
    pub fence: i64,
    pub locked_until: Option<Millis>,
    pub dead_lettered: bool,
    pub delivery_count: u32,
}

/// Whether `token` holds the lock on message `sequence` at `now`.
pub(super) fn holds(sequence: i64, token: &str, row: &LockRow, now: Millis) -> bool {
    !row.dead_lettered
        && row.locked_until.is_some_and(|u| u > now)
        && message_fence(sequence, token) == Some(row.fence)
}

/// What settling a held message does to its row.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum Settlement {
    Delete,
    /// Active again at `now`.
    Activate,
    DeadLetter {
        reason: String,
        description: Option<String>,
    },
}

/// An abandon of a message delivered `max_delivery` times dead-letters it.
pub(super) fn settlement(how: Settle, delivery_count: u32, spec: &QueueSpec) -> Settlement {
    match how {
        Settle::Complete => Settlement::Delete,
        Settle::Abandon if delivery_count >= spec.max_delivery => Settlement::DeadLetter {
            reason: MAX_DELIVERY.to_owned(),
            description: Some(MAX_DELIVERY_DESCRIPTION.to_owned()),
        },
        Settle::Abandon => Settlement::Activate,
        Settle::DeadLetter {
            reason,
            description,
        } => Settlement::DeadLetter {
            reason,
            description,
        },
    }
}

/// Where a message is at `now`.
pub(super) fn state(
    dead_lettered: bool,
    locked_until: Option<Millis>,
    visible_at: Millis,
    now: Millis,
) -> MessageState {
    if dead_lettered {
        MessageState::DeadLettered
    } else if locked_until.is_some_and(|u| u > now) {
        MessageState::Locked
    } else if visible_at > now {
        MessageState::Scheduled
    } else {
        MessageState::Active
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec() -> QueueSpec {
        QueueSpec::new("q")
    }

    fn with_id(id: &str) -> NewMessage {
        NewMessage {
            message_id: Some(id.to_owned()),
            ..NewMessage::default()
        }
    }

    fn sequences(p: &Plan<'_>) -> Vec<Option<i64>> {
        p.sent
            .iter()
            .map(|s| match s {
                Sent::Accepted { sequence, .. } => Some(*sequence),
                Sent::Duplicate { .. } => None,
            })
            .collect()
    }

    #[test]
    fn duplicates_take_no_sequence_number() {
        let batch = [with_id("a"), with_id("b"), with_id("a"), with_id("c")];
        let seen = HashSet::from(["c".to_owned()]);
        let p = plan(&spec(), &batch, &seen, 7, 1_000);
        assert_eq!(sequences(&p), [Some(7), Some(8), None, None]);
        assert_eq!(p.next_seq, 9);
        assert_eq!(
            p.remember,
            [("a".to_owned(), 601_000), ("b".to_owned(), 601_000)]
        );
    }

    #[test]
    fn without_a_window_every_message_is_accepted() {
        let mut s = spec();
        s.duplicate_window_ms = None;
        let batch = [with_id("a"), with_id("a")];
        let seen = HashSet::from(["a".to_owned()]);
        let p = plan(&s, &batch, &seen, 1, 0);
        assert_eq!(sequences(&p), [Some(1), Some(2)]);
        assert!(p.remember.is_empty());
    }

    #[test]
    fn made_up_ids_differ_and_times_follow_the_message() {
        let mut s = spec();
        s.default_ttl_ms = Some(500);
        let batch = [
            NewMessage::default(),
            NewMessage {
                scheduled_at: Some(5_000),
                ttl_ms: Some(100),
                ..NewMessage::default()
            },
            NewMessage {
                scheduled_at: Some(10),
                ttl_ms: Some(9_000),
                ..NewMessage::default()
            },
        ];
        let p = plan(&s, &batch, &HashSet::new(), 1, 1_000);
        assert_ne!(p.rows[0].message_id, p.rows[1].message_id);
        let times: Vec<_> = p
            .rows
            .iter()
            .map(|r| (r.visible_at, r.expires_at))
            .collect();
        // Scheduled in the past is now; a message's own time to live is capped by the queue's.
        assert_eq!(
            times,
            [
                (1_000, Some(1_500)),
                (5_000, Some(5_100)),
                (1_000, Some(1_500))
            ]
        );
    }

    #[test]
    fn a_batch_is_refused_for_its_first_bad_message() {
        let mut s = spec();
        assert_eq!(problem(&s, &[with_id("a")]), None);
        let in_session = NewMessage {
            session_id: Some("s".to_owned()),
            ..NewMessage::default()
        };
        let bad = [
            (in_session.clone(), "has no sessions"),
            (with_id(""), "1 to 128"),
            (with_id(&"x".repeat(129)), "1 to 128"),
            (with_id("a\0b"), "NUL"),
            (
                NewMessage {
                    ttl_ms: Some(0),
                    ..NewMessage::default()
                },
                "positive",
            ),
        ];
        for (m, why) in bad {
            let p = problem(&s, &[with_id("ok"), m.clone()]).unwrap_or_default();
            assert!(p.contains("message 1") && p.contains(why), "{m:?}: {p}");
        }
        s.sessions = true;
        assert_eq!(problem(&s, &[in_session]), None);
        assert!(problem(&s, &[with_id("a")]).is_some_and(|p| p.contains("requires sessions")));
    }

    #[test]
    fn tokens_are_read_exactly() {
        assert_eq!(message_fence(12, "12.3"), Some(3));
        for bad in ["13.3", "12.03", "12.", "12", ".3", "12.3.4", "12.x", ""] {
            assert_eq!(message_fence(12, bad), None, "{bad}");
        }
        assert_eq!(session_fence("4"), Some(4));
        for bad in ["04", "+4", "", "4.0", " 4"] {
            assert_eq!(session_fence(bad), None, "{bad}");
        }
    }

    #[test]
    fn a_lock_holds_until_it_expires_or_moves_on() {
        let row = LockRow {
            fence: 2,
            locked_until: Some(100),
            dead_lettered: false,
            delivery_count: 1,
        };
        assert!(holds(5, "5.2", &row, 99));
        assert!(!holds(5, "5.2", &row, 100), "expired");
        assert!(!holds(5, "5.1", &row, 99), "an earlier delivery's token");
        assert!(!holds(6, "5.2", &row, 99), "another message's token");
        let gone = LockRow {
            dead_lettered: true,
            ..row
        };
        assert!(!holds(5, "5.2", &gone, 99), "dead-lettered");
        let abandoned = LockRow {
            locked_until: None,
            ..row
        };
        assert!(!holds(5, "5.2", &abandoned, 99), "abandoned");
    }

    #[test]
    fn the_last_allowed_abandon_dead_letters() {
        let s = QueueSpec {
            max_delivery: 3,
            ..spec()
        };
        assert_eq!(settlement(Settle::Abandon, 2, &s), Settlement::Activate);
        assert!(matches!(
            settlement(Settle::Abandon, 3, &s),
            Settlement::DeadLetter { reason, .. } if reason == MAX_DELIVERY
        ));
        assert_eq!(settlement(Settle::Complete, 3, &s), Settlement::Delete);
    }

    #[test]
    fn states_follow_the_clock() {
        use MessageState::*;
        let cases = [
            (true, Some(200), 200, DeadLettered),
            (false, Some(200), 200, Locked),
            (false, Some(100), 100, Active),
            (false, None, 200, Scheduled),
            (false, None, 50, Active),
        ];
        for (dead, until, visible, want) in cases {
            assert_eq!(
                state(dead, until, visible, 150),
                want,
                "{dead} {until:?} {visible}"
            );
        }
    }
}
