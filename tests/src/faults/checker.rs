//! A linearizability checker for one register: the Wing–Gong search with Lowe's memoization
//! (the algorithm of Knossos and Porcupine), written for the histories the fault suite records.
//!
//! The model is a register holding one value: `Read` returns it, `Write` replaces it, `Cas`
//! replaces it only if it holds `expected` (and, when the call was rejected, observes that it
//! did not). A history is a set of calls, each with the time it was invoked and, when it
//! returned, the time it returned. It is linearizable when every returned call can be given one
//! point between its invocation and its return so that the calls, in the order of their
//! points, are a legal run of the register from its initial value.
//!
//! A call without a return (`complete == None`, an *indeterminate* call: a timeout, or
//! UNAVAILABLE after the request may have reached the leader) may take effect at any point
//! after its invocation, or never. Indeterminate reads have no effect and are dropped.
//!
//! The search is bounded: it remembers every (set of linearized calls, register value) it has
//! seen, and gives up with [`Verdict::Unknown`] once that memo holds `max_states` entries, so
//! a pathological history fails a test clearly instead of hanging it.

use std::collections::{HashMap, HashSet};
use std::fmt::Debug;
use std::hash::Hash;

/// What a call did to, or saw of, the register.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RegOp<V> {
    /// Returned the value (`None`: the register held nothing, e.g. the org was not found).
    Read(Option<V>),
    /// Replaced the value.
    Write(V),
    /// Replaced `expected` by `new`; `applied` is false when the call returned a rejection
    /// (the register did not hold `expected` at the call's point). For an indeterminate call
    /// `applied` is ignored: it may have applied, or not taken effect at all.
    Cas { expected: V, new: V, applied: bool },
}

/// One call of a history.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Call<V> {
    /// When the call was invoked, in any monotonic unit shared by the whole history.
    pub invoke: u64,
    /// When it returned; `None` for an indeterminate call.
    pub complete: Option<u64>,
    pub op: RegOp<V>,
    /// The caller's name for the call, quoted in explanations (e.g. its index in the history).
    pub label: String,
}

/// Bounds on the search.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// The most (linearized set, value) states remembered before giving up.
    pub max_states: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits { max_states: 2_000_000 }
    }
}

/// The checker's answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// A linearization exists; `states` is how many search states it took.
    Linearizable { states: usize },
    /// No linearization exists; the text says where the search got stuck.
    Violation(String),
    /// The search hit its bound before deciding.
    Unknown(String),
}

impl Verdict {
    pub fn is_linearizable(&self) -> bool {
        matches!(self, Verdict::Linearizable { .. })
    }
}

/// An interned register value; `NONE` stands for "no value".
type Val = u32;
const NONE: Val = u32::MAX;

#[derive(Debug, Clone, Copy)]
enum Step {
    Read(Val),
    Write(Val),
    Cas { expected: Val, new: Val, applied: bool },
}

impl Step {
    /// The register after this step from `state`, or `None` if the step is illegal there.
    fn apply(self, state: Val) -> Option<Val> {
        match self {
            Step::Read(v) => (v == state).then_some(state),
            Step::Write(v) => Some(v),
            Step::Cas { expected, new, applied: true } => (state == expected).then_some(new),
            Step::Cas { expected, applied: false, .. } => (state != expected).then_some(state),
        }
    }
}

/// Checks that `calls` is a linearizable history of a register that starts with `initial`.
pub fn check<V: Clone + Eq + Hash + Debug>(initial: Option<V>, calls: &[Call<V>], limits: Limits) -> Verdict {
    // Intern values so that states are small and cheap to hash.
    let mut ids: HashMap<V, Val> = HashMap::new();
    let mut names: Vec<V> = Vec::new();
    let mut intern = |v: &V| -> Val {
        *ids.entry(v.clone()).or_insert_with(|| {
            names.push(v.clone());
            (names.len() - 1) as Val
        })
    };
    let init = initial.as_ref().map(&mut intern).unwrap_or(NONE);
    let mut steps: Vec<(usize, Step)> = Vec::new();
    for (i, c) in calls.iter().enumerate() {
        let step = match &c.op {
            // An indeterminate read has no effect and constrains nothing.
            RegOp::Read(_) if c.complete.is_none() => continue,
            RegOp::Read(v) => Step::Read(v.as_ref().map(&mut intern).unwrap_or(NONE)),
            RegOp::Write(v) => Step::Write(intern(v)),
            RegOp::Cas { expected, new, applied } => {
                Step::Cas { expected: intern(expected), new: intern(new), applied: *applied || c.complete.is_none() }
            }
        };
        steps.push((i, step));
    }
    let describe = |v: Val| -> String {
        if v == NONE {
            "nothing".to_string()
        } else {
            format!("{:?}", names[v as usize])
        }
    };

    // A read of a value nobody wrote (and that was not there from the start) can never be
    // linearized: say so plainly rather than through the search.
    let written: HashSet<Val> = steps
        .iter()
        .filter_map(|(_, s)| match s {
            Step::Write(v) => Some(*v),
            Step::Cas { new, applied: true, .. } => Some(*new),
            _ => None,
        })
        .chain(std::iter::once(init))
        .collect();
    for (i, s) in &steps {
        if let Step::Read(v) = s {
            if !written.contains(v) {
                return Verdict::Violation(format!(
                    "read of a never-written value: call {} read {} (initial value {})",
                    calls[*i].label,
                    describe(*v),
                    describe(init)
                ));
            }
        }
    }

    // An indeterminate write of a value no call ever observes only moves the register to a
    // value nobody reads; leaving it out never turns a linearizable history into a violation
    // unless a rejected cas needs the register to differ from its expected value. Without
    // rejected cas calls such writes are dropped, which keeps the search small.
    let has_rejected_cas = steps.iter().any(|(_, s)| matches!(s, Step::Cas { applied: false, .. }));
    if !has_rejected_cas {
        let observed: HashSet<Val> = steps
            .iter()
            .filter_map(|(_, s)| match s {
                Step::Read(v) => Some(*v),
                Step::Cas { expected, .. } => Some(*expected),
                Step::Write(_) => None,
            })
            .collect();
        steps.retain(|(i, s)| {
            let unobserved_effect = match s {
                Step::Write(v) | Step::Cas { new: v, .. } => !observed.contains(v),
                Step::Read(_) => false,
            };
            !(calls[*i].complete.is_none() && unobserved_effect)
        });
    }

    Search::new(calls, &steps, init, limits).run(&describe)
}

const NIL: usize = usize::MAX;

/// The search's event list (dancing links): entry 0 is the head; every call has an invoke
/// entry, and a return entry when it returned.
struct Search<'a, V> {
    calls: &'a [Call<V>],
    steps: &'a [(usize, Step)],
    init: Val,
    limits: Limits,
    prev: Vec<usize>,
    next: Vec<usize>,
    /// For each entry: the step it belongs to, and whether it is the invoke entry.
    step_of: Vec<usize>,
    is_invoke: Vec<bool>,
    /// For each step: its return entry, or NIL when indeterminate.
    ret_entry: Vec<usize>,
    invoke_entry: Vec<usize>,
}

impl<'a, V: Debug> Search<'a, V> {
    fn new(calls: &'a [Call<V>], steps: &'a [(usize, Step)], init: Val, limits: Limits) -> Self {
        // Invokes sort before returns at equal times: calls that touch are concurrent, which can
        // only make the checker more lenient, never report a violation that is not there.
        let mut events: Vec<(u64, u8, usize)> = Vec::with_capacity(steps.len() * 2);
        for (s, (i, _)) in steps.iter().enumerate() {
            let c = &calls[*i];
            events.push((c.invoke, 0, s));
            if let Some(done) = c.complete {
                events.push((done.max(c.invoke), 1, s));
            }
        }
        events.sort();
        let n = events.len() + 1;
        let mut search = Search {
            calls,
            steps,
            init,
            limits,
            prev: (0..n).map(|e| e.wrapping_sub(1)).collect(),
            next: (1..=n).map(|e| if e == n { NIL } else { e }).collect(),
            step_of: vec![NIL; n],
            is_invoke: vec![false; n],
            ret_entry: vec![NIL; steps.len()],
            invoke_entry: vec![NIL; steps.len()],
        };
        search.prev[0] = NIL;
        for (k, (_, kind, s)) in events.iter().enumerate() {
            let e = k + 1;
            search.step_of[e] = *s;
            search.is_invoke[e] = *kind == 0;
            if *kind == 0 {
                search.invoke_entry[*s] = e;
            } else {
                search.ret_entry[*s] = e;
            }
        }
        search
    }

    fn unlink(&mut self, e: usize) {
        let (p, n) = (self.prev[e], self.next[e]);
        self.next[p] = n;
        if n != NIL {
            self.prev[n] = p;
        }
    }

    fn relink(&mut self, e: usize) {
        let (p, n) = (self.prev[e], self.next[e]);
        self.next[p] = e;
        if n != NIL {
            self.prev[n] = e;
        }
    }

    fn lift(&mut self, s: usize) {
        self.unlink(self.invoke_entry[s]);
        if self.ret_entry[s] != NIL {
            self.unlink(self.ret_entry[s]);
        }
    }

    fn unlift(&mut self, s: usize) {
        if self.ret_entry[s] != NIL {
            self.relink(self.ret_entry[s]);
        }
        self.relink(self.invoke_entry[s]);
    }

    fn run(mut self, describe: &dyn Fn(Val) -> String) -> Verdict {
        let words = self.steps.len().div_ceil(64).max(1);
        let mut linearized = vec![0u64; words];
        let mut cache: HashSet<(Box<[u64]>, Val)> = HashSet::new();
        let mut stack: Vec<(usize, Val)> = Vec::new();
        let mut state = self.init;
        let mut returns_left = self.ret_entry.iter().filter(|e| **e != NIL).count();
        // The deepest point the search reached, for the explanation of a violation.
        let mut deepest: Option<(usize, usize, Val)> = None;
        let mut entry = self.next[0];
        while returns_left > 0 {
            if entry != NIL && self.is_invoke[entry] {
                let s = self.step_of[entry];
                if let Some(after) = self.steps[s].1.apply(state) {
                    linearized[s / 64] |= 1 << (s % 64);
                    if cache.insert((linearized.clone().into_boxed_slice(), after)) {
                        if cache.len() > self.limits.max_states {
                            return Verdict::Unknown(format!(
                                "search bound hit: {} states remembered (max_states {}), {} of {} calls linearized; \
                                 the history is too concurrent or has too many indeterminate calls",
                                cache.len(),
                                self.limits.max_states,
                                stack.len() + 1,
                                self.steps.len()
                            ));
                        }
                        stack.push((s, state));
                        state = after;
                        if self.ret_entry[s] != NIL {
                            returns_left -= 1;
                        }
                        self.lift(s);
                        entry = self.next[0];
                        continue;
                    }
                    linearized[s / 64] &= !(1 << (s % 64));
                }
                entry = self.next[entry];
            } else {
                // A call returned before it could be linearized: undo the last choice.
                if entry != NIL && deepest.is_none_or(|(depth, _, _)| stack.len() > depth) {
                    deepest = Some((stack.len(), self.step_of[entry], state));
                }
                let Some((s, before)) = stack.pop() else {
                    return Verdict::Violation(self.explain(deepest, describe));
                };
                linearized[s / 64] &= !(1 << (s % 64));
                state = before;
                if self.ret_entry[s] != NIL {
                    returns_left += 1;
                }
                self.unlift(s);
                entry = self.next[self.invoke_entry[s]];
            }
        }
        Verdict::Linearizable { states: cache.len() }
    }

    fn explain(&self, deepest: Option<(usize, usize, Val)>, describe: &dyn Fn(Val) -> String) -> String {
        let Some((depth, s, state)) = deepest else {
            return "no linearization exists".to_string();
        };
        let call = &self.calls[self.steps[s].0];
        let what = match &self.steps[s].1 {
            Step::Read(v) => format!("read {}", describe(*v)),
            Step::Write(v) => format!("write {}", describe(*v)),
            Step::Cas { expected, new, applied: true } => format!("cas {} -> {}", describe(*expected), describe(*new)),
            Step::Cas { expected, applied: false, .. } => format!("cas rejected (expected {})", describe(*expected)),
        };
        format!(
            "no linearization: at best {depth} of {} calls linearized, then call {} ({what}, invoked {}, returned {}) \
             could not be placed; the register held {}",
            self.steps.len(),
            call.label,
            call.invoke,
            call.complete.map_or("never".to_string(), |c| c.to_string()),
            describe(state)
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::faults::rng::Rng;

    fn ok(invoke: u64, complete: u64, op: RegOp<u32>) -> Call<u32> {
        Call { invoke, complete: Some(complete), op, label: format!("[{invoke},{complete}]") }
    }

    fn info(invoke: u64, op: RegOp<u32>) -> Call<u32> {
        Call { invoke, complete: None, op, label: format!("[{invoke},?]") }
    }

    fn w(v: u32) -> RegOp<u32> {
        RegOp::Write(v)
    }

    fn r(v: u32) -> RegOp<u32> {
        RegOp::Read(Some(v))
    }

    fn cas(expected: u32, new: u32, applied: bool) -> RegOp<u32> {
        RegOp::Cas { expected, new, applied }
    }

    /// The data-driven helper: `history` from initial value 0 is (or is not) linearizable.
    fn check_case(name: &str, history: Vec<Call<u32>>, linearizable: bool) {
        let verdict = check(Some(0), &history, Limits::default());
        match (&verdict, linearizable) {
            (Verdict::Linearizable { .. }, true) | (Verdict::Violation(_), false) => {}
            _ => panic!("{name}: expected linearizable={linearizable}, got {verdict:?} for {history:?}"),
        }
    }

    #[test]
    fn known_good_histories() {
        check_case("empty", vec![], true);
        check_case("sequential", vec![ok(0, 1, w(1)), ok(2, 3, r(1)), ok(4, 5, w(2)), ok(6, 7, r(2))], true);
        check_case("initial value read", vec![ok(0, 1, r(0)), ok(2, 3, w(1))], true);
        check_case("read overlapping a write sees the old value", vec![ok(0, 10, w(1)), ok(2, 3, r(0))], true);
        check_case("read overlapping a write sees the new value", vec![ok(0, 10, w(1)), ok(2, 3, r(1))], true);
        check_case(
            "two overlapping reads around a slow write, old then new",
            vec![ok(0, 100, w(1)), ok(10, 20, r(0)), ok(30, 40, r(1))],
            true,
        );
        check_case(
            "concurrent writes in either order",
            vec![ok(0, 50, w(1)), ok(10, 60, w(2)), ok(70, 80, r(1))],
            true,
        );
        check_case(
            "concurrent writes in the other order",
            vec![ok(0, 50, w(1)), ok(10, 60, w(2)), ok(70, 80, r(2))],
            true,
        );
        check_case("touching calls are concurrent", vec![ok(0, 10, w(1)), ok(10, 20, r(0))], true);
        check_case("cas applied", vec![ok(0, 1, r(0)), ok(2, 3, cas(0, 5, true)), ok(4, 5, r(5))], true);
        check_case(
            "cas rejected after a concurrent write",
            vec![ok(0, 10, w(1)), ok(2, 12, cas(0, 5, false)), ok(13, 14, r(1))],
            true,
        );
    }

    #[test]
    fn known_bad_histories() {
        check_case("stale read", vec![ok(0, 10, w(1)), ok(20, 30, w(2)), ok(40, 50, r(1))], false);
        check_case("lost write", vec![ok(0, 10, w(2)), ok(20, 30, r(0))], false);
        check_case("read of a never-written value", vec![ok(0, 10, w(1)), ok(20, 30, r(99))], false);
        check_case(
            "new then old during one slow write (read inversion)",
            vec![ok(0, 100, w(1)), ok(10, 20, r(1)), ok(30, 40, r(0))],
            false,
        );
        check_case(
            "both concurrent writes seen in both orders by later reads",
            vec![ok(0, 50, w(1)), ok(10, 60, w(2)), ok(70, 80, r(1)), ok(90, 95, r(2))],
            false,
        );
        check_case("cas applied on a value it did not hold", vec![ok(0, 1, w(1)), ok(2, 3, cas(0, 5, true))], false);
        check_case("cas rejected although the value matched", vec![ok(0, 1, r(0)), ok(2, 3, cas(0, 5, false))], false);
        check_case("a read sees a write invoked after it returned", vec![ok(0, 10, r(1)), ok(20, 30, w(1))], false);
    }

    #[test]
    fn indeterminate_calls_may_apply_later_or_never() {
        check_case("never applied", vec![info(0, w(1)), ok(10, 20, r(0))], true);
        check_case("applied late", vec![info(0, w(1)), ok(10, 20, r(0)), ok(1000, 1001, r(1))], true);
        check_case(
            "applied, then the register cannot go back",
            vec![info(0, w(1)), ok(10, 20, r(1)), ok(30, 40, r(0))],
            false,
        );
        check_case("seen before it was invoked", vec![ok(0, 10, r(1)), info(20, w(1))], false);
        check_case(
            "an unobserved indeterminate write is harmless",
            vec![info(0, w(7)), ok(5, 6, w(1)), ok(10, 20, r(1))],
            true,
        );
        check_case(
            "an indeterminate write lets a rejected cas be legal",
            vec![info(0, w(7)), ok(10, 20, cas(0, 5, false)), ok(30, 40, r(7))],
            true,
        );
        check_case(
            "an indeterminate cas applies only from its expected value",
            vec![ok(0, 1, w(1)), info(2, cas(0, 5, true)), ok(10, 20, r(5))],
            false,
        );
        check_case(
            "an indeterminate read constrains nothing",
            vec![info(0, r(42)), ok(1, 2, w(1)), ok(3, 4, r(1))],
            true,
        );
        check_case(
            "an acknowledged write after an indeterminate one wins",
            vec![info(0, w(1)), ok(10, 20, w(2)), ok(30, 40, r(1))],
            true,
        );
        check_case(
            "...unless the indeterminate write was seen before the acknowledged one began",
            vec![info(0, w(1)), ok(1, 2, r(1)), ok(10, 20, w(2)), ok(30, 40, r(1))],
            false,
        );
    }

    #[test]
    fn the_bound_fails_clearly() {
        // Many overlapping writes that are all observed in some order explode the search.
        let mut history = Vec::new();
        for v in 1..=12 {
            history.push(info(0, w(v)));
        }
        for v in 1..=12 {
            history.push(ok(100 + 10 * v as u64, 105 + 10 * v as u64, r(13 - v)));
        }
        let verdict = check(Some(0), &history, Limits { max_states: 50 });
        match verdict {
            Verdict::Unknown(why) => assert!(why.contains("search bound hit"), "{why}"),
            other => panic!("expected the bound to be hit, got {other:?}"),
        }
    }

    /// Histories made by a simulated linearizable register (each call takes effect at a random
    /// point inside its interval; some lose their answer) must all pass; and moving one read's
    /// answer to a value that is stale for sure must be caught.
    #[test]
    fn simulated_linearizable_histories_pass_and_a_planted_stale_read_fails() {
        for seed in 0..200u64 {
            let mut rng = Rng::new(seed);
            let clients = 1 + rng.below(4) as usize;
            // Each client: sequential calls (start, point, end) with the effect at `point`.
            let mut planned: Vec<(u64, u64, u64, bool)> = Vec::new();
            for _ in 0..clients {
                let mut t = rng.below(5);
                for _ in 0..(5 + rng.below(10)) {
                    let start = t + 1 + rng.below(5);
                    let end = start + 1 + rng.below(20);
                    let point = start + rng.below(end - start + 1);
                    planned.push((start, point, end, rng.chance(0.1)));
                    t = end;
                }
            }
            // Apply the effects in point order (ties broken by the order of planning).
            let mut order: Vec<usize> = (0..planned.len()).collect();
            order.sort_by_key(|i| (planned[*i].1, *i));
            let mut value = 0u32;
            let mut next_value = 1u32;
            let mut history = vec![None; planned.len()];
            for i in order {
                let (start, _, end, lost) = planned[i];
                let op = match rng.below(3) {
                    0 => r(value),
                    1 => {
                        value = next_value;
                        next_value += 1;
                        w(value)
                    }
                    _ => {
                        let expected = if rng.chance(0.5) { value } else { value + 1000 };
                        let applied = expected == value;
                        let new = next_value;
                        next_value += 1;
                        if applied {
                            value = new;
                        }
                        cas(expected, new, applied)
                    }
                };
                // An indeterminate call must have taken effect (it did here) or be a read.
                let lost = lost && !matches!(op, RegOp::Cas { applied: false, .. });
                history[i] = Some(if lost { info(start, op) } else { ok(start, end, op) });
            }
            let mut history: Vec<Call<u32>> = history.into_iter().map(Option::unwrap).collect();
            let verdict = check(Some(0), &history, Limits::default());
            assert!(verdict.is_linearizable(), "seed {seed}: {verdict:?}\n{history:?}");

            // After everything, a write of a fresh value and then a read of the initial value
            // (which nobody writes again): stale for sure.
            let end = history.iter().filter_map(|c| c.complete).max().unwrap_or(0) + 1;
            history.push(ok(end, end + 1, w(1_000_000)));
            history.push(ok(end + 2, end + 3, r(0)));
            let verdict = check(Some(0), &history, Limits::default());
            assert!(
                matches!(verdict, Verdict::Violation(_)),
                "seed {seed}: planted stale read not caught: {verdict:?}"
            );
        }
    }
}
