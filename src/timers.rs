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

use crate::handles::TimerHandle;
use crate::ready::Ready;

const MIN_SCHEDULED_TIMER_HANDLES: usize = 100;

struct Entry {
    /// The deadline as an order-preserving integer (`order_key`): the heap's sift compares
    /// two integers, not floats.
    key: u64,
    seq: u64,
    when: f64,
    timer: Py<TimerHandle>,
}

/// Maps f64 to u64 so that integer order is numeric order (negative deadlines included).
fn order_key(when: f64) -> u64 {
    let bits = when.to_bits();
    if bits >> 63 == 1 {
        !bits
    } else {
        bits | (1 << 63)
    }
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
        (other.key, other.seq).cmp(&(self.key, self.seq))
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
        self.heap.push(Entry { key: order_key(when), seq, when, timer });
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
    pub(crate) fn pop_due(&mut self, py: Python<'_>, end_time: f64, ready: &mut VecDeque<Ready>) {
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
            ready.push_back(Ready::Handle(e.timer.into_bound(py).into_super().unbind()));
        }
    }

    /// Empties the heap (loop close); the caller drops the handles outside its borrow.
    /// Every timer held (cancelled ones included), for the garbage collector.
    pub(crate) fn iter(&self) -> impl Iterator<Item = &Py<TimerHandle>> {
        self.heap.iter().map(|e| &e.timer)
    }

    pub(crate) fn drain(&mut self) -> Vec<Py<TimerHandle>> {
        self.cancelled.store(0, Relaxed);
        std::mem::take(&mut self.heap).into_vec().into_iter().map(|e| e.timer).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::handles::Handle;
    use pyo3::types::PyTuple;

    fn timer(py: Python<'_>, heap: &TimerHeap, when: f64, tag: i64) -> Py<TimerHandle> {
        let base = Handle::create(
            py,
            py.None(),
            crate::handles::Args::from_tuple(PyTuple::new(py, [tag]).unwrap()),
            py.None(),
            Some(py.None()),
            None,
            false,
        )
        .unwrap();
        Py::new(
            py,
            PyClassInitializer::from(base).add_subclass(TimerHandle {
                when: std::sync::atomic::AtomicU64::new(when.to_bits()),
                scheduled: std::sync::atomic::AtomicBool::new(true),
                cancelled_in_heap: heap.cancel_counter(),
            }),
        )
        .unwrap()
    }

    fn tag(py: Python<'_>, r: &Ready) -> i64 {
        let Ready::Handle(h) = r else { panic!("timers queue handles") };
        let args = h.get().cb.borrow(py).unwrap().args.as_ref().unwrap().to_tuple(py).unwrap();
        args.bind(py).get_item(0).unwrap().extract().unwrap()
    }

    fn cancel(py: Python<'_>, heap: &TimerHeap, t: &Py<TimerHandle>) {
        // What TimerHandle.cancel does, minus the Python-side repr.
        let h = TimerHandle::handle(t.bind(py));
        h.cancelled.store(true, Relaxed);
        if t.get().scheduled.load(Relaxed) {
            heap.cancelled.fetch_add(1, Relaxed);
        }
    }

    #[test]
    fn order_key_preserves_float_order() {
        let xs = [-1e9, -2.5, -0.0, 0.0, 1e-9, 1.0, 2.5, 1e9, f64::INFINITY];
        for w in xs.windows(2) {
            assert!(order_key(w[0]) <= order_key(w[1]), "{} vs {}", w[0], w[1]);
        }
    }

    #[test]
    fn due_timers_come_out_in_deadline_then_scheduling_order() {
        Python::initialize();
        Python::attach(|py| {
            let mut heap = TimerHeap::new();
            for (when, t) in [(3.0, 30), (1.0, 10), (2.0, 20), (1.0, 11), (2.0, 21), (1.0, 12)] {
                let th = timer(py, &heap, when, t);
                heap.push(when, th);
            }
            let mut ready = VecDeque::new();
            heap.pop_due(py, 2.5, &mut ready);
            let order: Vec<i64> = ready.iter().map(|h| tag(py, h)).collect();
            assert_eq!(order, vec![10, 11, 12, 20, 21]);
            assert_eq!(heap.len(), 1);
            assert_eq!(heap.peek_when(), Some(3.0));
        });
    }

    #[test]
    fn cancelled_heads_are_popped_and_majority_compacts() {
        Python::initialize();
        Python::attach(|py| {
            let mut heap = TimerHeap::new();
            let timers: Vec<_> = (0..300)
                .map(|i| {
                    let t = timer(py, &heap, i as f64, i);
                    heap.push(i as f64, t.clone_ref(py));
                    t
                })
                .collect();
            // Cancel the first 10: a minority, so only the heads go.
            for t in &timers[..10] {
                cancel(py, &heap, t);
            }
            let mut dropped = Vec::new();
            heap.prune(py, &mut dropped);
            assert_eq!(dropped.len(), 10);
            assert_eq!(heap.len(), 290);
            // Now cancel two of every three of the rest: a majority, so one prune compacts.
            for (i, t) in timers[10..].iter().enumerate() {
                if i % 3 != 0 {
                    cancel(py, &heap, t);
                }
            }
            let live = timers.iter().filter(|t| !TimerHandle::handle(t.bind(py)).is_cancelled()).count();
            dropped.clear();
            heap.prune(py, &mut dropped);
            assert_eq!(heap.len(), live);
            assert_eq!(heap.cancelled.load(Relaxed), 0);
            assert!(dropped.iter().all(|t| !t.get().scheduled.load(Relaxed)));
        });
    }
}
