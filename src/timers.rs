//! The timer heap: `call_at`/`call_later` deadlines in one binary heap.
//!
//! Cancelled timers are left in place (cancel is O(1)) and dropped lazily: popped when they
//! reach the head, or all at once when they are more than half of a heap of over 100 —
//! asyncio's own rule, so a loop that schedules and cancels a million timers stays small.
//! Equal deadlines fire in scheduling order (a sequence number breaks ties), which asyncio's
//! `heapq` does not promise but users expect.

use std::cmp::Ordering;
use std::collections::{BinaryHeap, VecDeque};
use std::sync::atomic::{AtomicUsize, Ordering::Relaxed};
use std::sync::Arc;

use pyo3::prelude::*;

use crate::handles::{Handle, TimerHandle};

const MIN_SCHEDULED_TIMER_HANDLES: usize = 100;

struct Entry {
    when: f64,
    seq: u64,
    timer: Py<TimerHandle>,
}

impl PartialEq for Entry {
    fn eq(&self, other: &Self) -> bool {
        self.cmp(other) == Ordering::Equal
    }
}
impl Eq for Entry {}
impl PartialOrd for Entry {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}
impl Ord for Entry {
    // BinaryHeap is a max-heap: reverse, so the earliest (when, seq) is on top.
    fn cmp(&self, other: &Self) -> Ordering {
        other.when.total_cmp(&self.when).then_with(|| other.seq.cmp(&self.seq))
    }
}

pub(crate) struct TimerHeap {
    heap: BinaryHeap<Entry>,
    next_seq: u64,
    /// Shared with every TimerHandle of this loop; they bump it on cancel.
    cancelled: Arc<AtomicUsize>,
}

fn is_cancelled(py: Python<'_>, timer: &Py<TimerHandle>) -> bool {
    TimerHandle::handle(timer.bind(py)).is_cancelled()
}

impl TimerHeap {
    pub(crate) fn new() -> Self {
        TimerHeap { heap: BinaryHeap::new(), next_seq: 0, cancelled: Arc::new(AtomicUsize::new(0)) }
    }

    pub(crate) fn cancel_counter(&self) -> Arc<AtomicUsize> {
        self.cancelled.clone()
    }

    pub(crate) fn len(&self) -> usize {
        self.heap.len()
    }

    pub(crate) fn push(&mut self, when: f64, timer: Py<TimerHandle>) {
        let seq = self.next_seq;
        self.next_seq += 1;
        self.heap.push(Entry { when, seq, timer });
    }

    pub(crate) fn peek_when(&self) -> Option<f64> {
        self.heap.peek().map(|e| e.when)
    }

    /// Drops cancelled timers (see the module comment). The removed handles are moved to
    /// `dropped` so the caller releases them after its borrow of the heap ends.
    pub(crate) fn prune(&mut self, py: Python<'_>, dropped: &mut Vec<Py<TimerHandle>>) {
        let n = self.heap.len();
        if n > MIN_SCHEDULED_TIMER_HANDLES && self.cancelled.load(Relaxed) * 2 > n {
            let entries = std::mem::take(&mut self.heap).into_vec();
            let mut keep = Vec::with_capacity(n / 2);
            for e in entries {
                if is_cancelled(py, &e.timer) {
                    e.timer.get().scheduled.store(false, Relaxed);
                    dropped.push(e.timer);
                } else {
                    keep.push(e);
                }
            }
            self.heap = BinaryHeap::from(keep);
            self.cancelled.store(0, Relaxed);
        } else {
            while let Some(head) = self.heap.peek() {
                if !is_cancelled(py, &head.timer) {
                    break;
                }
                let e = self.heap.pop().expect("peeked");
                e.timer.get().scheduled.store(false, Relaxed);
                let _ = self.cancelled.fetch_update(Relaxed, Relaxed, |c| c.checked_sub(1));
                dropped.push(e.timer);
            }
        }
    }

    /// Moves every timer due before `end_time` to the ready queue, earliest first.
    pub(crate) fn pop_due(&mut self, py: Python<'_>, end_time: f64, ready: &mut VecDeque<Py<Handle>>) {
        while let Some(head) = self.heap.peek() {
            if head.when >= end_time {
                break;
            }
            let e = self.heap.pop().expect("peeked");
            let timer = e.timer.get();
            timer.scheduled.store(false, Relaxed);
            if TimerHandle::handle(e.timer.bind(py)).is_cancelled() {
                let _ = self.cancelled.fetch_update(Relaxed, Relaxed, |c| c.checked_sub(1));
            }
            ready.push_back(e.timer.into_bound(py).into_super().unbind());
        }
    }

    /// Empties the heap (loop close); the caller drops the handles outside its borrow.
    pub(crate) fn drain(&mut self) -> Vec<Py<TimerHandle>> {
        self.cancelled.store(0, Relaxed);
        std::mem::take(&mut self.heap).into_vec().into_iter().map(|e| e.timer).collect()
    }

    pub(crate) fn for_each(&self, mut f: impl FnMut(&Py<TimerHandle>)) {
        for e in self.heap.iter() {
            f(&e.timer);
        }
    }
}
