//! The broker's table of services: request queues and idle workers, with the totals and the
//! age order of queued requests kept up to date, so that nothing ever scans the table.
//!
//! A service exists while it has a worker or a queued request, and is forgotten (its memory
//! freed) as soon as it has neither. Client requests cannot grow the table beyond
//! `max_services`, nor the queues beyond `max_queue` each and `max_queued_total` together.

use std::collections::{HashMap, VecDeque};
use std::time::Instant;

use super::{Frame, Settings};

/// Stale age entries tolerated beyond twice the live ones before they are compacted away, so
/// that small queues are not compacted on every request.
pub(super) const AGES_SLACK: usize = 1024;
/// Table capacity below which a sparse table is not worth shrinking.
const MIN_CAPACITY: usize = 1024;

/// A client request waiting for a worker.
#[derive(Debug)]
pub(super) struct Request {
    /// Sequence number, increasing across all services: ties an age entry to its request.
    id: u64,
    /// When it was queued (its time in the queue, the oldest queued request's age).
    pub(super) at: Instant,
    pub(super) client: Frame,
    pub(super) body: Vec<Frame>,
    /// Times it was queued again after its worker was lost while busy.
    pub(super) requeues: u32,
}

#[derive(Debug, Default)]
struct Service {
    /// Requests waiting for a worker, oldest first.
    requests: VecDeque<Request>,
    /// Idle workers, least recently used first.
    waiting: VecDeque<Frame>,
    /// Workers registered, busy or idle.
    workers: usize,
    /// Replies routed to clients since the service was (last) created.
    served: u64,
    /// Requests received for it, queued or dispatched at once, since it was created.
    received: u64,
    /// Requests for it dropped (a bound, or their age), since it was created.
    dropped: u64,
}

/// One service as `mmi.stats` and the metrics report it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct ServiceReport {
    pub(crate) workers: usize,
    pub(crate) waiting: usize,
    pub(crate) queued: usize,
    pub(crate) served: u64,
    pub(crate) received: u64,
    pub(crate) dropped: u64,
    /// When its oldest queued request arrived.
    pub(crate) oldest: Option<Instant>,
}

/// When request `id` of `service` was queued.
#[derive(Debug)]
struct Queued {
    at: Instant,
    id: u64,
    service: Frame,
}

/// Why a request was not queued.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Refusal {
    /// Its service is new and `max_services` services are known already.
    TooManyServices,
    /// `max_queued_total` requests are queued already, all services together.
    TotalFull,
    /// Its service's queue holds `max_queue` requests already.
    QueueFull,
}

impl Refusal {
    /// The name of the bound that refused.
    pub(super) fn bound(self) -> &'static str {
        match self {
            Refusal::TooManyServices => "max_services",
            Refusal::TotalFull => "max_queued_total",
            Refusal::QueueFull => "max_queue",
        }
    }
}

/// Every known service, and the totals over all of them.
#[derive(Debug)]
pub(super) struct Services {
    settings: Settings,
    table: HashMap<Frame, Service>,
    queued: usize,
    waiting: usize,
    forgotten: u64,
    next_id: u64,
    /// Queued requests in the order they were queued, kept only with a `max_queue_age`. Holds
    /// entries of requests dispatched since: they are skipped when they reach the head, and
    /// compacted away when they outnumber the live ones.
    ages: VecDeque<Queued>,
}

impl Services {
    pub(super) fn new(settings: Settings) -> Services {
        Services {
            settings,
            table: HashMap::new(),
            queued: 0,
            waiting: 0,
            forgotten: 0,
            next_id: 0,
            ages: VecDeque::new(),
        }
    }

    /// Services known now.
    pub(super) fn len(&self) -> usize {
        self.table.len()
    }

    /// Requests queued now, all services together.
    pub(super) fn queued(&self) -> usize {
        self.queued
    }

    /// Idle workers now, all services together.
    pub(super) fn waiting(&self) -> usize {
        self.waiting
    }

    /// Services forgotten so far because they had neither workers nor requests.
    pub(super) fn forgotten(&self) -> u64 {
        self.forgotten
    }

    /// Whether `name` has a worker, busy or idle.
    pub(super) fn is_served(&self, name: &[u8]) -> bool {
        self.table.get(name).is_some_and(|s| s.workers > 0)
    }

    /// Queues a request for `name`, or says why not; a refused request leaves no trace.
    pub(super) fn enqueue(
        &mut self,
        now: Instant,
        name: &[u8],
        client: Frame,
        body: Vec<Frame>,
    ) -> Result<(), Refusal> {
        self.push(now, name, client, body, 0)?;
        self.service(name).received += 1;
        Ok(())
    }

    /// Queues again the request of a worker of `name` lost while busy, `requeues` times now:
    /// at the back, as a new request (its queue age starts again), under the same bounds.
    /// Call it while the lost worker still counts, so that the service is not forgotten.
    pub(super) fn requeue(
        &mut self,
        now: Instant,
        name: &[u8],
        client: Frame,
        body: Vec<Frame>,
        requeues: u32,
    ) -> Result<(), Refusal> {
        self.push(now, name, client, body, requeues)
    }

    fn push(
        &mut self,
        now: Instant,
        name: &[u8],
        client: Frame,
        body: Vec<Frame>,
        requeues: u32,
    ) -> Result<(), Refusal> {
        self.admit(name)?;
        let id = self.next_id;
        self.next_id += 1;
        let service = self.service(name);
        let waits = service.waiting.is_empty();
        service.requests.push_back(Request {
            id,
            at: now,
            client,
            body,
            requeues,
        });
        self.queued += 1;
        if waits && self.settings.max_queue_age.is_some() {
            let service = name.to_vec();
            self.ages.push_back(Queued {
                at: now,
                id,
                service,
            });
            self.compact_ages();
        }
        Ok(())
    }

    /// A request that an idle worker can take at once is always admitted.
    fn admit(&self, name: &[u8]) -> Result<(), Refusal> {
        let s = &self.settings;
        match self.table.get(name) {
            Some(service) if !service.waiting.is_empty() => Ok(()),
            None if self.table.len() >= s.max_services => Err(Refusal::TooManyServices),
            _ if self.queued >= s.max_queued_total => Err(Refusal::TotalFull),
            Some(service) if service.requests.len() >= s.max_queue => Err(Refusal::QueueFull),
            _ => Ok(()),
        }
    }

    /// Counts a request for `name` that was dropped (an existing service's: a refused new
    /// name leaves no trace).
    pub(super) fn record_dropped(&mut self, name: &[u8]) {
        if let Some(service) = self.table.get_mut(name) {
            service.dropped += 1;
        }
    }

    /// Counts a reply routed for `name`.
    pub(super) fn record_served(&mut self, name: &[u8]) {
        if let Some(service) = self.table.get_mut(name) {
            service.served += 1;
        }
    }

    /// Every known service name, sorted (for `mmi.services`): O(services), paid by the
    /// request that asks, never by a loop turn; bounded by `max_services` plus the workers'.
    pub(super) fn names(&self) -> Vec<Frame> {
        let mut names: Vec<Frame> = self.table.keys().cloned().collect();
        names.sort_unstable();
        names
    }

    /// How `name` stands now; all zeros for a service the broker does not know.
    pub(super) fn report(&self, name: &[u8]) -> ServiceReport {
        self.table
            .get(name)
            .map_or_else(ServiceReport::default, |s| ServiceReport {
                workers: s.workers,
                waiting: s.waiting.len(),
                queued: s.requests.len(),
                served: s.served,
                received: s.received,
                dropped: s.dropped,
                oldest: s.requests.front().map(|r| r.at),
            })
    }

    /// Counts a new worker of `name`. Workers are never refused: each one is a connection.
    pub(super) fn add_worker(&mut self, name: &[u8]) {
        self.service(name).workers += 1;
    }

    /// Forgets a worker of `name`, and `name` too if it has nothing left.
    pub(super) fn remove_worker(&mut self, name: &[u8], identity: &[u8]) {
        let Some(service) = self.table.get_mut(name) else {
            return;
        };
        service.workers = service.workers.saturating_sub(1);
        let before = service.waiting.len();
        service.waiting.retain(|w| w.as_slice() != identity);
        self.waiting -= before - service.waiting.len();
        self.forget_if_idle(name);
    }

    /// Puts a registered worker at the back of its service's idle list.
    pub(super) fn push_waiting(&mut self, name: &[u8], identity: Frame) {
        if let Some(service) = self.table.get_mut(name) {
            service.waiting.push_back(identity);
            self.waiting += 1;
        }
    }

    /// The oldest queued request of `name` with its least recently used idle worker.
    pub(super) fn next_pair(&mut self, name: &[u8]) -> Option<(Frame, Request)> {
        let service = self.table.get_mut(name)?;
        if service.requests.is_empty() || service.waiting.is_empty() {
            return None;
        }
        let worker = service.waiting.pop_front()?;
        let request = service.requests.pop_front()?;
        self.waiting -= 1;
        self.queued -= 1;
        Some((worker, request))
    }

    /// Drops every request queued `max_queue_age` or longer before `now`; returns how many.
    /// Costs one look at the head when nothing is due.
    pub(super) fn expire(&mut self, now: Instant) -> usize {
        let Some(age) = self.settings.max_queue_age else {
            return 0;
        };
        let mut expired = 0;
        while self
            .ages
            .front()
            .is_some_and(|q| now.saturating_duration_since(q.at) >= age)
        {
            if let Some(Queued { id, service, .. }) = self.ages.pop_front() {
                expired += usize::from(self.drop_front_if(&service, id));
            }
        }
        expired
    }

    /// When [`expire`](Self::expire) may next have work to do.
    pub(super) fn next_expiry(&self) -> Option<Instant> {
        let age = self.settings.max_queue_age?;
        self.ages.front().and_then(|q| q.at.checked_add(age))
    }

    /// Gives memory back after a flood of names has been forgotten; the cost is paid for by
    /// the removals that made the table sparse.
    pub(super) fn shrink_if_sparse(&mut self) {
        let capacity = self.table.capacity();
        if capacity > MIN_CAPACITY && self.table.len() < capacity / 4 {
            self.table.shrink_to(self.table.len() * 2);
        }
    }

    fn service(&mut self, name: &[u8]) -> &mut Service {
        self.table.entry(name.to_vec()).or_default()
    }

    /// Drops the head request of `name` if it is request `id`, not dispatched yet.
    fn drop_front_if(&mut self, name: &[u8], id: u64) -> bool {
        let Some(service) = self.table.get_mut(name) else {
            return false;
        };
        if !service.requests.front().is_some_and(|r| r.id == id) {
            return false;
        }
        service.requests.pop_front();
        service.dropped += 1;
        self.queued -= 1;
        self.forget_if_idle(name);
        true
    }

    fn forget_if_idle(&mut self, name: &[u8]) {
        let idle = self
            .table
            .get(name)
            .is_some_and(|s| s.workers == 0 && s.requests.is_empty());
        if idle {
            self.table.remove(name);
            self.forgotten += 1;
        }
    }

    /// Drops the entries of requests no longer queued once they outnumber the live ones.
    /// Requests leave a queue from its head only, so an entry is live while its service's
    /// head is not newer than it.
    fn compact_ages(&mut self) {
        if self.ages.len() <= 2 * self.queued + AGES_SLACK {
            return;
        }
        let table = &self.table;
        self.ages.retain(|q| {
            let head = table.get(&q.service).and_then(|s| s.requests.front());
            head.is_some_and(|r| r.id <= q.id)
        });
    }
}

#[cfg(test)]
impl Services {
    /// The totals recounted by scanning everything, to check the kept ones against.
    pub(super) fn recount(&self) -> (usize, usize) {
        let queued = self.table.values().map(|s| s.requests.len()).sum();
        let waiting = self.table.values().map(|s| s.waiting.len()).sum();
        (queued, waiting)
    }

    /// Whether an idle service (no worker, no request) is still in the table.
    pub(super) fn holds_an_idle_service(&self) -> bool {
        self.table
            .values()
            .any(|s| s.workers == 0 && s.requests.is_empty())
    }

    /// Age entries held now, live or stale.
    pub(super) fn age_entries(&self) -> usize {
        self.ages.len()
    }
}
