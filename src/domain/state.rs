//! The inquiry and batch state machines of DESIGN.md. Stores persist the
//! names from `as_str`; an illegal transition is an error, never a no-op.

use super::DomainError;

macro_rules! state_enum {
    ($(#[$doc:meta])* $name:ident { $($variant:ident => $s:literal),+ $(,)? }) => {
        $(#[$doc])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize, serde::Deserialize)]
        #[serde(rename_all = "snake_case")]
        pub enum $name { $($variant),+ }

        impl $name {
            pub const ALL: &'static [$name] = &[$($name::$variant),+];

            pub fn as_str(self) -> &'static str {
                match self { $($name::$variant => $s),+ }
            }

            pub fn parse(raw: &str) -> Result<Self, DomainError> {
                match raw {
                    $($s => Ok($name::$variant),)+
                    _ => Err(DomainError::new("invalid_state", format!("unknown {} '{raw}'", stringify!($name)))),
                }
            }
        }

        impl std::fmt::Display for $name {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str(self.as_str())
            }
        }
    };
}

state_enum!(
    /// Where one inquiry stands. `overdue` is a flag, not a state.
    InquiryState {
        Queued => "queued",
        Batched => "batched",
        Delivered => "delivered",
        Answered => "answered",
        NotFound => "not_found",
        Refused => "refused",
        Failed => "failed",
        Cancelled => "cancelled",
    }
);

state_enum!(
    /// Where one batch stands in the delivery queue.
    BatchState {
        Open => "open",
        Sealed => "sealed",
        InFlight => "in_flight",
        Acknowledged => "acknowledged",
        RetryWait => "retry_wait",
        Dead => "dead",
    }
);

state_enum!(
    /// What a caseworker can ask a bank.
    InquiryKind {
        Existence => "existence",
        Balance => "balance",
        Transactions => "transactions",
    }
);

state_enum!(
    /// How an institution is reached.
    Channel {
        Push => "push",
        Pull => "pull",
        Paper => "paper",
    }
);

fn illegal(what: &str, from: &str, to: &str) -> DomainError {
    DomainError::new(
        "illegal_transition",
        format!("{what} cannot go from {from} to {to}"),
    )
}

impl InquiryState {
    /// Final states take no further transition, except that a bank may send
    /// a corrected answer, which moves between the answer states.
    pub fn is_final(self) -> bool {
        matches!(
            self,
            Self::Answered | Self::NotFound | Self::Refused | Self::Failed | Self::Cancelled
        )
    }

    pub fn is_answer(self) -> bool {
        matches!(self, Self::Answered | Self::NotFound | Self::Refused)
    }

    pub fn transition(self, to: Self) -> Result<Self, DomainError> {
        use InquiryState::*;
        let ok = match (self, to) {
            (Queued, Batched) | (Batched, Delivered) => true,
            // A dead batch can go back to the queue when an admin retries it.
            (Batched, Queued) => true,
            // Answers usually follow delivery, but a bank may answer before
            // its receipt reached us (the receipt was lost on the way).
            (Delivered | Batched, Answered | NotFound | Refused) => true,
            // We gave up on delivery, yet the bank got the batch and answered:
            // the answer is worth more than our failure.
            (Failed, Answered | NotFound | Refused) => true,
            // A corrected answer from the bank.
            (Answered | NotFound | Refused, Answered | NotFound | Refused) => true,
            (Queued | Batched | Delivered, Failed | Cancelled) => true,
            // An admin retries the dead batch of a failed inquiry.
            (Failed, Batched) => true,
            _ => false,
        };
        if ok {
            Ok(to)
        } else {
            Err(illegal("an inquiry", self.as_str(), to.as_str()))
        }
    }
}

impl BatchState {
    pub fn transition(self, to: Self) -> Result<Self, DomainError> {
        use BatchState::*;
        let ok = matches!(
            (self, to),
            (Open, Sealed)
                | (Sealed | RetryWait, InFlight)
                // An expired lease is reclaimed by the next claim.
                | (InFlight, InFlight)
                | (InFlight, Acknowledged | RetryWait | Dead)
                // An admin retries a dead batch.
                | (Dead, RetryWait)
        );
        if ok {
            Ok(to)
        } else {
            Err(illegal("a batch", self.as_str(), to.as_str()))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn the_happy_path() {
        let s = InquiryState::Queued;
        let s = s.transition(InquiryState::Batched).unwrap();
        let s = s.transition(InquiryState::Delivered).unwrap();
        let s = s.transition(InquiryState::Answered).unwrap();
        assert!(s.is_final());
        let b = BatchState::Open.transition(BatchState::Sealed).unwrap();
        let b = b.transition(BatchState::InFlight).unwrap();
        let b = b.transition(BatchState::RetryWait).unwrap();
        let b = b.transition(BatchState::InFlight).unwrap();
        assert_eq!(
            b.transition(BatchState::Acknowledged).unwrap(),
            BatchState::Acknowledged
        );
    }

    #[test]
    fn illegal_transitions_are_errors() {
        let e = InquiryState::Cancelled
            .transition(InquiryState::Answered)
            .unwrap_err();
        assert_eq!(e.code, "illegal_transition");
        assert!(
            InquiryState::Queued
                .transition(InquiryState::Answered)
                .is_err()
        );
        assert!(
            InquiryState::Failed
                .transition(InquiryState::Queued)
                .is_err()
        );
        assert!(
            BatchState::Acknowledged
                .transition(BatchState::InFlight)
                .is_err()
        );
        assert!(
            BatchState::Dead
                .transition(BatchState::Acknowledged)
                .is_err()
        );
    }

    #[test]
    fn names_round_trip() {
        for s in InquiryState::ALL {
            assert_eq!(InquiryState::parse(s.as_str()).unwrap(), *s);
        }
        for s in BatchState::ALL {
            assert_eq!(BatchState::parse(s.as_str()).unwrap(), *s);
        }
        assert!(InquiryState::parse("lost").is_err());
    }

    fn any_inquiry_state() -> impl Strategy<Value = InquiryState> {
        prop::sample::select(InquiryState::ALL)
    }

    proptest! {
        /// Whatever sequence is tried, a cancelled inquiry stays cancelled, a
        /// failed one can only be answered or retried, and an answered one
        /// stays answered.
        #[test]
        fn terminal_states_hold(steps in prop::collection::vec(any_inquiry_state(), 0..30)) {
            let mut s = InquiryState::Queued;
            let mut answered = false;
            for to in steps {
                let before = s;
                if let Ok(next) = s.transition(to) {
                    prop_assert!(before != InquiryState::Cancelled);
                    prop_assert!(before != InquiryState::Failed || next.is_answer() || next == InquiryState::Batched);
                    s = next;
                }
                answered |= s.is_answer();
                if answered {
                    prop_assert!(s.is_answer());
                }
            }
        }
    }
}
