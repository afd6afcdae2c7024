//! One shard of the L1 cache: a slab of entries linked into policy queues, a hash index and the
//! shard's share of the budget. Every method runs under the shard's mutex.

use std::borrow::Borrow;
use std::collections::{HashMap, HashSet};
use std::hash::{BuildHasher, Hash};
use std::sync::Arc;

use hashbrown::HashTable;
use serde::{Deserialize, Serialize};

use super::ghost::Ghost;
use super::policy::Policy;
use super::sketch::FrequencySketch;
use super::stats::ShardStats;

pub(crate) const NIL: u32 = u32::MAX;

/// Queue numbers. LRU and FIFO use queue 0; LFU uses queues 0..=15 (one per frequency level);
/// TinyLFU uses the window, probation and protected queues.
const WINDOW: u8 = 0;
const PROBATION: u8 = 1;
const PROTECTED: u8 = 2;
const LFU_LEVELS: usize = 16;

const HAS_TAGS: u8 = 1;
/// TinyLFU: hit since the entry last reached its queue's tail (CLOCK's reference bit). A hit in
/// the window or the protected queue only sets it; the entry moves to the head when it reaches
/// the tail (second chance). A hit thus touches one entry instead of three (the entry and both
/// neighbours), at the cost of an LRU order that is approximate within those queues.
const REFERENCED: u8 = 2;
/// TinyLFU: left the window unused during the current eviction round and waits in probation
/// for its admission duel. Set and cleared within one `maintain` call.
const CANDIDATE: u8 = 4;

/// The hasher every shard and the cache front share (see `hasher.rs`).
pub(crate) use super::hasher::Hasher;

/// An entry. `prev` points toward the queue's head (most recent), `next` toward its tail.
/// The value is stored inline: a hit clones it under the shard lock (callers with large
/// values store an `Arc<T>`).
pub(crate) struct Node<K, V> {
    pub(crate) key: K,
    pub(crate) value: V,
    prev: u32,
    next: u32,
    pub(crate) weight: u32,
    pub(crate) queue: u8,
    pub(crate) freq: u8,
    flags: u8,
    /// Gives `Option<Node>` a niche, so a slab slot is no larger than the node even when
    /// neither key nor value has one (`u64 -> u64`: 32 bytes, not 40). Never read.
    #[allow(dead_code)]
    live: Live,
}

/// A one-value byte: its 255 unused bit patterns are the niche `Option<Node>` uses.
#[derive(Clone, Copy)]
#[repr(u8)]
enum Live {
    Yes = 1,
}

#[derive(Debug, Clone, Copy)]
struct List {
    head: u32,
    tail: u32,
    weight: u64,
}

impl Default for List {
    fn default() -> Self {
        Self {
            head: NIL,
            tail: NIL,
            weight: 0,
        }
    }
}

/// One round of window evictions: how many entries went to probation, and how many of them
/// are admission candidates.
#[derive(Debug, Default)]
struct Round {
    pushed: usize,
    candidates: usize,
}

/// Why an entry leaves the cache (decides which statistic counts it).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Cause {
    Evicted,
    Expired,
    Removed,
}

/// The adaptive part of W-TinyLFU: the frequency sketch, the queue sizes, and the miniature
/// simulations that choose the queue shape.
struct TinyLfu {
    sketch: FrequencySketch,
    sketch_limit: usize,
    window_max: u64,
    protected_max: u64,
    /// The queue shape last chosen (kept when the shard's budget changes).
    shape: Shape,
    minis: Option<Box<Minis>>,
    ghost: Ghost,
    /// The shard has evicted at least once.
    filled: bool,
}

/// How a TinyLFU shard splits its budget: the window's share of the whole, and the protected
/// queue's share of the rest (probation has the remainder).
#[derive(Debug, Clone, Copy, PartialEq)]
struct Shape {
    window: f64,
    protected: f64,
}

const fn shape(window: f64, protected: f64) -> Shape {
    Shape { window, protected }
}

/// The shapes the miniature simulations try: from frequency-biased (a 1 % window, TinyLFU's
/// classic setting, best on loops and scans) to almost pure LRU (90 %). The half-window shape
/// also gives probation a larger share (40 % of the main space instead of 20 %): on
/// recency-heavy traces with a medium reuse distance (P3 @ 160000) that is worth 0.5 points,
/// while the frequency-biased shapes need the larger protected queue.
const SHAPES: [Shape; 5] = [
    shape(0.01, 0.8),
    shape(0.05, 0.8),
    shape(0.2, 0.8),
    shape(0.5, 0.6),
    shape(0.9, 0.8),
];
/// The shape a shard starts with, and goes back to when the half window does not prove
/// itself (see [`Minis`]): the 1 % window.
const SMALL_WINDOW: usize = 0;
/// The shape a large shard hedges with when it fills (see [`Minis`]): the half window.
const HALF_WINDOW: usize = 3;
/// A shard hedges if it holds at least this many entries when it fills: as many as the lowest
/// sampling rate (one key in 2^[`MAX_SAMPLE_SHIFT`]) is made for.
const HEDGE_ENTRIES: u64 = MINI_ENTRIES << MAX_SAMPLE_SHIFT;
/// A shard of up to this many entries is simulated unsampled: a sampled simulation of a small
/// cache quantizes small windows too coarsely (1 % of 256 entries is two) and misranked them
/// on loops (LIRS loop @ 512: 47.7 % hits instead of 49.5 %).
const UNSAMPLED_LIMIT: u64 = 1024;
/// A larger shard's simulations hold about this many entries each (sampling costs one
/// sampled get in 2^shift five small gets, so larger simulations slow every get down)...
const MINI_ENTRIES: u64 = 256;
/// ...sampling one key in 2^shift, at most one in 64.
const MAX_SAMPLE_SHIFT: u32 = 6;
/// A candidate must lead the current shape by this share of its (decayed) hits before the
/// shard switches: moving the window reshuffles the queues, so chasing noise costs hits.
const HYSTERESIS: f64 = 0.05;
/// ...and by at least this many hits. While the counts are small, 5 % of them is less than
/// their noise (32 is about two standard deviations of a few hundred hits): the first period
/// of the LIRS loop @ 512 switched on a lead of 10 hits to 0. Over hash seeds 1–8 the floor
/// raised P3 @ 20000 from 11.28–11.55 % hits to 11.60–12.02. Once the counts exceed 640 the
/// hysteresis is the larger bar, so later decisions are unchanged.
const MIN_LEAD: f64 = 32.0;
/// Sampled requests between decisions: the simulations' capacity divided by this. Every
/// quarter capacity rather than every half: the first decisions come sooner after the shard
/// fills, which on P3 @ 160000 is worth 0.15–0.3 points (hash seeds 1–4), and the decay
/// (per decision) still spans some twenty-five capacities of sampled requests.
const PERIOD_DIVISOR: u64 = 4;
/// Each decision multiplies the simulations' hit counts by this: they remember about a hundred
/// periods (some twenty-five times the simulated capacity in sampled requests). A short memory
/// (×0.9, ten periods) chased phases, switched back and forth, and every switch reshuffles
/// the queues; on P3 @ 160000 it also ranked shapes by their last phase only, where the
/// whole trace favours another (50.1 % hits instead of 54.4 %).
const DECAY: f64 = 0.99;
/// A simulation starts with at most this many entries...
const MAX_MINI_START: u64 = 1024;
/// ...and never grows beyond this many: five simulations then cost at most 5 × 8192 small
/// entries per shard, about 5/64 of the live entries of a large shard.
const MAX_MINI_ENTRIES: u64 = 8192;
/// A candidate with no ghost history is admitted only if its frequency estimate exceeds the
/// victim's by more than this.
const ADMIT_MARGIN: u8 = 1;
/// Below this many entries a shard does not adapt (its window stays at 1 %).
const MIN_ADAPTIVE_ENTRIES: u64 = 64;

/// Miniature simulations (Waldspurger et al., "Cache Modeling and Optimization using
/// Miniature Simulations", USENIX ATC 2017): one small W-TinyLFU per candidate shape, fed
/// the same spatially sampled keys, scaled down by the sampling rate. Every period the shard
/// adopts the shape of the simulation with the most (exponentially decayed) hits. Unlike hill
/// climbing on the live hit rate, workload phases affect every candidate equally, so they do
/// not push the window the wrong way. Cost: one sampled get in 2^shift runs five small gets.
///
/// **Nothing before the shard fills.** Until the shard first evicts, every shape holds the
/// same keys, so the simulations' leads say nothing about it: they are sized to the live
/// entries of the last decision and run a smaller cache than the shard will be. The shard
/// changes shape only once it has filled.
///
/// **The hedge.** The two directions of a switch do not cost the same. Going from the half
/// window to the 1 % one loses nothing: the window's entries move to probation and duel
/// there. Going the other way loses every newcomer the 1 % window's admission turned away
/// before the switch. And evidence is slow where sampling is sparse: on P3 @ 160000 (one key
/// in 64) the simulations separate some 35,000 requests after the shard fills, and by then
/// the 1 % window has turned away the newcomers the trace is about to re-read. So a shard
/// sampled at the lowest rate that holds [`HEDGE_ENTRIES`] or more when it fills moves to the
/// half window then. The window grows by the misses that follow, so every newcomer is kept
/// while the evidence comes in. At the first decision a period or more after the fill (the
/// counts it judges by include the decayed hits from before the fill), the
/// shard stays at the half window only if that simulation is the best and leads the 1 %
/// window by [`MIN_LEAD`]; otherwise it goes back to the 1 % window, even when a larger
/// window leads (on a cold Zipf cache the larger windows lead at first, and staying there
/// cost Zipf 0.8 @ 100k two points). The regular rule (lead, hysteresis) applies from then
/// on, and within that period too.
struct Minis {
    shift: u32,
    caches: Vec<Shard<u64, ()>>,
    hits: [f64; SHAPES.len()],
    current: usize,
    /// Sampled gets in the current period.
    sampled: u64,
    /// Sampled gets since the start.
    total: u64,
    /// `total` at the first sampled get after the shard first evicted.
    filled_at: Option<u64>,
    /// Moved to the half window when the shard filled and not yet judged (see above).
    hedging: bool,
}

impl Minis {
    fn new(limit: u64, hasher: &Hasher) -> Option<Box<Self>> {
        if limit < MIN_ADAPTIVE_ENTRIES {
            return None;
        }
        let ratio = if limit <= UNSAMPLED_LIMIT {
            1
        } else {
            (limit / MINI_ENTRIES).max(1)
        };
        let shift = (63 - ratio.leading_zeros()).min(MAX_SAMPLE_SHIFT);
        // A byte-weighted shard's limit is in bytes, not entries: start small and follow the
        // live entry count (see `observe`).
        let capacity = (limit >> shift).clamp(16, MAX_MINI_START);
        let caches = SHAPES
            .iter()
            .map(|&shape| Shard::new_fixed(shape, capacity, hasher.clone()))
            .collect();
        Some(Box::new(Self {
            shift,
            caches,
            hits: [0.0; SHAPES.len()],
            current: SMALL_WINDOW,
            sampled: 0,
            total: 0,
            filled_at: None,
            hedging: false,
        }))
    }

    /// Whether a get of `hash` is fed to the simulations. Bits 40.. are independent of the
    /// shard choice and of the index's bucket bits.
    #[inline]
    fn samples(&self, hash: u64) -> bool {
        (hash >> 40) & ((1 << self.shift) - 1) == 0
    }

    /// Feeds a get of `hash` to the simulations if it is sampled; returns a new shape when
    /// the period ends and another candidate leads. `filled`: the shard has evicted.
    #[inline]
    fn observe(&mut self, hash: u64, live_entries: usize, filled: bool) -> Option<Shape> {
        if !self.samples(hash) {
            return None;
        }
        self.observe_sampled(hash, live_entries, filled)
    }

    /// [`observe`](Self::observe) for a sampled get: five simulated gets, out of line so the
    /// unsampled gets stay short.
    #[inline(never)]
    fn observe_sampled(&mut self, hash: u64, live_entries: usize, filled: bool) -> Option<Shape> {
        // A shard's table and sketch hash keys with its own hasher; the key here is `hash`.
        // Every simulation was built with a clone of the live shard's hasher (`new`), so one
        // hash serves all of them.
        let h = self.caches.first().map(|mini| mini.hasher.hash_one(hash))?;
        for (i, mini) in self.caches.iter_mut().enumerate() {
            let hit = mini.get_entry(h, &hash, || 1, |_| ()).is_some();
            if hit {
                self.hits[i] += 1.0;
            } else {
                mini.insert(h, hash, (), 1, 0, None, || 1);
            }
        }
        self.sampled += 1;
        self.total += 1;
        if filled && self.filled_at.is_none() {
            self.filled_at = Some(self.total);
            // The entry count, not the budget: with a byte weigher a shard sampled at the
            // lowest rate can fill with a few hundred entries.
            if self.shift == MAX_SAMPLE_SHIFT && live_entries as u64 >= HEDGE_ENTRIES {
                self.hedging = true;
                self.current = HALF_WINDOW;
                return Some(SHAPES[HALF_WINDOW]);
            }
        }
        let capacity = self.caches[0].max_weight;
        if self.sampled * PERIOD_DIVISOR < capacity {
            return None;
        }
        self.sampled = 0;
        // Follow the live cache's size (it matters for byte-weighted caches, whose entry count
        // is only known by observing it).
        let target = ((live_entries as u64) >> self.shift).clamp(16, MAX_MINI_ENTRIES);
        if target > capacity {
            for mini in &mut self.caches {
                mini.resize_fixed(target);
            }
        }
        let best = (0..SHAPES.len())
            .max_by(|&a, &b| self.hits[a].total_cmp(&self.hits[b]).then(b.cmp(&a)))
            .unwrap_or(self.current);
        for h in &mut self.hits {
            *h *= DECAY;
        }
        let filled_at = self.filled_at?;
        if self.hedging && (self.total - filled_at) * PERIOD_DIVISOR >= capacity {
            self.hedging = false;
            let lead = self.hits[HALF_WINDOW] - self.hits[SMALL_WINDOW];
            if !(best == HALF_WINDOW && lead >= MIN_LEAD) {
                self.current = SMALL_WINDOW;
                return Some(SHAPES[SMALL_WINDOW]);
            }
        }
        let lead = self.hits[best] - self.hits[self.current];
        if best != self.current && lead >= MIN_LEAD && lead > HYSTERESIS * self.hits[self.current] {
            self.current = best;
            self.hedging = false;
            return Some(SHAPES[best]);
        }
        None
    }
}

impl TinyLfu {
    fn new(max_weight: u64, max_len: usize, shape: Shape, minis: Option<Box<Minis>>) -> Self {
        let limit = usize::try_from(max_weight)
            .unwrap_or(usize::MAX)
            .min(max_len);
        let mut t = Self {
            sketch: FrequencySketch::new(limit.min(1024)),
            sketch_limit: limit,
            window_max: 1,
            protected_max: 0,
            shape,
            minis,
            ghost: Ghost::new(limit.min(1024)),
            filled: false,
        };
        t.set_shape(shape, max_weight);
        t
    }

    fn set_shape(&mut self, shape: Shape, max_weight: u64) {
        self.shape = shape;
        self.window_max = ((max_weight as f64 * shape.window) as u64).clamp(1, max_weight.max(1));
        self.protected_max =
            ((max_weight.saturating_sub(self.window_max)) as f64 * shape.protected) as u64;
    }
}

/// What an adaptive TinyLFU shard has learned about its workload: the queue shape its
/// simulations chose, their decayed hit counts, whether it has filled, and whether it is
/// hedging. A snapshot carries it (`l1/snapshot.rs`) so that a restarted cache neither learns
/// its shape again nor, being full at once, hedges again.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub(crate) struct Adaptation {
    shape: u8,
    hits: [f64; SHAPES.len()],
    filled: bool,
    hedging: bool,
}

/// The tag index: tag -> slots, and slot -> its tags (only for entries that have tags).
#[derive(Default)]
struct Tags {
    by_tag: HashMap<Arc<str>, HashSet<u32>>,
    by_slot: HashMap<u32, Box<[Arc<str>]>>,
}

/// A shard: its entries, queues, index and statistics.
pub(crate) struct Shard<K, V> {
    table: HashTable<u32>,
    slots: Vec<Option<Node<K, V>>>,
    /// Deadlines by slot in clock ticks (nanoseconds since the cache's base instant, plus one;
    /// 0: never). Empty until an entry with a TTL arrives, so a cache without TTLs spends no
    /// memory on them; shorter than `slots` means 0 for the slots beyond.
    expires: Vec<u64>,
    free: Vec<u32>,
    lists: [List; LFU_LEVELS],
    policy: Policy,
    tiny: Option<Box<TinyLfu>>,
    tags: Option<Box<Tags>>,
    pub(crate) max_weight: u64,
    max_len: usize,
    weight: u64,
    len: usize,
    ttl_len: usize,
    hand: u32,
    hasher: Hasher,
    pub(crate) stats: ShardStats,
}

/// What an insert did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Inserted {
    New,
    Updated,
    Rejected,
}

impl<K: Hash + Eq, V> Shard<K, V> {
    pub(crate) fn new(policy: Policy, max_weight: u64, max_len: usize, hasher: Hasher) -> Self {
        let tiny = matches!(policy, Policy::TinyLfu).then(|| {
            let limit = max_weight.min(max_len as u64);
            let minis = Minis::new(limit, &hasher);
            Box::new(TinyLfu::new(
                max_weight,
                max_len,
                SHAPES[SMALL_WINDOW],
                minis,
            ))
        });
        Self {
            table: HashTable::new(),
            slots: Vec::new(),
            expires: Vec::new(),
            free: Vec::new(),
            lists: [List::default(); LFU_LEVELS],
            policy,
            tiny,
            tags: None,
            max_weight,
            max_len,
            weight: 0,
            len: 0,
            ttl_len: 0,
            hand: 0,
            hasher,
            stats: ShardStats::default(),
        }
    }

    /// A non-adaptive W-TinyLFU shard of `capacity` unit-weight entries with a fixed shape
    /// (a miniature simulation).
    fn new_fixed(shape: Shape, capacity: u64, hasher: Hasher) -> Self {
        let mut shard = Self::new(Policy::Lru, capacity, usize::MAX, hasher);
        shard.policy = Policy::TinyLfu;
        shard.tiny = Some(Box::new(TinyLfu::new(capacity, usize::MAX, shape, None)));
        if let Some(t) = shard.tiny.as_mut() {
            t.sketch_limit = 1 << 20;
        }
        shard
    }

    /// Grows a miniature simulation to `capacity` entries, keeping its shape.
    fn resize_fixed(&mut self, capacity: u64) {
        if let Some(t) = self.tiny.as_mut() {
            self.max_weight = capacity;
            let shape = t.shape;
            t.set_shape(shape, capacity);
        }
    }

    /// Changes this shard's budget (the cache moves budget between shards so that one entry
    /// may weigh up to the whole budget) and evicts down to a lowered one.
    pub(crate) fn set_budget(&mut self, max_weight: u64) {
        self.max_weight = max_weight;
        if let Some(t) = self.tiny.as_mut() {
            let shape = t.shape;
            t.set_shape(shape, max_weight);
        }
        self.maintain(NIL);
        self.publish();
    }

    pub(crate) fn len(&self) -> usize {
        self.len
    }

    pub(crate) fn weight(&self) -> u64 {
        self.weight
    }

    #[inline]
    fn node(&self, idx: u32) -> &Node<K, V> {
        match &self.slots[idx as usize] {
            Some(n) => n,
            // Queues and the index only ever hold occupied slots.
            None => unreachable!("slot {idx} is linked but empty"),
        }
    }

    #[inline]
    fn node_mut(&mut self, idx: u32) -> &mut Node<K, V> {
        match &mut self.slots[idx as usize] {
            Some(n) => n,
            None => unreachable!("slot {idx} is linked but empty"),
        }
    }

    #[inline]
    fn expires_of(&self, idx: u32) -> u64 {
        self.expires.get(idx as usize).copied().unwrap_or(0)
    }

    fn set_expires(&mut self, idx: u32, expires: u64) {
        let i = idx as usize;
        if i >= self.expires.len() {
            if expires == 0 {
                return;
            }
            self.expires.resize(self.slots.len().max(i + 1), 0);
        }
        self.expires[i] = expires;
    }

    #[inline]
    fn find<Q>(&self, hash: u64, key: &Q) -> Option<u32>
    where
        K: Borrow<Q>,
        Q: Hash + Eq + ?Sized,
    {
        let slots = &self.slots;
        self.table
            .find(hash, |&i| {
                slots[i as usize]
                    .as_ref()
                    .is_some_and(|n| n.key.borrow() == key)
            })
            .copied()
    }

    // ----- intrusive lists -----

    fn unlink(&mut self, idx: u32) {
        let (prev, next, queue, weight) = {
            let n = self.node(idx);
            (n.prev, n.next, n.queue, u64::from(n.weight))
        };
        if prev == NIL {
            self.lists[queue as usize].head = next;
        } else {
            self.node_mut(prev).next = next;
        }
        if next == NIL {
            self.lists[queue as usize].tail = prev;
        } else {
            self.node_mut(next).prev = prev;
        }
        self.lists[queue as usize].weight -= weight;
    }

    fn push_front(&mut self, idx: u32, queue: u8) {
        let head = self.lists[queue as usize].head;
        {
            let n = self.node_mut(idx);
            n.prev = NIL;
            n.next = head;
            n.queue = queue;
        }
        let weight = u64::from(self.node(idx).weight);
        if head == NIL {
            self.lists[queue as usize].tail = idx;
        } else {
            self.node_mut(head).prev = idx;
        }
        let list = &mut self.lists[queue as usize];
        list.head = idx;
        list.weight += weight;
    }

    fn move_front(&mut self, idx: u32, queue: u8) {
        if self.lists[queue as usize].head != idx || self.node(idx).queue != queue {
            self.unlink(idx);
            self.push_front(idx, queue);
        }
    }

    // ----- policy hooks -----

    /// The policy's bookkeeping for a hit. The common TinyLFU case, a hit in the window or the
    /// protected queue, only sets the entry's reference bit and is inlined into the get; the
    /// relinking cases are out of line.
    #[inline]
    fn on_hit(&mut self, idx: u32) {
        match self.policy {
            Policy::TinyLfu if self.node(idx).queue != PROBATION => {
                self.node_mut(idx).flags |= REFERENCED;
            }
            _ => self.on_hit_relink(idx),
        }
    }

    /// [`on_hit`](Self::on_hit) for the cases that move the entry between or within queues.
    #[inline(never)]
    fn on_hit_relink(&mut self, idx: u32) {
        match self.policy {
            Policy::Lru => self.move_front(idx, 0),
            Policy::Fifo => {}
            Policy::Lfu => {
                let level = self
                    .node(idx)
                    .freq
                    .saturating_add(1)
                    .min(LFU_LEVELS as u8 - 1);
                self.node_mut(idx).freq = level;
                self.move_front(idx, level);
            }
            Policy::TinyLfu => {
                // A hit in probation: the entry moves to the protected queue.
                self.unlink(idx);
                self.push_front(idx, PROTECTED);
                self.demote_protected();
            }
        }
    }

    fn demote_protected(&mut self) {
        let Some(protected_max) = self.tiny.as_ref().map(|t| t.protected_max) else {
            return;
        };
        while self.lists[PROTECTED as usize].weight > protected_max {
            let tail = self.lists[PROTECTED as usize].tail;
            if tail == NIL {
                break;
            }
            self.unlink(tail);
            if self.second_chance(tail) {
                self.push_front(tail, PROTECTED);
            } else {
                self.push_front(tail, PROBATION);
            }
        }
    }

    /// Clears `idx`'s reference bit; returns whether it was set.
    fn second_chance(&mut self, idx: u32) -> bool {
        let n = self.node_mut(idx);
        let referenced = n.flags & REFERENCED != 0;
        n.flags &= !REFERENCED;
        referenced
    }

    fn over(&self) -> bool {
        self.weight > self.max_weight || self.len > self.max_len
    }

    /// Evicts until the shard is within its budget and entry bound.
    fn maintain(&mut self, newcomer: u32) {
        match self.policy {
            Policy::Lru | Policy::Fifo => {
                while self.over() {
                    let tail = self.lists[0].tail;
                    if tail == NIL {
                        break;
                    }
                    self.remove_idx(tail, Cause::Evicted);
                }
            }
            Policy::Lfu => {
                // The newcomer sits at level 0 with no history; evicting it at once would make
                // LFU refuse every new key, so it is exempt from this round.
                while self.over() {
                    let Some(victim) = self
                        .lists
                        .iter()
                        .map(|l| {
                            if l.tail == newcomer && newcomer != NIL {
                                self.node(l.tail).prev
                            } else {
                                l.tail
                            }
                        })
                        .find(|&v| v != NIL)
                    else {
                        break;
                    };
                    self.remove_idx(victim, Cause::Evicted);
                }
            }
            Policy::TinyLfu => {
                if self.over() {
                    if let Some(tiny) = self.tiny.as_mut() {
                        tiny.filled = true;
                    }
                }
                let round = self.evict_from_window();
                self.evict_from_main(round);
                self.demote_protected();
            }
        }
    }

    /// Moves the window's overflow to the head of probation: entries used in the window as
    /// members of the main space, the others flagged as admission candidates.
    fn evict_from_window(&mut self) -> Round {
        let mut round = Round::default();
        let Some(window_max) = self.tiny.as_ref().map(|t| t.window_max) else {
            return round;
        };
        while self.lists[WINDOW as usize].weight > window_max {
            let tail = self.lists[WINDOW as usize].tail;
            if tail == NIL {
                break;
            }
            self.unlink(tail);
            // An entry used while in the window joins the main space without a duel (the
            // rule of S3-FIFO's small queue and of ARC's T1 → T2): recency-heavy traces re-use
            // such entries soon, and the sketch, which counts over ten cache sizes of
            // requests, may not rate them above an old victim yet. An unused one duels.
            if !self.second_chance(tail) {
                self.node_mut(tail).flags |= CANDIDATE;
                round.candidates += 1;
            }
            self.push_front(tail, PROBATION);
            round.pushed += 1;
        }
        round
    }

    /// The first entry flagged as an admission candidate at or after `idx`, looking at no
    /// more than the round's pushed entries in all (they are the head of probation, so the
    /// walk never wanders into the rest of the queue).
    fn next_candidate(&self, mut idx: u32, round: &mut Round) -> u32 {
        while idx != NIL && round.pushed > 0 {
            round.pushed -= 1;
            if self.node(idx).flags & CANDIDATE != 0 {
                return idx;
            }
            idx = self.node(idx).next;
        }
        NIL
    }

    /// The candidate after `idx`, once `idx` has had its duel and stays (its flag is cleared).
    fn pass_candidate(&mut self, idx: u32, round: &mut Round) -> u32 {
        self.node_mut(idx).flags &= !CANDIDATE;
        let next = self.node(idx).next;
        self.next_candidate(next, round)
    }

    /// TinyLFU admission: while over budget, the newest candidate duels the probation queue's
    /// least recent entry and the one the sketch says is less frequent is evicted. Candidates
    /// left when the shard is back within budget stay in probation.
    ///
    /// `candidate` walks the flagged entries from probation's head, `victim` the queue from
    /// its tail; once no flagged entry is left, `candidate` is `NIL` and victims go without a
    /// duel.
    fn evict_from_main(&mut self, mut round: Round) {
        let mut victim_queue = PROBATION;
        let mut victim = self.lists[PROBATION as usize].tail;
        let head = self.lists[PROBATION as usize].head;
        let mut candidate = if round.candidates == 0 {
            NIL
        } else {
            self.next_candidate(head, &mut round)
        };
        while self.over() {
            if candidate == NIL && victim == NIL {
                match victim_queue {
                    PROBATION => {
                        victim_queue = PROTECTED;
                        victim = self.lists[PROTECTED as usize].tail;
                        continue;
                    }
                    PROTECTED => {
                        victim_queue = WINDOW;
                        victim = self.lists[WINDOW as usize].tail;
                        continue;
                    }
                    _ => break,
                }
            }
            if victim == NIL {
                let evict = candidate;
                candidate = self.next_candidate(self.node(evict).next, &mut round);
                self.remove_idx(evict, Cause::Evicted);
                continue;
            }
            if candidate == NIL || candidate == victim {
                // No candidate left, or the two walks met (every flagged entry has had its
                // turn): the victim goes without a duel.
                candidate = NIL;
                let evict = victim;
                victim = self.node(evict).prev;
                self.remove_idx(evict, Cause::Evicted);
                continue;
            }
            if self.admit(candidate, victim) {
                let evict = victim;
                victim = self.node(evict).prev;
                // Remove first: the next candidate may be the victim itself.
                self.remove_idx(evict, Cause::Evicted);
                candidate = self.pass_candidate(candidate, &mut round);
            } else {
                let evict = candidate;
                candidate = self.next_candidate(self.node(evict).next, &mut round);
                self.remove_idx(evict, Cause::Evicted);
            }
        }
        // Candidates left once the shard fits stay, as members of probation.
        while candidate != NIL {
            candidate = self.pass_candidate(candidate, &mut round);
        }
    }

    fn admit(&mut self, candidate: u32, victim: u32) -> bool {
        let ch = self.hasher.hash_one(&self.node(candidate).key);
        let vh = self.hasher.hash_one(&self.node(victim).key);
        let Some(tiny) = self.tiny.as_mut() else {
            return true;
        };
        let cf = tiny.sketch.frequency(ch);
        let vf = tiny.sketch.frequency(vh);
        // A candidate evicted recently (in the ghost history) wins ties: it is coming back
        // within about a cache's worth of evictions, which recency-friendly traces reward.
        // Any other candidate must beat the victim by more than one: on equal true
        // frequencies (loops) the sketch's ageing and collisions would otherwise let the
        // newest key win half the duels and churn the main space.
        //
        // There is no random admission (Caffeine admits a warm candidate one time in 128 so
        // that keys built to collide cannot pin a hot victim): the sketch hashes with the
        // cache's keyed hasher, whose seed is random unless the user fixes it, so colliding
        // keys cannot be built from outside; and on loops those random admissions churned
        // the main space (10 % loop: 5.3 % hits instead of 8.6 %).
        cf > vf.saturating_add(ADMIT_MARGIN) || (cf >= vf && tiny.ghost.contains(ch))
    }

    // ----- operations -----

    /// Looks `key` up; an expired entry is removed and reported as a miss. A hit returns
    /// `read` of the value (a clone, or nothing) and the entry's deadline.
    #[inline]
    pub(crate) fn get_entry<Q, R>(
        &mut self,
        hash: u64,
        key: &Q,
        now: impl FnOnce() -> u64,
        read: impl FnOnce(&V) -> R,
    ) -> Option<(R, u64)>
    where
        K: Borrow<Q>,
        Q: Hash + Eq + ?Sized,
    {
        let found = self.find(hash, key);
        let hit = match found {
            Some(idx) => {
                let expires = self.expires_of(idx);
                if expires != 0 && expires <= now() {
                    self.expire(idx);
                    None
                } else {
                    self.on_hit(idx);
                    Some((read(&self.node(idx).value), expires))
                }
            }
            None => None,
        };
        if let Some(tiny) = self.tiny.as_mut() {
            tiny.sketch.increment(hash);
            let (len, filled) = (self.len, tiny.filled);
            if let Some(shape) = tiny
                .minis
                .as_mut()
                .and_then(|m| m.observe(hash, len, filled))
            {
                tiny.set_shape(shape, self.max_weight);
            }
        }
        if hit.is_some() {
            self.stats.hits.inc();
        } else {
            self.stats.misses.inc();
        }
        hit
    }

    /// Removes `idx`, found expired by a read (out of line: the get path stays short).
    #[cold]
    fn expire(&mut self, idx: u32) {
        self.remove_idx(idx, Cause::Expired);
        self.publish();
    }

    /// Looks `key` up without touching policy state or statistics.
    pub(crate) fn peek<Q>(&self, hash: u64, key: &Q, now: u64) -> Option<&V>
    where
        K: Borrow<Q>,
        Q: Hash + Eq + ?Sized,
    {
        let idx = self.find(hash, key)?;
        let expires = self.expires_of(idx);
        (expires == 0 || expires > now).then(|| &self.node(idx).value)
    }

    /// The deadline of `key`'s entry (0: none), if present and not expired.
    pub(crate) fn deadline<Q>(&self, hash: u64, key: &Q, now: u64) -> Option<u64>
    where
        K: Borrow<Q>,
        Q: Hash + Eq + ?Sized,
    {
        let expires = self.expires_of(self.find(hash, key)?);
        (expires == 0 || expires > now).then_some(expires)
    }

    /// Inserts or replaces. A too-heavy entry is rejected and any older value of the key
    /// removed, so a reader never sees a value older than the last write.
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn insert(
        &mut self,
        hash: u64,
        key: K,
        value: V,
        weight: u64,
        expires: u64,
        tags: Option<Box<[Arc<str>]>>,
        now: impl FnOnce() -> u64,
    ) -> Inserted {
        let existing = self.find(hash, &key);
        let weight = match u32::try_from(weight) {
            Ok(w) if u64::from(w) <= self.max_weight && self.max_len > 0 => w,
            _ => {
                if let Some(idx) = existing {
                    self.remove_idx(idx, Cause::Removed);
                    self.publish();
                }
                self.stats.rejections.inc();
                return Inserted::Rejected;
            }
        };
        if self.ttl_len > 0 {
            // Read the clock only when some entry can expire.
            self.sweep(now(), 2);
        }
        let mut newcomer = NIL;
        let outcome = if let Some(idx) = existing {
            // The index may have moved during the sweep only if this entry expired and was
            // removed; look it up again in that case.
            if self.slots[idx as usize].is_some() {
                self.replace(idx, value, weight, expires, tags);
                self.on_hit(idx);
                self.stats.updates.inc();
                Inserted::Updated
            } else {
                newcomer = self.insert_new(hash, key, value, weight, expires, tags);
                Inserted::New
            }
        } else {
            newcomer = self.insert_new(hash, key, value, weight, expires, tags);
            Inserted::New
        };
        self.maintain(newcomer);
        self.publish();
        outcome
    }

    fn replace(
        &mut self,
        idx: u32,
        value: V,
        weight: u32,
        expires: u64,
        tags: Option<Box<[Arc<str>]>>,
    ) {
        self.untag(idx);
        let old_expires = self.expires_of(idx);
        let (old_weight, queue) = {
            let n = self.node(idx);
            (n.weight, n.queue)
        };
        if old_expires != 0 {
            self.ttl_len -= 1;
        }
        if expires != 0 {
            self.ttl_len += 1;
        }
        self.weight = self.weight - u64::from(old_weight) + u64::from(weight);
        let list = &mut self.lists[queue as usize];
        list.weight = list.weight - u64::from(old_weight) + u64::from(weight);
        let n = self.node_mut(idx);
        n.value = value;
        n.weight = weight;
        self.set_expires(idx, expires);
        if let Some(tags) = tags {
            self.tag(idx, tags);
        }
    }

    fn insert_new(
        &mut self,
        hash: u64,
        key: K,
        value: V,
        weight: u32,
        expires: u64,
        tags: Option<Box<[Arc<str>]>>,
    ) -> u32 {
        let node = Node {
            key,
            value,
            prev: NIL,
            next: NIL,
            weight,
            queue: 0,
            freq: 0,
            flags: 0,
            live: Live::Yes,
        };
        let idx = match self.free.pop() {
            Some(i) => {
                self.slots[i as usize] = Some(node);
                i
            }
            None => {
                if self.slots.len() == self.slots.capacity() {
                    // Grow by a quarter, not by doubling: the weigher charges a slot plus 25 %.
                    self.slots.reserve_exact(self.slots.len() / 4 + 16);
                }
                self.slots.push(Some(node));
                (self.slots.len() - 1) as u32
            }
        };
        let (slots, hasher) = (&self.slots, &self.hasher);
        self.table.insert_unique(hash, idx, |&i| {
            slots[i as usize]
                .as_ref()
                .map_or(0, |n| hasher.hash_one(&n.key))
        });
        self.len += 1;
        self.weight += u64::from(weight);
        if expires != 0 {
            self.ttl_len += 1;
            self.set_expires(idx, expires);
        }
        if let Some(tags) = tags {
            self.tag(idx, tags);
        }
        self.push_front(idx, 0);
        if let Some(tiny) = self.tiny.as_mut() {
            if self.len > tiny.sketch.entries() && tiny.sketch.entries() < tiny.sketch_limit {
                tiny.sketch.grow();
            }
        }
        self.stats.inserts.inc();
        idx
    }

    fn tag(&mut self, idx: u32, tags: Box<[Arc<str>]>) {
        if tags.is_empty() {
            return;
        }
        let index = self.tags.get_or_insert_with(Box::default);
        for tag in tags.iter() {
            index.by_tag.entry(tag.clone()).or_default().insert(idx);
        }
        index.by_slot.insert(idx, tags);
        self.node_mut(idx).flags |= HAS_TAGS;
    }

    fn untag(&mut self, idx: u32) {
        if self.node(idx).flags & HAS_TAGS == 0 {
            return;
        }
        self.node_mut(idx).flags &= !HAS_TAGS;
        let Some(index) = self.tags.as_mut() else {
            return;
        };
        if let Some(tags) = index.by_slot.remove(&idx) {
            for tag in tags.iter() {
                if let Some(set) = index.by_tag.get_mut(tag) {
                    set.remove(&idx);
                    if set.is_empty() {
                        index.by_tag.remove(tag);
                    }
                }
            }
        }
    }

    /// Removes the entry in slot `idx`.
    fn remove_idx(&mut self, idx: u32, cause: Cause) -> Node<K, V> {
        let hash = self.hasher.hash_one(&self.node(idx).key);
        if let Ok(entry) = self.table.find_entry(hash, |&i| i == idx) {
            entry.remove();
        }
        self.untag(idx);
        self.unlink(idx);
        let node = match self.slots[idx as usize].take() {
            Some(n) => n,
            None => unreachable!("removing an empty slot"),
        };
        self.free.push(idx);
        self.len -= 1;
        self.weight -= u64::from(node.weight);
        if self.expires_of(idx) != 0 {
            self.ttl_len -= 1;
            self.set_expires(idx, 0);
        }
        match cause {
            Cause::Evicted => {
                if let Some(t) = self.tiny.as_mut() {
                    t.ghost.insert(hash, self.len);
                }
                self.stats.evictions.inc()
            }
            Cause::Expired => self.stats.expirations.inc(),
            Cause::Removed => self.stats.removals.inc(),
        }
        node
    }

    /// Removes `key`.
    pub(crate) fn remove<Q>(&mut self, hash: u64, key: &Q) -> Option<V>
    where
        K: Borrow<Q>,
        Q: Hash + Eq + ?Sized,
    {
        let idx = self.find(hash, key)?;
        let node = self.remove_idx(idx, Cause::Removed);
        self.publish();
        Some(node.value)
    }

    /// Removes every entry carrying `tag`; returns how many.
    pub(crate) fn invalidate_tag(&mut self, tag: &str) -> usize {
        let Some(slots) = self.tags.as_mut().and_then(|t| t.by_tag.remove(tag)) else {
            return 0;
        };
        let n = slots.len();
        for idx in slots {
            if self.slots[idx as usize].is_some() {
                self.remove_idx(idx, Cause::Removed);
            }
        }
        self.publish();
        n
    }

    /// Checks up to `n` slots under the sweeping hand and removes the expired ones: expired
    /// entries that nobody reads are reclaimed at O(1) cost per write.
    fn sweep(&mut self, now: u64, n: usize) {
        if self.ttl_len == 0 || self.slots.is_empty() {
            return;
        }
        for _ in 0..n {
            if self.hand as usize >= self.slots.len() {
                self.hand = 0;
            }
            let idx = self.hand;
            self.hand += 1;
            let expires = self.expires_of(idx);
            if expires != 0 && expires <= now && self.slots[idx as usize].is_some() {
                self.remove_idx(idx, Cause::Expired);
            }
        }
    }

    /// Removes every expired entry (O(entries of this shard)); returns how many.
    pub(crate) fn purge_expired(&mut self, now: u64) -> usize {
        if self.ttl_len == 0 {
            return 0;
        }
        let expired: Vec<u32> = self
            .expires
            .iter()
            .enumerate()
            .filter(|&(i, &e)| e != 0 && e <= now && self.slots[i].is_some())
            .map(|(i, _)| i as u32)
            .collect();
        for &idx in &expired {
            self.remove_idx(idx, Cause::Expired);
        }
        self.publish();
        expired.len()
    }

    /// Drops every entry.
    pub(crate) fn clear(&mut self) {
        let n = self.len as u64;
        self.table.clear();
        self.slots.clear();
        self.expires = Vec::new();
        self.free.clear();
        self.lists = [List::default(); LFU_LEVELS];
        self.tags = None;
        self.len = 0;
        self.weight = 0;
        self.ttl_len = 0;
        self.hand = 0;
        self.stats.removals.add(n);
        self.publish();
    }

    /// Publishes the shard's size to its gauges (always within the budget: called after
    /// eviction).
    fn publish(&self) {
        self.stats.bytes.set(self.weight);
        self.stats.entries.set(self.len as u64);
    }

    /// Visits every live entry, queues in eviction order and coldest first within each, with
    /// its frequency (TinyLFU's sketch estimate, or LFU's level) and tags.
    pub(crate) fn for_each_cold_first(
        &self,
        now: u64,
        mut f: impl FnMut(&Node<K, V>, u64, u8, &[Arc<str>]),
    ) {
        let order: Vec<u8> = match self.policy {
            Policy::Lru | Policy::Fifo => vec![0],
            Policy::Lfu => (0..LFU_LEVELS as u8).collect(),
            Policy::TinyLfu => vec![PROBATION, PROTECTED, WINDOW],
        };
        for q in order {
            let mut idx = self.lists[q as usize].tail;
            while idx != NIL {
                let n = self.node(idx);
                let expires = self.expires_of(idx);
                if expires == 0 || expires > now {
                    let freq = match &self.tiny {
                        Some(t) => t.sketch.frequency(self.hasher.hash_one(&n.key)),
                        None => n.freq,
                    };
                    let tags = self
                        .tags
                        .as_ref()
                        .and_then(|t| t.by_slot.get(&idx))
                        .map_or(&[][..], |t| &t[..]);
                    f(n, expires, freq, tags);
                }
                idx = n.prev;
            }
        }
    }

    /// Restores policy placement for a freshly inserted key (snapshot restore): its queue and
    /// frequency level.
    pub(crate) fn place(&mut self, hash: u64, key: &K, queue: u8, freq: u8) {
        let Some(idx) = self.find(hash, key) else {
            return;
        };
        match self.policy {
            Policy::Lfu => {
                let level = freq.min(LFU_LEVELS as u8 - 1);
                self.node_mut(idx).freq = level;
                self.move_front(idx, level);
            }
            Policy::TinyLfu if queue == PROBATION || queue == PROTECTED => {
                self.move_front(idx, queue);
                if let Some(tiny) = self.tiny.as_mut() {
                    for _ in 0..freq.min(15) {
                        tiny.sketch.increment(hash);
                    }
                }
                self.demote_protected();
            }
            _ => {}
        }
    }

    /// What this shard has learned, if it adapts (TinyLFU with simulations).
    pub(crate) fn adaptation(&self) -> Option<Adaptation> {
        let tiny = self.tiny.as_ref()?;
        let minis = tiny.minis.as_ref()?;
        Some(Adaptation {
            shape: u8::try_from(minis.current).unwrap_or(0),
            hits: minis.hits,
            filled: tiny.filled,
            hedging: minis.hedging,
        })
    }

    /// Takes back what a shard of the same configuration had learned (snapshot restore):
    /// its shape and the simulations' counts; a shard that had filled does not hedge again
    /// when it next evicts. The simulations themselves start empty. Returns `false`, and
    /// changes nothing, if this shard does not adapt or `learned` is not valid.
    pub(crate) fn adapt_to(&mut self, learned: &Adaptation) -> bool {
        let max_weight = self.max_weight;
        let Some(tiny) = self.tiny.as_mut() else {
            return false;
        };
        let Some(minis) = tiny.minis.as_mut() else {
            return false;
        };
        let current = usize::from(learned.shape);
        if current >= SHAPES.len() || learned.hits.iter().any(|h| !(h.is_finite() && *h >= 0.0)) {
            return false;
        }
        minis.current = current;
        minis.hits = learned.hits;
        if learned.filled {
            tiny.filled = true;
            minis.filled_at = Some(minis.total);
            // Judged a period after the restart, on the counts it brought.
            minis.hedging = learned.hedging;
        }
        tiny.set_shape(SHAPES[current], max_weight);
        // A cache restored into while it holds entries: bring the queues within the shape.
        self.maintain(NIL);
        self.publish();
        true
    }

    /// The current window size of TinyLFU (for tests and diagnostics).
    pub(crate) fn window_max(&self) -> Option<u64> {
        self.tiny.as_ref().map(|t| t.window_max)
    }

    /// The sketch estimate of `hash`'s frequency (TinyLFU only).
    pub(crate) fn frequency(&self, hash: u64) -> u8 {
        self.tiny.as_ref().map_or(0, |t| t.sketch.frequency(hash))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A fixed-shape TinyLFU shard of `capacity` unit entries with a reproducible hasher.
    fn fixed(window: f64, capacity: u64) -> Shard<u64, ()> {
        Shard::new_fixed(shape(window, 0.8), capacity, crate::l1::hasher::seeded(7))
    }

    /// "get, and insert on a miss", as a cache in front of a loader is driven.
    fn access(shard: &mut Shard<u64, ()>, key: u64) -> bool {
        let hash = shard.hasher.hash_one(key);
        if shard.get_entry(hash, &key, || 1, |_| ()).is_some() {
            return true;
        }
        shard.insert(hash, key, (), 1, 0, None, || 1);
        false
    }

    fn contains(shard: &Shard<u64, ()>, key: u64) -> bool {
        let hash = shard.hasher.hash_one(key);
        shard.peek(hash, &key, 1).is_some()
    }

    /// Feeds the simulations one fresh key at the end of a period, with `hits` as the
    /// candidates' counts so far; returns the shape they switch to, if any.
    fn decide(hits: [f64; SHAPES.len()]) -> Option<Shape> {
        let hasher = crate::l1::hasher::seeded(7);
        let Some(mut minis) = Minis::new(512, &hasher) else {
            panic!("a 512-entry shard adapts");
        };
        minis.hits = hits;
        // 512 entries are simulated unsampled, with a decision every 128 gets.
        minis.sampled = 127;
        minis.observe(hasher.hash_one(u64::MAX), 512, true)
    }

    #[test]
    fn a_lead_of_a_few_hits_does_not_switch_the_shape() {
        // 30 hits to none is far above 5 %, but within the noise of small counts.
        assert_eq!(decide([0.0, 30.0, 0.0, 0.0, 0.0]), None);
        assert_eq!(decide([0.0, 40.0, 0.0, 0.0, 0.0]), Some(SHAPES[1]));
        // Large counts: the 5 % hysteresis is the bar.
        assert_eq!(decide([1000.0, 1040.0, 0.0, 0.0, 0.0]), None);
        assert_eq!(decide([1000.0, 1060.0, 0.0, 0.0, 0.0]), Some(SHAPES[1]));
    }

    #[test]
    fn nothing_switches_the_shape_before_the_shard_fills() {
        let hasher = crate::l1::hasher::seeded(7);
        let Some(mut minis) = Minis::new(512, &hasher) else {
            panic!("a 512-entry shard adapts");
        };
        let key = hasher.hash_one(u64::MAX);
        minis.hits = [0.0, 1000.0, 0.0, 0.0, 0.0];
        minis.sampled = 127;
        assert_eq!(minis.observe(key, 512, false), None, "not filled yet");
        minis.sampled = 127;
        assert_eq!(minis.observe(key, 512, true), Some(SHAPES[1]));
    }

    /// The simulations of a shard whose budget is 2^20 (sampled one key in 64, 1024 entries
    /// each), told at a sampled get that the shard has filled with `live` entries.
    fn filled_minis(live: usize) -> (Box<Minis>, Option<Shape>) {
        let hasher = crate::l1::hasher::seeded(7);
        let Some(mut minis) = Minis::new(1 << 20, &hasher) else {
            panic!("a large shard adapts");
        };
        assert_eq!(
            minis.current, SMALL_WINDOW,
            "every shard starts at the 1 % window"
        );
        // The shard fills halfway through a period. Bits 40..46 clear: sampled at one key in 64.
        minis.sampled = 128;
        let decision = minis.observe(SAMPLED, live, true);
        (minis, decision)
    }

    const SAMPLED: u64 = 12_345;

    /// Runs to the end of the current period (as if the sampled gets missing had come) with
    /// `hits` so far; what the simulations decide. 16384 live entries keep the simulations at
    /// their 1024 entries (no resize).
    fn end_period(minis: &mut Minis, hits: [f64; SHAPES.len()]) -> Option<Shape> {
        let skipped = minis.caches[0].max_weight / PERIOD_DIVISOR - 1 - minis.sampled;
        minis.sampled += skipped;
        minis.total += skipped;
        minis.hits = hits;
        minis.observe(SAMPLED, 16_384, true)
    }

    /// A shard that filled with 16384 entries and has hedged for a period: what it decides
    /// at the end of the next period with `hits` so far.
    fn judge_the_hedge(hits: [f64; SHAPES.len()]) -> (Option<Shape>, Box<Minis>) {
        let (mut minis, decision) = filled_minis(16_384);
        assert_eq!(SHAPES[HALF_WINDOW].window, 0.5);
        assert_eq!(
            decision,
            Some(SHAPES[HALF_WINDOW]),
            "it hedges when it fills"
        );
        assert!(minis.hedging);
        assert_eq!(end_period(&mut minis, [100.0; SHAPES.len()]), None);
        let decision = end_period(&mut minis, hits);
        (decision, minis)
    }

    #[test]
    fn a_large_shard_hedges_when_it_fills_and_a_small_one_does_not() {
        let (minis, decision) = filled_minis(16_384);
        assert_eq!(decision, Some(SHAPES[HALF_WINDOW]));
        assert_eq!((minis.current, minis.hedging), (HALF_WINDOW, true));
        // A byte-weighted shard sampled at the same rate that fills with fewer entries.
        let (minis, decision) = filled_minis(16_383);
        assert_eq!(decision, None);
        assert_eq!((minis.current, minis.hedging), (SMALL_WINDOW, false));
        // A shard sampled at a higher rate, even with 16384 entries (an entry bound of 8000
        // and a weigher of zero would allow it).
        let hasher = crate::l1::hasher::seeded(7);
        let Some(mut minis) = Minis::new(8_000, &hasher) else {
            panic!("an 8000-entry shard adapts");
        };
        // 8000 entries are sampled one key in 16: bits 40..44 clear.
        assert_eq!(minis.observe(SAMPLED, 16_384, true), None);
        assert!(!minis.hedging);
        // Before the fill, nothing.
        let hasher = crate::l1::hasher::seeded(7);
        let Some(mut minis) = Minis::new(1 << 20, &hasher) else {
            panic!("a large shard adapts");
        };
        assert_eq!(minis.observe(SAMPLED, 16_384, false), None);
        assert_eq!((minis.current, minis.hedging), (SMALL_WINDOW, false));
    }

    #[test]
    fn the_half_window_stays_only_if_it_proves_itself_a_period_after_the_fill() {
        // Less than a period after the fill there is no judgement (and no lead of 32 for
        // the regular rule): the shard still hedges.
        let (mut minis, _) = filled_minis(16_384);
        assert_eq!(
            end_period(&mut minis, [130.0, 100.0, 100.0, 100.0, 100.0]),
            None
        );
        assert!(minis.hedging);
        // A period later the same counts send it back to the 1 % window.
        assert_eq!(
            end_period(&mut minis, [130.0, 100.0, 100.0, 100.0, 100.0]),
            Some(SHAPES[SMALL_WINDOW])
        );
        assert!(!minis.hedging);
        // The half window leads everything and the 1 % window by 40 hits: it stays, and from
        // now on only the regular rule moves the shard.
        let (decision, mut minis) = judge_the_hedge([100.0, 100.0, 100.0, 140.0, 100.0]);
        assert_eq!(decision, None);
        assert_eq!((minis.current, minis.hedging), (HALF_WINDOW, false));
        assert_eq!(
            end_period(&mut minis, [140.0, 100.0, 100.0, 139.0, 100.0]),
            None,
            "1 hit is no lead"
        );
        assert_eq!(
            end_period(&mut minis, [1000.0, 100.0, 100.0, 940.0, 100.0]),
            Some(SHAPES[SMALL_WINDOW]),
            "the regular rule"
        );
        // Best by less than the 32-hit floor: back to the 1 % window.
        let (decision, _) = judge_the_hedge([100.0, 100.0, 100.0, 120.0, 100.0]);
        assert_eq!(decision, Some(SHAPES[SMALL_WINDOW]));
        // Not the best, by 3 % (under the hysteresis): back to the 1 % window.
        let (decision, minis) = judge_the_hedge([1030.0, 100.0, 100.0, 1000.0, 100.0]);
        assert_eq!(decision, Some(SHAPES[SMALL_WINDOW]));
        assert_eq!(minis.current, SMALL_WINDOW);
        // A larger window leads: back to the 1 % window too.
        let (decision, _) = judge_the_hedge([100.0, 100.0, 100.0, 140.0, 200.0]);
        assert_eq!(decision, Some(SHAPES[SMALL_WINDOW]));
    }

    /// Drives a TinyLFU shard of `capacity` unit entries with `keys`; returns the window
    /// sizes it went through. Checks that the window changes only once the shard has filled
    /// and that the hedge has been judged by the end.
    fn windows_of_a_large_shard(capacity: u64, keys: impl Iterator<Item = u64>) -> Vec<u64> {
        let mut shard: Shard<u64, ()> = Shard::new(
            Policy::TinyLfu,
            capacity,
            usize::MAX,
            crate::l1::hasher::seeded(7),
        );
        let window = |s: &Shard<u64, ()>| s.window_max().unwrap_or(0);
        let state = |s: &Shard<u64, ()>| {
            s.tiny.as_ref().map_or((false, false), |t| {
                (t.filled, t.minis.as_ref().is_some_and(|m| m.hedging))
            })
        };
        let mut windows = vec![window(&shard)];
        for key in keys {
            access(&mut shard, key);
            if windows.last() != Some(&window(&shard)) {
                assert!(
                    state(&shard).0,
                    "the window changed before the shard filled"
                );
                windows.push(window(&shard));
            }
        }
        assert_eq!(state(&shard), (true, false), "filled, and the hedge judged");
        windows
    }

    #[test]
    fn a_large_shard_hedges_with_the_half_window_until_the_simulations_judge_it() {
        let mut x = 0x9E37_79B9_7F4A_7C15_u64;
        let mut next = move || {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x
        };
        // Skewed re-reads of 100k keys: frequency pays, the half window gives way to 1 %.
        let skewed: Vec<u64> = (0..400_000)
            .map(|_| {
                let r = next();
                (r % 100_000).min((r >> 32) % 100_000)
            })
            .collect();
        assert_eq!(
            windows_of_a_large_shard(16_384, skewed.into_iter()),
            [163, 8_192, 163]
        );
        // Half the requests are new keys, three in ten re-read a key that arrived 5,000 to
        // 15,000 new keys ago (within the half window, beyond the 20 % one), two in ten read
        // a hot set of 20,000 (which needs the half window's main space): the half window
        // proves itself, in a shard large enough for its simulations to build a lead of 32
        // hits within a period (256 sampled gets).
        let mut fresh = 0u64;
        let recent: Vec<u64> = (0..400_000)
            .map(|_| {
                let r = next();
                match r % 10 {
                    0..=4 => {
                        fresh += 1;
                        fresh
                    }
                    5..=7 => fresh.saturating_sub(5_000 + (r >> 32) % 10_000),
                    _ => (1 << 40) + (r >> 32) % 20_000,
                }
            })
            .collect();
        assert_eq!(
            windows_of_a_large_shard(65_536, recent.into_iter()),
            [655, 32_768]
        );
    }

    #[test]
    fn a_shard_takes_back_only_a_valid_adaptation() {
        let shard = || -> Shard<u64, ()> {
            Shard::new(
                Policy::TinyLfu,
                4_096,
                usize::MAX,
                crate::l1::hasher::seeded(7),
            )
        };
        let learned = Adaptation {
            shape: 2,
            hits: [1.0, 2.0, 90.0, 3.0, 4.0],
            filled: true,
            hedging: false,
        };
        let mut fresh = shard();
        assert_eq!(fresh.window_max(), Some(40));
        assert!(fresh.adapt_to(&learned));
        assert_eq!(fresh.window_max(), Some(819), "the 20 % window");
        assert_eq!(fresh.adaptation(), Some(learned));
        for bad in [
            Adaptation {
                shape: 5,
                ..learned
            },
            Adaptation {
                hits: [f64::NAN; 5],
                ..learned
            },
            Adaptation {
                hits: [-1.0; 5],
                ..learned
            },
        ] {
            let mut fresh = shard();
            let before = fresh.adaptation();
            assert!(!fresh.adapt_to(&bad));
            assert_eq!(fresh.adaptation(), before);
            assert_eq!(fresh.window_max(), Some(40));
        }
        // A shard too small to adapt has nothing to take back.
        let mut small: Shard<u64, ()> = Shard::new(
            Policy::TinyLfu,
            32,
            usize::MAX,
            crate::l1::hasher::seeded(7),
        );
        assert_eq!(small.adaptation(), None);
        assert!(!small.adapt_to(&learned));
    }

    #[test]
    fn an_entry_used_in_the_window_joins_the_main_space_without_a_duel() {
        // 80 hot keys read ten times each fill the main space (80 of 100 with a 20 % window),
        // so the sketch rates every victim high.
        let mut shard = fixed(0.2, 100);
        for _ in 0..10 {
            for key in 0..80 {
                access(&mut shard, key);
            }
        }
        let one_off = |shard: &mut Shard<u64, ()>, keys: std::ops::Range<u64>| {
            for key in keys {
                access(shard, key);
            }
        };
        one_off(&mut shard, 1_000..1_100);
        // A newcomer read twice, then pushed through the 20-entry window by 100 one-off keys:
        // the old rule recycled a used entry in the window once, then made it duel a hot
        // victim, which it lost (two reads against ten).
        access(&mut shard, 5_000);
        assert!(access(&mut shard, 5_000), "a hit in the window");
        one_off(&mut shard, 2_000..2_100);
        assert!(
            contains(&shard, 5_000),
            "the used newcomer joined probation instead of duelling a hot victim"
        );
        // One-off keys duel and almost all lose: what stays is the window's 20 and the odd
        // sketch collision.
        let one_offs = (1_000..1_100)
            .chain(2_000..2_100)
            .filter(|&k| contains(&shard, k))
            .count();
        assert!(one_offs <= 25, "{one_offs} one-off keys stayed");
        let hot = (0..80).filter(|&k| contains(&shard, k)).count();
        assert!(hot >= 75, "only {hot} of 80 hot keys stayed");
        assert!(shard.weight() <= 100);
    }

    #[test]
    fn the_sketch_keeps_its_counts_when_it_grows() {
        // The sketch starts sized for 1024 entries and grows as the shard fills past that.
        let mut shard: Shard<u64, ()> = Shard::new(
            Policy::TinyLfu,
            4096,
            usize::MAX,
            crate::l1::hasher::seeded(7),
        );
        for _ in 0..6 {
            for key in 0..50 {
                access(&mut shard, key);
            }
        }
        for key in 1_000..3_000 {
            access(&mut shard, key);
        }
        let entries = shard.tiny.as_ref().map_or(0, |t| t.sketch.entries());
        assert!(entries >= 2048, "the sketch grew to {entries} entries");
        for key in 0..50 {
            let seen = shard.frequency(shard.hasher.hash_one(key));
            assert!(seen >= 6, "key {key} read six times is estimated at {seen}");
        }
    }

    #[test]
    fn a_round_leaves_no_candidate_flag_behind() {
        let mut shard = fixed(0.2, 64);
        for i in 0..5_000u64 {
            access(&mut shard, i % 97);
            access(&mut shard, 10_000 + i);
        }
        let flagged = shard
            .slots
            .iter()
            .flatten()
            .filter(|n| n.flags & CANDIDATE != 0)
            .count();
        assert_eq!(flagged, 0);
        assert!(shard.len() <= 64);
    }
}
