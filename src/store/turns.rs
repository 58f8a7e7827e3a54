//! Whose turn it is on the SQLite write connection.
//!
//! One writer at a time, and a person waiting goes first: a caseworker's
//! submit (a few milliseconds of writing) would otherwise queue behind
//! every batch seal, delivery outcome and bank answer filing already
//! waiting, tens of milliseconds each while the dispatcher is busy.
//! Interactive waiters therefore take the next turn ahead of background
//! ones, until interactive turns have held the writer for
//! `INTERACTIVE_AHEAD_AT_MOST` while background work waited: then the
//! first background waiter goes. A stream of submits slows the dispatcher
//! down but never stops it. Within a class, first come, first served.
//!
//! A turn is handed straight from the holder to the next waiter, so a
//! newcomer can never slip in between. A waiter that gives up (a
//! cancelled future, a timeout) passes on a turn it was handed meanwhile.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use tokio::sync::oneshot;

/// Who is waiting for the write connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Priority {
    /// A person is waiting for the answer: the staff API and UI.
    Interactive,
    /// Machines and schedules: batching, delivery, bank answers,
    /// connectors, retention, imports.
    Background,
}

/// How long interactive turns may hold the writer while background work
/// waits, before the background waiter goes next. Counted in time, not in
/// turns, because the background's turns (sealing 500 inquiries, filing a
/// bank's message of about 100 answers) are a few milliseconds each, like
/// a submit's: under a flood of submits the dispatcher keeps about half of
/// the writer.
const INTERACTIVE_AHEAD_AT_MOST: Duration = Duration::from_millis(10);

#[derive(Default)]
pub(super) struct Turns {
    state: Mutex<State>,
}

#[derive(Default)]
struct State {
    taken: bool,
    interactive: VecDeque<oneshot::Sender<()>>,
    background: VecDeque<oneshot::Sender<()>>,
    /// How long interactive turns have held the writer while a background
    /// waiter was in line.
    interactive_ahead: Duration,
}

/// The turn: the write connection is the holder's until this drops.
pub(super) struct Turn {
    turns: Arc<Turns>,
    priority: Priority,
    taken_at: Instant,
}

impl Turns {
    pub async fn take(self: &Arc<Self>, priority: Priority) -> Turn {
        let granted = {
            let mut state = self.lock();
            if !state.taken {
                state.taken = true;
                return Turn::new(self, priority);
            }
            let (tx, rx) = oneshot::channel();
            match priority {
                Priority::Interactive => state.interactive.push_back(tx),
                Priority::Background => state.background.push_back(tx),
            }
            rx
        };
        let mut waiter = Waiter {
            granted: Some(granted),
            turns: self,
        };
        // The sender lives in the queue until it is used, and `Turns`
        // outlives its waiters: the only outcome is being handed the turn.
        let _ = waiter.granted.as_mut().expect("waiting").await;
        waiter.granted = None;
        Turn::new(self, priority)
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        // The state is consistent after every statement, so a panic
        // elsewhere while it was locked leaves nothing half-done.
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Hands the turn to the next waiter, or frees it if nobody waits.
    /// `ended` is the turn that just ended (its class and how long it was
    /// held), or None for a turn handed to a waiter that had given up.
    fn pass_on(&self, ended: Option<(Priority, Duration)>) {
        let mut state = self.lock();
        // Waiters that gave up are no longer in line: the choice below
        // counts only those still waiting.
        state.interactive.retain(|w| !w.is_closed());
        state.background.retain(|w| !w.is_closed());
        if state.background.is_empty() {
            state.interactive_ahead = Duration::ZERO;
        } else if let Some((Priority::Interactive, held)) = ended {
            state.interactive_ahead += held;
        }
        loop {
            let next = if !state.background.is_empty()
                && (state.interactive.is_empty()
                    || state.interactive_ahead >= INTERACTIVE_AHEAD_AT_MOST)
            {
                state.interactive_ahead = Duration::ZERO;
                state.background.pop_front()
            } else {
                state.interactive.pop_front()
            };
            match next {
                None => {
                    state.taken = false;
                    return;
                }
                // A waiter that has given up refuses the turn: try the next.
                Some(waiter) => {
                    if waiter.send(()).is_ok() {
                        return;
                    }
                }
            }
        }
    }
}

impl Turn {
    fn new(turns: &Arc<Turns>, priority: Priority) -> Self {
        Self {
            turns: turns.clone(),
            priority,
            taken_at: Instant::now(),
        }
    }
}

impl Drop for Turn {
    fn drop(&mut self) {
        self.turns
            .pass_on(Some((self.priority, self.taken_at.elapsed())));
    }
}

/// A place in a queue; dropped before the turn came, it gives the turn
/// back if it was handed one meanwhile.
struct Waiter<'a> {
    granted: Option<oneshot::Receiver<()>>,
    turns: &'a Arc<Turns>,
}

impl Drop for Waiter<'_> {
    fn drop(&mut self) {
        if let Some(mut granted) = self.granted.take() {
            // Closing first means no turn can arrive after the check.
            granted.close();
            if granted.try_recv().is_ok() {
                self.turns.pass_on(None);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::future::Future;
    use std::pin::Pin;
    use std::task::{Context, Poll, Waker};

    use proptest::prelude::*;

    use super::*;

    type Waiting = Pin<Box<dyn Future<Output = Turn>>>;

    impl Turn {
        /// Ends the turn as if it had been held for `held`.
        fn end_after(mut self, held: Duration) {
            self.taken_at = Instant::now() - held;
        }
    }

    fn poll(waiting: &mut Waiting) -> Option<Turn> {
        match waiting
            .as_mut()
            .poll(&mut Context::from_waker(Waker::noop()))
        {
            Poll::Ready(turn) => Some(turn),
            Poll::Pending => None,
        }
    }

    fn arrive(turns: &Arc<Turns>, priority: Priority) -> (Waiting, Option<Turn>) {
        let turns = turns.clone();
        let mut waiting: Waiting = Box::pin(async move { turns.take(priority).await });
        let turn = poll(&mut waiting);
        (waiting, turn)
    }

    fn wait(turns: &Arc<Turns>, priority: Priority) -> Waiting {
        let (waiting, turn) = arrive(turns, priority);
        assert!(turn.is_none(), "the turn was free");
        waiting
    }

    fn take_now(turns: &Arc<Turns>) -> Turn {
        arrive(turns, Priority::Background)
            .1
            .expect("the turn is free")
    }

    #[test]
    fn a_person_goes_ahead_of_background_work_already_waiting() {
        let turns = Arc::new(Turns::default());
        let holder = take_now(&turns);
        let mut seal = wait(&turns, Priority::Background);
        let mut submit = wait(&turns, Priority::Interactive);
        drop(holder);
        let turn = poll(&mut submit).expect("the submit goes first");
        assert!(poll(&mut seal).is_none());
        drop(turn);
        assert!(poll(&mut seal).is_some());
    }

    #[test]
    fn background_work_waits_only_so_long() {
        let turns = Arc::new(Turns::default());
        let holder = take_now(&turns);
        let mut answers = wait(&turns, Priority::Background);
        let mut submit = wait(&turns, Priority::Interactive);
        drop(holder);
        let mut holder = poll(&mut submit).expect("the submit goes first");
        // Three more submits of 3 ms go ahead; after the fourth, 12 ms
        // have gone to people while the answers waited.
        for _ in 0..3 {
            let mut submit = wait(&turns, Priority::Interactive);
            holder.end_after(Duration::from_millis(3));
            holder = poll(&mut submit).expect("the submit goes first");
        }
        let mut late_submit = wait(&turns, Priority::Interactive);
        holder.end_after(Duration::from_millis(3));
        assert!(poll(&mut late_submit).is_none());
        let turn = poll(&mut answers).expect("the answers' turn came");
        drop(turn);
        assert!(poll(&mut late_submit).is_some());
    }

    #[test]
    fn a_waiter_that_gives_up_after_being_handed_the_turn_passes_it_on() {
        let turns = Arc::new(Turns::default());
        let holder = take_now(&turns);
        let first = wait(&turns, Priority::Interactive);
        let mut second = wait(&turns, Priority::Interactive);
        drop(holder);
        // Handed the turn but never polled again: a cancelled request.
        drop(first);
        assert!(poll(&mut second).is_some());
    }

    #[derive(Debug, Clone)]
    enum Step {
        Arrive(Priority),
        /// The holder, if any, ends its turn after this many milliseconds.
        End(u64),
        /// The waiter at this position (modulo the number waiting) gives up.
        GiveUp(usize),
    }

    fn step() -> impl Strategy<Value = Step> {
        prop_oneof![
            Just(Step::Arrive(Priority::Interactive)),
            Just(Step::Arrive(Priority::Background)),
            (0u64..8).prop_map(Step::End),
            any::<usize>().prop_map(Step::GiveUp),
        ]
    }

    proptest! {
        /// Whatever the mix of arrivals, turn lengths and cancellations: one
        /// holder at most, a freed turn goes to a waiter if there is one,
        /// and to the one the rule names.
        #[test]
        fn the_turn_goes_where_the_rule_says(steps in prop::collection::vec(step(), 1..80)) {
            let turns = Arc::new(Turns::default());
            let mut holder: Option<(Turn, Priority)> = None;
            let mut waiting: Vec<(Priority, Waiting)> = Vec::new();
            // The model's count of interactive time while background waits.
            let mut ahead = 0u64;
            let limit = INTERACTIVE_AHEAD_AT_MOST.as_millis() as u64;
            for step in steps {
                match step {
                    Step::Arrive(priority) => match arrive(&turns, priority) {
                        (_, Some(turn)) => {
                            prop_assert!(holder.is_none() && waiting.is_empty());
                            holder = Some((turn, priority));
                        }
                        (w, None) => {
                            prop_assert!(holder.is_some() || !waiting.is_empty());
                            waiting.push((priority, w));
                        }
                    },
                    Step::End(ms) => {
                        let Some((turn, priority)) = holder.take() else {
                            continue;
                        };
                        let first = |p: Priority| waiting.iter().position(|(q, _)| *q == p);
                        let (interactive, background) =
                            (first(Priority::Interactive), first(Priority::Background));
                        if background.is_none() {
                            ahead = 0;
                        } else if priority == Priority::Interactive {
                            ahead += ms;
                        }
                        let expected = match (interactive, background) {
                            (Some(i), Some(_)) if ahead < limit => Some(i),
                            (_, Some(b)) => {
                                ahead = 0;
                                Some(b)
                            }
                            (i, None) => i,
                        };
                        turn.end_after(Duration::from_millis(ms));
                        let mut ready = Vec::new();
                        for (i, (priority, w)) in waiting.iter_mut().enumerate() {
                            if let Some(turn) = poll(w) {
                                ready.push(i);
                                holder = Some((turn, *priority));
                            }
                        }
                        prop_assert_eq!(&ready, &expected.into_iter().collect::<Vec<_>>());
                        if let Some(e) = expected {
                            drop(waiting.remove(e));
                        }
                    }
                    Step::GiveUp(at) => {
                        if !waiting.is_empty() {
                            drop(waiting.remove(at % waiting.len()));
                        }
                    }
                }
            }
        }
    }
}
