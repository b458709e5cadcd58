//! The fast engine for graph models. Per tensor it cuts the graph at the
//! tensor's first consumer `c`, caches the clean values crossing the cut for
//! a chunk of images, and then, per round of samples:
//! - proves (flip, sample) pairs unaffected with the bound of [`bound`]
//!   (|δ|·A < margin, with slack for rounding) and, where pairs are
//!   evaluated densely, with the linear-region certificate of [`linear`]:
//!   those keep their clean outcome;
//! - stacks the remaining pairs of many flips along the batch dimension,
//!   builds `c`'s faulty output from its clean one with a structured delta
//!   ([`delta`]) or by re-running `c` with the flip applied, and runs only
//!   the nodes after `c`;
//! - stops a flip once its erratic verdict is settled (unless `exact_rad`),
//!   surely or, with sequential verdicts, at the stated confidence.
//!
//! Tensors whose cut cannot be gathered row by row use the generic engine.

pub mod bound;
mod candidates;
pub mod delta;
mod linear;
pub mod plan;
pub mod sparse;

use std::cell::{Cell, RefCell};
use std::collections::HashMap;
use std::rc::Rc;

use tch::{Device, Kind, Tensor};

use self::candidates::{Cand, Scalar};
use self::delta::{delta_kind, Delta};
use self::linear::Linear;
use self::plan::{axes, plan, Axis, Plan};
use self::sparse::Sparse;
use super::engine::{with_flip, Ctx, Engine, EngineStats, Outcome};
use super::generic::Generic;
use super::space::{Flip, FlipSpace};
use super::verdict::Tally;
use crate::error::{HartError, Result};
use crate::model::graph::Graph;
use crate::model::{GraphModel, Mode, ParamStore};

/// Memory for the cached values of one chunk of images.
const CACHE_BYTES: i64 = 384 << 20;
/// Memory for the activations of one stacked batch of pairs: small enough
/// that each buffer stays under the allocator's mmap threshold (32 MiB) and
/// is reused rather than faulted in afresh.
const PAIR_BYTES: i64 = 24 << 20;
/// Fewest candidate samples a flip evaluates per round between early-exit checks.
const MIN_ROUND: i64 = 8;
/// Relative safety factor on the bound (its own float rounding).
const BOUND_SAFETY: f64 = 1.0 + 1.0 / 128.0;

type Env = Vec<Option<Tensor>>;
/// (cut node, dense layer of the sparse path, first sample, end sample) of a cached prefix.
type PrefixKey = (usize, Option<usize>, usize, usize);
/// (last node run, images) of a clean pass and the values later nodes read.
type Frontier = (usize, (usize, usize), Env);
/// (cut node, first sample, end sample, fan-in) of the exact-chain test's inputs.
type ColumnsKey = (usize, usize, usize, i64);
/// (cut node, first sample, end sample) of the certificate's clean values.
type SuffixKey = (usize, usize, usize);

struct Cut {
    plan: Plan,
    delta: Delta,
    /// Sensitivity at `c`'s output, when every op after it has a bound rule.
    g: Option<Tensor>,
    /// Channel-sparse evaluation up to the next dense layer, where the graph allows it.
    sparse: Option<Sparse>,
    /// The exact-chain candidate test, for a 2-D linear cut followed by ReLU/clip ops.
    scalar: Option<Scalar>,
    /// The linear-region certificate, where every op after the cut has a linearisation.
    linear: Option<Linear>,
    chunk: usize,
    /// Bytes a prefix keeps per image.
    cached_per_image: i64,
    max_pairs: i64,
}

pub struct Fast<'a> {
    ctx: Ctx<'a>,
    gm: &'a GraphModel,
    ax: Vec<Axis>,
    abs: Option<ParamStore>,
    env1: Option<Vec<Option<Tensor>>>,
    cuts: HashMap<String, Option<Rc<Cut>>>,
    /// The prefixes of the current cut, keyed by their [`PrefixKey`], oldest
    /// first, within [`CACHE_BYTES`] (a whole chunk's fills it; sequential
    /// verdicts' segments share it): consecutive units of one tensor reuse
    /// them instead of re-running the layers before the cut.
    prefixes: RefCell<Vec<(PrefixKey, Rc<Env>)>>,
    /// The values a clean pass past node `.0` on images `.1` still needs
    /// (those read by later nodes): the next prefix on the same images with a
    /// later cut continues from here instead of from the input. Units come
    /// in graph order, so each worker runs about one clean forward per chunk
    /// however many tensors it visits.
    frontier: RefCell<Option<Frontier>>,
    /// The exact-chain test's inputs for the last (cut, chunk, fan-in) it ran on.
    columns: RefCell<Option<(ColumnsKey, Rc<candidates::Columns>)>>,
    /// The clean ReLU and max-pool inputs after the cut of the certificate's
    /// last clean pass, by (cut, first sample, end sample); later cuts on
    /// the same images reuse them.
    suffix_cache: RefCell<Option<(SuffixKey, Rc<Env>)>>,
    /// The last node that reads each value.
    last_use: Vec<usize>,
    stats: Cell<EngineStats>,
    generic: Generic<'a>,
}

fn numel(t: &Option<Tensor>) -> i64 {
    t.as_ref().map_or(0, |t| t.numel() as i64)
}

impl<'a> Fast<'a> {
    pub fn new(ctx: Ctx<'a>, gm: &'a GraphModel) -> Self {
        Fast {
            ctx,
            gm,
            ax: axes(&gm.graph),
            abs: None,
            env1: None,
            cuts: HashMap::new(),
            prefixes: RefCell::new(vec![]),
            frontier: RefCell::new(None),
            columns: RefCell::new(None),
            suffix_cache: RefCell::new(None),
            last_use: last_use(&gm.graph),
            stats: Cell::new(EngineStats::default()),
            generic: Generic { ctx },
        }
    }

    /// Every value of a clean pass on one image: shapes and bound inputs.
    fn env1(&mut self) -> Result<&[Option<Tensor>]> {
        if self.env1.is_none() {
            let (x, _) = self.ctx.images(0, 1)?;
            let mut env: Vec<Option<Tensor>> = (0..self.gm.graph.nodes.len()).map(|_| None).collect();
            let _ = tch::no_grad(|| self.gm.graph.forward_from(&self.gm.params, &x, 0, &mut env, Mode::Eval))?;
            self.env1 = Some(env);
        }
        Ok(self.env1.as_deref().unwrap_or_default())
    }

    fn cut(&mut self, name: &str) -> Result<Option<Rc<Cut>>> {
        if let Some(c) = self.cuts.get(name) {
            return Ok(c.clone());
        }
        let t = std::time::Instant::now();
        let cut = self.build_cut(name)?.map(Rc::new);
        tracing::debug!(tensor = name, seconds = t.elapsed().as_secs_f64(), "cut built");
        if cut.is_none() {
            tracing::info!(tensor = name, "no cut point: generic engine");
        }
        self.cuts.insert(name.to_string(), cut.clone());
        Ok(cut)
    }

    fn build_cut(&mut self, name: &str) -> Result<Option<Cut>> {
        let graph = &self.gm.graph;
        let Some(c) = graph.first_consumer(name) else {
            return Ok(None);
        };
        let Some(plan) = plan(graph, &self.ax, c) else {
            return Ok(None);
        };
        let shape = self.gm.params.get(name)?.size();
        if self.abs.is_none() {
            self.abs = Some(bound::abs_store(&self.gm.params)?);
        }
        self.env1()?;
        let (env1, abs) = (self.env1.as_deref().unwrap_or_default(), self.abs.as_ref());
        let rank = |v: usize| env1[v].as_ref().map_or(0, |t| t.dim());
        let node = &graph.nodes[c];
        let delta = delta_kind(&node.op, &node.inputs, name, rank(c), rank, &shape);
        let g = match (delta.structured(), abs) {
            (true, Some(abs)) => bound::sensitivity(graph, abs, env1, &self.ax, c)?,
            _ => None,
        };
        let mut sparse = sparse::find(graph, &self.ax, c, &delta, rank);
        if let Some(sp) = sparse.as_mut() {
            // `d`'s own input is never needed whole: its change comes from the slice.
            let own = &graph.nodes[sp.d].inputs;
            sp.plan.gather.retain(|v| !own.contains(v));
        }
        // A tangent pass costs about one dense evaluation of a pair: it pays
        // where pairs are evaluated densely, not where the sparse path or the
        // exact-chain test makes them cheap (measured: LeNet-5 and the MLP
        // ran at half speed with it).
        let linear = match (delta.structured(), &sparse) {
            (true, None) => Linear::new(graph, &self.gm.params, &self.ax, c, |v| {
                env1[v].as_ref().map(Tensor::size)
            })?,
            _ => None,
        };
        let kept = keep(&plan, c, sparse.as_ref());
        // The certificate keeps the clean ReLU inputs after the cut per chunk too.
        let suffix = match (&linear, self.ctx.clean.values.is_empty()) {
            (Some(lin), true) => lin.clean_inputs.clone(),
            _ => vec![],
        };
        let cached: i64 = kept.iter().chain(&suffix).map(|&v| numel(&env1[v])).sum::<i64>() * 4;
        let per_pair: i64 = plan
            .gather
            .iter()
            .chain([&c])
            .chain(&plan.after)
            .map(|&v| numel(&env1[v]))
            .sum::<i64>()
            * 4;
        let scalar = match (&g, &sparse, abs) {
            (Some(_), Some(sp), Some(abs)) if rank(c) == 2 => {
                match bound::sensitivity(graph, abs, env1, &self.ax, sp.end(c))? {
                    Some(g_end) => Scalar::new(graph, &sp.chain, &g_end)?,
                    None => None,
                }
            }
            _ => None,
        };
        tracing::debug!(tensor = name, cut = %node.name, ?delta, bound = g.is_some(), sparse = ?sparse.as_ref().map(|s| s.d), scalar = scalar.is_some(), linear = linear.is_some(), "cut");
        Ok(Some(Cut {
            sparse,
            scalar,
            linear,
            chunk: (CACHE_BYTES / cached.max(1)).clamp(1, self.ctx.clean.n as i64) as usize,
            cached_per_image: cached,
            max_pairs: (PAIR_BYTES / per_pair.max(1)).clamp(16, 8192),
            plan,
            delta,
            g,
        }))
    }

    /// Clean values of nodes `0..=c` (`0..=d` with a sparse path) on images
    /// `s0..s1`, keeping what the cut needs.
    fn prefix(&self, cut: &Cut, s0: usize, s1: usize) -> Result<Rc<Env>> {
        let key = (cut.plan.c, cut.sparse.as_ref().map(|sp| sp.d), s0, s1);
        if let Some((_, env)) = self.prefixes.borrow().iter().find(|(k, _)| *k == key) {
            return Ok(env.clone());
        }
        {
            // Free what the new prefix would not fit beside before computing it.
            let mut cache = self.prefixes.borrow_mut();
            cache.retain(|(k, _)| (k.0, k.1) == (key.0, key.1));
            let bytes = |k: &PrefixKey| (k.3 - k.2) as i64 * cut.cached_per_image;
            let mut held: i64 = cache.iter().map(|(k, _)| bytes(k)).sum();
            while !cache.is_empty() && held + bytes(&key) > CACHE_BYTES {
                held -= bytes(&cache.remove(0).0);
            }
        }
        let env = Rc::new(self.compute_prefix(cut, s0, s1)?);
        self.prefixes.borrow_mut().push((key, env.clone()));
        Ok(env)
    }

    fn compute_prefix(&self, cut: &Cut, s0: usize, s1: usize) -> Result<Env> {
        let (x, _) = self.ctx.images(s0, s1)?;
        let graph = &self.gm.graph;
        let keep = keep(&cut.plan, cut.plan.c, cut.sparse.as_ref());
        let stored = &self.ctx.clean.values;
        if !stored.is_empty() {
            // Batched values from the clean pass; the few static ones (weights
            // and what is computed from them alone) evaluated here.
            let mut env: Env = (0..graph.nodes.len()).map(|_| None).collect();
            let last = keep.iter().copied().max().unwrap_or(0);
            let statics = (0..=last).filter(|&v| self.ax[v] == Axis::Static);
            tch::no_grad(|| graph.forward_nodes(&self.gm.params, &x, statics, &mut env, Mode::Eval))?;
            return Ok((0..graph.nodes.len())
                .map(|v| match (keep.contains(&v), &stored[v]) {
                    (false, _) => None,
                    (true, Some(t)) => Some(t.narrow(0, s0 as i64, (s1 - s0) as i64)),
                    (true, None) => env[v].take(),
                })
                .collect());
        }
        let mut env: Vec<Option<Tensor>> = (0..graph.nodes.len()).map(|_| None).collect();
        let last = cut.sparse.as_ref().map_or(cut.plan.c, |s| s.d);
        let mut start = 0;
        if let Some((p, range, front)) = self.frontier.borrow_mut().take() {
            // Usable if it holds every earlier value the nodes still to run and
            // the cut read (the cut re-runs shape computations from before `c`).
            let has = |v: &usize| *v > p || front[*v].is_some();
            let reads = (p + 1..=last).flat_map(|u| graph.nodes[u].inputs.iter());
            if range == (s0, s1) && p < cut.plan.c && keep.iter().all(has) && reads.into_iter().all(has) {
                env = front;
                start = p + 1;
            }
        }
        let ids: Vec<usize> = (start..=last).collect();
        let needed = |v: usize| self.last_use[v] > last || keep.contains(&v);
        tch::no_grad(|| graph.forward_nodes_freeing(&self.gm.params, &x, &ids, &mut env, Mode::Eval, needed))?;
        let front: Env = env
            .iter()
            .enumerate()
            .map(|(v, t)| {
                if self.last_use[v] > last {
                    t.as_ref().map(Tensor::shallow_clone)
                } else {
                    None
                }
            })
            .collect();
        *self.frontier.borrow_mut() = Some((last, (s0, s1), front));
        Ok(env
            .into_iter()
            .enumerate()
            .map(|(v, t)| if keep.contains(&v) { t } else { None })
            .collect())
    }
}

impl Fast<'_> {
    fn count(&self, add: impl FnOnce(&mut EngineStats)) {
        let mut s = self.stats.get();
        add(&mut s);
        self.stats.set(s);
    }
}

fn last_use(graph: &Graph) -> Vec<usize> {
    let mut last = vec![0; graph.nodes.len()];
    for (u, node) in graph.nodes.iter().enumerate() {
        for &v in &node.inputs {
            last[v] = u;
        }
    }
    last
}

/// The cached values a cut reads: the dense path's and the sparse path's.
fn keep(plan: &Plan, c: usize, sparse: Option<&Sparse>) -> Vec<usize> {
    let mut keep: Vec<usize> = plan.gather.iter().chain(&plan.statics).copied().chain([c]).collect();
    if let Some(sp) = sparse {
        keep.extend(sp.plan.gather.iter().chain(&sp.plan.statics).copied());
        keep.extend([sp.end(c), sp.d]);
    }
    keep.sort_unstable();
    keep.dedup();
    keep
}

/// A batch of (flip, sample) pairs: flip `f_idx[p]` of the unit on chunk
/// sample `s_rel[p]`, the chunk starting at image `s0`.
#[derive(Clone, Copy)]
struct Pairs<'p> {
    f_idx: &'p [i64],
    s_rel: &'p Tensor,
    s0: usize,
}

/// What is fixed for one unit's flips.
/// One unit's state while it runs: the clean correctness, each flip's
/// tally, and what the debug log reports.
struct Run {
    was: Vec<bool>,
    tallies: Vec<Tally>,
    /// Seconds in the prefix, the candidate test and the pair evaluations.
    seconds: [f64; 3],
    evaluated: usize,
}

struct UnitFlips<'u> {
    flips: &'u [Flip],
    values: &'u [(f32, f32)],
    tensor: &'u Tensor,
}

impl UnitFlips<'_> {
    fn delta32(&self, f: usize) -> f32 {
        let (old, new) = self.values[f];
        if new.is_finite() {
            new - old
        } else {
            0.0
        }
    }
}

impl Engine for Fast<'_> {
    fn run(&mut self, space: &FlipSpace, flips: &[Flip], values: &[(f32, f32)]) -> Result<Vec<Outcome>> {
        let Some(first) = flips.first() else { return Ok(vec![]) };
        let target = &space.targets[first.target];
        let Some(cut) = self.cut(&target.name)? else {
            return self.generic.run(space, flips, values);
        };
        let unit = UnitFlips {
            flips,
            values,
            tensor: &target.tensor,
        };
        let _span = tracing::debug_span!("unit", tensor = %target.name).entered();
        tch::no_grad(|| self.run_cut(&cut, &unit))
    }

    fn stats(&self) -> EngineStats {
        self.stats.get()
    }
}

impl Fast<'_> {
    fn run_cut(&self, cut: &Cut, u: &UnitFlips) -> Result<Vec<Outcome>> {
        let clean = self.ctx.clean;
        let (n, cc, threshold) = (clean.n, clean.correct_count, self.ctx.threshold);
        let seq = self.ctx.sequential;
        let mut run = Run {
            was: Vec::<bool>::try_from(&clean.correct)?,
            tallies: vec![Tally::new(cc, n as i64); u.flips.len()],
            seconds: [0.0; 3],
            evaluated: 0,
        };
        let chunks: Vec<(usize, usize)> = (0..n).step_by(cut.chunk).map(|s| (s, (s + cut.chunk).min(n))).collect();
        // Exact verdicts: every chunk's candidates first, so that early exit
        // counts the samples proven unchanged. Sequential ones: per segment
        // between looks, of the flips still open, as the samples come.
        let mut upfront = vec![];
        if seq.is_none() {
            for &(s0, s1) in &chunks {
                let env = self.timed_prefix(cut, s0, s1, &mut run)?;
                upfront.push(self.segment_candidates(cut, u, &env, (s0, s1), &mut run)?);
            }
        }
        let mut upfront = upfront.into_iter();
        for &(s0, s1) in &chunks {
            if run.tallies.iter().all(|t| self.done(t)) {
                break;
            }
            let Some(sq) = seq else {
                let env = self.timed_prefix(cut, s0, s1, &mut run)?;
                let cand = upfront.next().unwrap_or_default();
                self.evaluate(cut, u, &env, s0, &cand, &mut run)?;
                continue;
            };
            // The layers before the cut run segment by segment, as far as
            // some flip is still open: most verdicts settle in the first
            // hundred samples, long before a chunk ends.
            for (a, b) in sq.segments(s0, s1) {
                if run.tallies.iter().all(|t| self.done(t)) {
                    break;
                }
                let seg = self.timed_prefix(cut, a, b, &mut run)?;
                let cand = self.segment_candidates(cut, u, &seg, (a, b), &mut run)?;
                self.evaluate(cut, u, &seg, a, &cand, &mut run)?;
                if sq.looks_at(b) {
                    for t in &mut run.tallies {
                        t.look(cc, threshold, sq.alpha);
                    }
                }
            }
        }
        self.count(|s| s.evaluated_pairs += run.evaluated as u64);
        tracing::debug!(
            flips = u.flips.len(),
            pairs = run.evaluated,
            seconds = ?run.seconds,
            "unit (prefix, candidates, pairs)"
        );
        Ok(run.tallies.iter().map(|t| t.outcome(cc, threshold)).collect())
    }

    /// Whether a flip needs no more evaluations.
    fn done(&self, t: &Tally) -> bool {
        let (cc, threshold) = (self.ctx.clean.correct_count, self.ctx.threshold);
        t.exact() || (!self.ctx.exact_rad && t.closed(cc, threshold))
    }

    fn timed_prefix(&self, cut: &Cut, s0: usize, s1: usize, run: &mut Run) -> Result<Rc<Env>> {
        let t = std::time::Instant::now();
        let env = self.prefix(cut, s0, s1);
        run.seconds[0] += t.elapsed().as_secs_f64();
        env
    }

    /// The candidate samples of samples `s0..s1` (whose clean values `env`
    /// holds) for each flip not yet done (none for the others); every other
    /// sample of the segment is recorded as unchanged.
    fn segment_candidates(
        &self,
        cut: &Cut,
        u: &UnitFlips,
        env: &Env,
        (s0, s1): (usize, usize),
        run: &mut Run,
    ) -> Result<Vec<Cand>> {
        let t = std::time::Instant::now();
        // Exact verdicts take every flip's candidates up front (none is done yet).
        let lazy = self.ctx.sequential.is_some();
        let open: Vec<usize> = (0..u.flips.len())
            .filter(|&f| !lazy || !self.done(&run.tallies[f]))
            .collect();
        let flips: Vec<Flip> = open.iter().map(|&f| u.flips[f]).collect();
        let values: Vec<(f32, f32)> = open.iter().map(|&f| u.values[f]).collect();
        let sub = UnitFlips {
            flips: &flips,
            values: &values,
            tensor: u.tensor,
        };
        let chunk = candidates::Chunk { env, s0, s1 };
        let mut found = vec![];
        if !open.is_empty() {
            found = self.candidates(cut, &sub, &chunk)?;
            if let Some(lin) = &cut.linear {
                self.certify(cut, lin, &sub, &chunk, &mut found)?;
            }
        }
        run.seconds[1] += t.elapsed().as_secs_f64();
        let was = &run.was[s0..s1];
        let correct = was.iter().filter(|&&w| w).count() as i64;
        let mut out: Vec<Cand> = u.flips.iter().map(|_| Cand::List(vec![])).collect();
        for (&f, c) in open.iter().zip(found) {
            let cand_correct = (0..c.len()).filter(|&k| was[c.get(k) as usize]).count() as i64;
            let cand_wrong = c.len() as i64 - cand_correct;
            run.tallies[f].unchanged(correct - cand_correct, (s1 - s0) as i64 - correct - cand_wrong);
            out[f] = c;
        }
        if tracing::enabled!(tracing::Level::DEBUG) {
            let mut per_bit = [0usize; 32];
            for (f, c) in u.flips.iter().zip(&out) {
                per_bit[f.bit as usize] += c.len();
            }
            tracing::debug!(chunk = s0, flips = open.len(), ?per_bit, "candidate pairs");
        }
        Ok(out)
    }

    /// Evaluates the candidate pairs of segment `s0..` in rounds: each flip
    /// not yet done takes its next candidates (all of them for exact RAD,
    /// else about as many as could settle its verdict), all stacked into
    /// batches, until no flip has any left or needs them.
    fn evaluate(&self, cut: &Cut, u: &UnitFlips, env: &Env, s0: usize, cand: &[Cand], run: &mut Run) -> Result<()> {
        let (cc, threshold) = (self.ctx.clean.correct_count, self.ctx.threshold);
        let mut cursor = vec![0usize; u.flips.len()];
        loop {
            let (mut f_idx, mut s_rel) = (vec![], vec![]);
            for (f, t) in run.tallies.iter().enumerate() {
                let left = cand[f].len() - cursor[f];
                if left == 0 || self.done(t) {
                    continue;
                }
                let take = if self.ctx.exact_rad {
                    left
                } else {
                    (t.to_settle(cc, threshold).max(MIN_ROUND) as usize).min(left)
                };
                for k in cursor[f]..cursor[f] + take {
                    f_idx.push(f as i64);
                    s_rel.push(cand[f].get(k) as i64);
                }
                cursor[f] += take;
            }
            if f_idx.is_empty() {
                return Ok(());
            }
            for (fb, sb) in f_idx
                .chunks(cut.max_pairs as usize)
                .zip(s_rel.chunks(cut.max_pairs as usize))
            {
                let pairs = Pairs {
                    f_idx: fb,
                    s_rel: &Tensor::from_slice(sb),
                    s0,
                };
                let t = std::time::Instant::now();
                let faulty = Vec::<bool>::try_from(self.eval_pairs(cut, u, env, &pairs)?)?;
                run.seconds[2] += t.elapsed().as_secs_f64();
                run.evaluated += fb.len();
                for ((&f, &s), &is) in fb.iter().zip(sb).zip(&faulty) {
                    run.tallies[f as usize].observe(run.was[s0 + s as usize], is);
                }
            }
        }
    }

    /// Faulty correctness of pairs (flip `f_idx[p]`, chunk sample `s_rel[p]`):
    /// the sparse path for finite flips where the cut has one, the dense
    /// path for the rest.
    fn eval_pairs(&self, cut: &Cut, u: &UnitFlips, env: &[Option<Tensor>], pairs: &Pairs) -> Result<Tensor> {
        let Pairs { f_idx, s_rel, s0 } = *pairs;
        let Some(sp) = cut.sparse.as_ref() else {
            return self.dense_pairs(cut, u, env, pairs);
        };
        let finite: Vec<bool> = f_idx.iter().map(|&f| u.values[f as usize].1.is_finite()).collect();
        if !finite.contains(&false) {
            return self.sparse_pairs(cut, sp, u, env, pairs);
        }
        let mut out = Tensor::zeros([f_idx.len() as i64], (Kind::Bool, Device::Cpu));
        for want in [true, false] {
            let pos: Vec<i64> = (0..f_idx.len() as i64)
                .filter(|&p| finite[p as usize] == want)
                .collect();
            if pos.is_empty() {
                continue;
            }
            let sub_f: Vec<i64> = pos.iter().map(|&p| f_idx[p as usize]).collect();
            let sub_s = s_rel.index_select(0, &Tensor::from_slice(&pos));
            let sub = Pairs {
                f_idx: &sub_f,
                s_rel: &sub_s,
                s0,
            };
            let got = if want {
                self.sparse_pairs(cut, sp, u, env, &sub)?
            } else {
                self.dense_pairs(cut, u, env, &sub)?
            };
            let _ = out.f_index_copy_(0, &Tensor::from_slice(&pos), &got)?;
        }
        Ok(out)
    }

    /// Rows `s` of cached value `v`, channel `channels[p]` of row `p` only: `[P, 1, …]`.
    fn channel_rows(&self, env: &[Option<Tensor>], v: usize, s: &Tensor, channels: &[i64]) -> Result<Tensor> {
        let t = env[v]
            .as_ref()
            .ok_or_else(|| HartError::Model(format!("fast engine: value {v} not cached")))?;
        let size = t.size();
        let ch = Tensor::from_slice(channels).to_device(t.device());
        let rows = s * size[1] + ch;
        let mut shape = size.clone();
        shape[0] = channels.len() as i64;
        shape[1] = 1;
        Ok(t.f_reshape([size[0] * size[1], -1])?
            .f_index_select(0, &rows)?
            .f_reshape(shape.as_slice())?)
    }

    fn sparse_pairs(
        &self,
        cut: &Cut,
        sp: &Sparse,
        u: &UnitFlips,
        env: &[Option<Tensor>],
        pairs: &Pairs,
    ) -> Result<Tensor> {
        let Pairs { f_idx, s_rel, s0 } = *pairs;
        let graph = &self.gm.graph;
        let (c, dev) = (cut.plan.c, self.ctx.device);
        let s_dev = s_rel.to_device(dev);
        let elements: Vec<i64> = f_idx.iter().map(|&f| u.flips[f as usize].index).collect();
        let deltas: Vec<f32> = f_idx.iter().map(|&f| u.delta32(f as usize)).collect();
        let channels: Vec<i64> = elements.iter().map(|&e| cut.delta.channel(e)).collect();
        let out_shape = env[c]
            .as_ref()
            .ok_or_else(|| HartError::Model("fast engine: cut value missing".into()))?
            .size();
        let change = cut.delta.change(&out_shape, env, &s_dev, &elements, &deltas)?;
        let (mut genv, gx) = self.gather(&sp.plan, env, &s_dev);
        let change = if sp.chain.is_empty() {
            change
        } else {
            let faulty = self.channel_rows(env, c, &s_dev, &channels)? + change;
            let end = sp.run_chain(graph, &self.gm.params, &gx, faulty)?;
            end - self.channel_rows(env, sp.end(c), &s_dev, &channels)?
        };
        let clean_d = env[sp.d]
            .as_ref()
            .ok_or_else(|| HartError::Model("fast engine: dense layer value missing".into()))?
            .index_select(0, &s_dev);
        graph.forward_nodes(
            &self.gm.params,
            &gx,
            sp.plan.shapes.iter().copied(),
            &mut genv,
            Mode::Eval,
        )?;
        genv[sp.d] = Some(sp.densify(graph, &self.gm.params, &clean_d, &channels, &change)?);
        graph.forward_nodes(
            &self.gm.params,
            &gx,
            sp.plan.after.iter().copied(),
            &mut genv,
            Mode::Eval,
        )?;
        self.correct_of(&genv, s_rel, s0)
    }

    fn correct_of(&self, genv: &[Option<Tensor>], s_rel: &Tensor, s0: usize) -> Result<Tensor> {
        let logits = genv[self.gm.graph.output]
            .as_ref()
            .ok_or_else(|| HartError::Model("fast engine: logits not computed".into()))?;
        let labels = self
            .ctx
            .clean
            .labels
            .index_select(0, &(s_rel + s0 as i64))
            .to_device(self.ctx.device);
        Ok(self.ctx.clean.policy.correct(logits, &labels).to_device(Device::Cpu))
    }

    /// The values the nodes after `plan`'s cut read, gathered for the pairs'
    /// samples `s_dev`, and the input to pass along (any rows: only shape ops read it).
    fn gather(&self, plan: &Plan, env: &[Option<Tensor>], s_dev: &Tensor) -> (Env, Tensor) {
        let mut genv: Env = (0..self.gm.graph.nodes.len()).map(|_| None).collect();
        for &v in &plan.gather {
            genv[v] = env[v].as_ref().map(|t| t.index_select(0, s_dev));
        }
        for &v in &plan.statics {
            genv[v] = env[v].as_ref().map(|t| t.shallow_clone());
        }
        let x = genv[0].as_ref().map_or_else(
            || Tensor::zeros([1], (Kind::Float, self.ctx.device)),
            |t| t.shallow_clone(),
        );
        (genv, x)
    }

    /// The dense path: `c`'s whole faulty output, then every node after it.
    fn dense_pairs(&self, cut: &Cut, u: &UnitFlips, env: &[Option<Tensor>], pairs: &Pairs) -> Result<Tensor> {
        let Pairs { f_idx, s_rel, s0 } = *pairs;
        let graph = &self.gm.graph;
        let plan = &cut.plan;
        let dev = self.ctx.device;
        let s_dev = s_rel.to_device(dev);
        let (mut genv, x) = self.gather(plan, env, &s_dev);
        graph.forward_nodes(&self.gm.params, &x, plan.shapes.iter().copied(), &mut genv, Mode::Eval)?;
        let clean_c = env[plan.c]
            .as_ref()
            .ok_or_else(|| HartError::Model("fast engine: cut value missing".into()))?
            .index_select(0, &s_dev);
        let structured = cut.delta.structured();
        let out = if structured {
            let elements: Vec<i64> = f_idx.iter().map(|&f| u.flips[f as usize].index).collect();
            let deltas: Vec<f32> = f_idx.iter().map(|&f| u.delta32(f as usize)).collect();
            cut.delta.apply(&clean_c, env, &s_dev, &elements, &deltas)?
        } else {
            clean_c
        };
        // Runs of one flip: re-run `c` with the flip applied where no delta
        // rule applies or the new value is not finite (∞·0 must come out as
        // the real kernel computes it).
        let mut p0 = 0;
        while p0 < f_idx.len() {
            let f = f_idx[p0] as usize;
            let p1 = p0 + f_idx[p0..].iter().take_while(|&&g| g as usize == f).count();
            let (old, new) = u.values[f];
            if !structured || !new.is_finite() {
                // This flip's rows only; shape values are recomputed for that many rows.
                let mut env2: Vec<Option<Tensor>> = (0..graph.nodes.len()).map(|_| None).collect();
                for &v in &plan.gather {
                    env2[v] = genv[v].as_ref().map(|t| t.narrow(0, p0 as i64, (p1 - p0) as i64));
                }
                for &v in &plan.statics {
                    env2[v] = genv[v].as_ref().map(|t| t.shallow_clone());
                }
                let ids: Vec<usize> = plan.shapes.iter().copied().chain([plan.c]).collect();
                with_flip(u.tensor, u.flips[f].index, old, new, || {
                    graph.forward_nodes(&self.gm.params, &x, ids, &mut env2, Mode::Eval)
                })?;
                if let Some(y) = &env2[plan.c] {
                    out.narrow(0, p0 as i64, (p1 - p0) as i64).copy_(y);
                }
            }
            p0 = p1;
        }
        genv[plan.c] = Some(out);
        graph.forward_nodes(&self.gm.params, &x, plan.after.iter().copied(), &mut genv, Mode::Eval)?;
        self.correct_of(&genv, s_rel, s0)
    }
}
