//! A connection's in-flight FIFO: what the request loop has sent on, in order, for the
//! response loop to answer. Both loops run in one task, driven by [`InFlight::drive`],
//! and hand entries over without waking the task.
//!
//! Why not a channel: a channel wakes the receiver's task, here the very task that is
//! running. Tokio reschedules a task woken during its own poll at the back of the run
//! queue and wakes an idle worker to share it: one futex wake and often a hop to the
//! other thread per request (about a third of the proxy's extra CPU per small request
//! over a plain relay, in the proxy-bound benchmark's profiles). Here the hand-over
//! sets a flag that makes `drive` poll both loops again before returning.

use std::collections::VecDeque;
use std::future::{poll_fn, Future};
use std::pin::pin;
use std::sync::Mutex;
use std::task::Poll;

/// The FIFO, bounded at `capacity` entries (the per-connection in-flight limit).
pub struct InFlight<T> {
    capacity: usize,
    state: Mutex<State<T>>,
}

struct State<T> {
    /// Entries with whether each is `counted` (see [`Sender::send`]).
    entries: VecDeque<(T, bool)>,
    counted: usize,
    /// The sender is gone: once empty, the receiver gets `None`.
    closed: bool,
    sender_waiting: bool,
    receiver_waiting: bool,
    /// A waiting end can go on: `drive` polls both loops again.
    kicked: bool,
}

impl<T> InFlight<T> {
    pub fn new(capacity: usize) -> Self {
        Self {
            capacity: capacity.max(1),
            state: Mutex::new(State {
                entries: VecDeque::new(),
                counted: 0,
                closed: false,
                sender_waiting: false,
                receiver_waiting: false,
                kicked: false,
            }),
        }
    }

    pub fn sender(&self) -> Sender<'_, T> {
        Sender { queue: self }
    }

    pub fn receiver(&self) -> Receiver<'_, T> {
        Receiver { queue: self }
    }

    /// Runs the two loops that use this FIFO to their ends, or to the first error. The
    /// only way to run them: a waiting end is resumed by `drive`, not by a waker.
    pub async fn drive<E>(
        &self,
        requests: impl Future<Output = Result<(), E>>,
        responses: impl Future<Output = Result<(), E>>,
    ) -> Result<(), E> {
        let mut requests = pin!(requests);
        let mut responses = pin!(responses);
        let (mut requests_done, mut responses_done) = (false, false);
        poll_fn(|cx| loop {
            if !requests_done {
                if let Poll::Ready(result) = requests.as_mut().poll(cx) {
                    result?;
                    requests_done = true;
                }
            }
            if !responses_done {
                if let Poll::Ready(result) = responses.as_mut().poll(cx) {
                    result?;
                    responses_done = true;
                }
            }
            if requests_done && responses_done {
                return Poll::Ready(Ok(()));
            }
            // Only the two ends set it, and only while polled here.
            if !std::mem::take(&mut self.lock().kicked) {
                return Poll::Pending;
            }
        })
        .await
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State<T>> {
        // Nothing panics while holding it; a poisoned lock still holds a consistent FIFO.
        self.state
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

/// The request loop's end. Dropping it closes the FIFO.
pub struct Sender<'q, T> {
    queue: &'q InFlight<T>,
}

impl<T> Sender<'_, T> {
    /// Appends `entry`, waiting while the FIFO is full (backpressure on the client).
    /// `counted` entries are tallied for [`Receiver::only_counted_left`].
    pub async fn send(&self, entry: T, counted: bool) {
        let mut entry = Some(entry);
        poll_fn(|_| {
            let mut state = self.queue.lock();
            if state.entries.len() >= self.queue.capacity {
                state.sender_waiting = true;
                return Poll::Pending;
            }
            state.sender_waiting = false;
            if let Some(entry) = entry.take() {
                state.entries.push_back((entry, counted));
                state.counted += usize::from(counted);
            }
            if state.receiver_waiting {
                state.kicked = true;
            }
            Poll::Ready(())
        })
        .await
    }
}

impl<T> Drop for Sender<'_, T> {
    fn drop(&mut self) {
        let mut state = self.queue.lock();
        state.closed = true;
        state.kicked = true;
    }
}

/// The response loop's end.
pub struct Receiver<'q, T> {
    queue: &'q InFlight<T>,
}

impl<T> Receiver<'_, T> {
    /// The oldest entry; `None` once the sender is gone and the FIFO is empty.
    pub async fn recv(&self) -> Option<T> {
        poll_fn(|_| {
            let mut state = self.queue.lock();
            match state.entries.pop_front() {
                Some((entry, counted)) => {
                    state.counted -= usize::from(counted);
                    state.receiver_waiting = false;
                    if state.sender_waiting {
                        state.kicked = true;
                    }
                    Poll::Ready(Some(entry))
                }
                None if state.closed => Poll::Ready(None),
                None => {
                    state.receiver_waiting = true;
                    Poll::Pending
                }
            }
        })
        .await
    }

    pub fn is_empty(&self) -> bool {
        self.queue.lock().entries.is_empty()
    }

    /// Every entry still queued was sent `counted`.
    pub fn only_counted_left(&self) -> bool {
        let state = self.queue.lock();
        state.counted == state.entries.len()
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    #[tokio::test]
    async fn entries_come_out_in_order_and_none_after_close() {
        let queue = InFlight::new(4);
        let (tx, rx) = (queue.sender(), queue.receiver());
        let mut got = Vec::new();
        let sent = async move {
            for i in 0..100 {
                tx.send(i, i % 2 == 0).await;
                if i % 7 == 0 {
                    tokio::task::yield_now().await;
                }
            }
            drop(tx);
            Ok::<_, ()>(())
        };
        let received = async {
            while let Some(i) = rx.recv().await {
                got.push(i);
            }
            Ok(())
        };
        queue.drive(sent, received).await.unwrap();
        assert_eq!(got, (0..100).collect::<Vec<_>>());
    }

    #[tokio::test]
    async fn a_full_fifo_holds_the_sender_until_an_entry_is_taken() {
        let queue = InFlight::new(2);
        let (tx, rx) = (queue.sender(), queue.receiver());
        let sent = async move {
            for i in 0..3 {
                tx.send(i, false).await;
            }
            drop(tx);
            Ok::<_, ()>(())
        };
        let received = async {
            // The third send cannot complete while two wait.
            tokio::time::sleep(Duration::from_millis(50)).await;
            assert_eq!(queue.lock().entries.len(), 2);
            assert!(queue.lock().sender_waiting);
            let mut got = Vec::new();
            while let Some(i) = rx.recv().await {
                got.push(i);
            }
            assert_eq!(got, vec![0, 1, 2]);
            Ok(())
        };
        queue.drive(sent, received).await.unwrap();
    }

    #[tokio::test]
    async fn counted_entries_are_tallied() {
        let queue = InFlight::new(8);
        let (tx, rx) = (queue.sender(), queue.receiver());
        let run = async {
            tx.send("produce", true).await;
            assert!(rx.only_counted_left());
            tx.send("metadata", false).await;
            assert!(!rx.only_counted_left());
            assert_eq!(rx.recv().await, Some("produce"));
            assert!(!rx.only_counted_left());
            assert_eq!(rx.recv().await, Some("metadata"));
            assert!(rx.is_empty() && rx.only_counted_left());
            Ok::<_, ()>(())
        };
        queue.drive(run, async { Ok(()) }).await.unwrap();
    }

    #[tokio::test]
    async fn the_first_error_ends_both() {
        let queue = InFlight::<u8>::new(1);
        let rx = queue.receiver();
        let waits_forever = async {
            rx.recv().await;
            Ok(())
        };
        let fails = async { Err("upstream gone") };
        assert_eq!(
            queue.drive(fails, waits_forever).await,
            Err("upstream gone")
        );
    }
}
