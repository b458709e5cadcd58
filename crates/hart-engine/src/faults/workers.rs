//! Flips in parallel across cores. Each worker owns a copy of the model's
//! tensors (engines write weights in place), shares the graph's constants
//! (a TorchScript module is copied whole), the data and the clean pass
//! read-only, and pulls work units from a common counter; the calling
//! thread records each finished unit. libtorch runs one intra-op thread per worker meanwhile, so workers
//! never oversubscribe the cores.

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::mpsc;

use super::clean::Clean;
use super::engine::{unit_rows, Ctx};
use super::kind::EngineKind;
use super::record::Row;
use super::space::{FlipSpace, Unit};
use crate::error::Result;
use crate::model::Model;

/// What one worker owns: moved into its thread whole.
struct Worker {
    model: Model,
    space: FlipSpace,
    clean: Clean,
}

/// Restores libtorch's intra-op thread count however the workers end.
struct Threads(i32);

impl Drop for Threads {
    fn drop(&mut self) {
        tch::set_num_threads(self.0);
    }
}

/// Workers a sweep of `units` units can use on this machine: one per
/// libtorch intra-op thread, on the CPU, for every engine but the reference
/// loop (kept as the plain definition) and a defence whose recovery rewrites
/// other elements (`multi_write`: only the faulted engine computes it).
pub fn count(ctx: &Ctx, engine: EngineKind, multi_write: bool, units: usize, requested: Option<usize>) -> usize {
    let possible = engine != EngineKind::Reference && ctx.model.device() == tch::Device::Cpu && !multi_write;
    if !possible {
        return 1;
    }
    let want = requested.unwrap_or_else(|| tch::get_num_threads().max(1) as usize);
    want.clamp(1, units.max(1))
}

/// Computes `units` of `space` on `workers` threads, each with its own copy
/// of `ctx`'s model, handing each unit's rows to `done` (on the calling
/// thread, in completion order).
pub fn run(
    ctx: Ctx<'_>,
    engine: EngineKind,
    space: &FlipSpace,
    units: &[Unit],
    workers: usize,
    done: &mut dyn FnMut(&Unit, Vec<Row>) -> Result<()>,
) -> Result<()> {
    let mut owned = vec![];
    for _ in 0..workers {
        let model = ctx.model.deep_copy()?;
        let space = space.rebind(&model)?;
        owned.push(Worker {
            model,
            space,
            clean: ctx.clean.share(),
        });
    }
    let _restore = Threads(tch::get_num_threads());
    tch::set_num_threads(1);
    let next = AtomicUsize::new(0);
    let stop = AtomicBool::new(false);
    let (tx, rx) = mpsc::channel::<Result<(usize, Vec<Row>)>>();
    std::thread::scope(|scope| {
        for w in owned {
            let (tx, next, stop) = (tx.clone(), &next, &stop);
            scope.spawn(move || {
                let ctx = Ctx {
                    model: &w.model,
                    clean: &w.clean,
                    device: tch::Device::Cpu,
                    ..ctx
                };
                let mut engine = engine.build(ctx);
                while !stop.load(Ordering::Relaxed) {
                    let i = next.fetch_add(1, Ordering::Relaxed);
                    let Some(unit) = units.get(i) else { break };
                    let rows = unit_rows(&w.space, &w.clean, engine.as_mut(), unit).map(|r| (i, r));
                    if tx.send(rows).is_err() {
                        break;
                    }
                }
            });
        }
        drop(tx);
        let mut first_err = None;
        for msg in rx {
            let res = msg.and_then(|(i, rows)| done(&units[i], rows));
            if let Err(e) = res {
                stop.store(true, Ordering::Relaxed);
                first_err.get_or_insert(e);
            }
        }
        first_err.map_or(Ok(()), Err)
    })
}
