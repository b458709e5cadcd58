//! The result of `hart hessian`, as JSON and as a table.

use std::fmt::Write;

use serde::ser::SerializeMap;
use serde::{Deserialize, Serialize};

use super::{AnalysisConfig, Density, ParamSet, TopEigen, TraceEstimate, TraceMethod};

/// Name → value pairs serialised as a JSON object in their given order
/// (state-dict order reads better than alphabetical).
#[derive(Debug, Clone, Default)]
pub struct Named(pub Vec<(String, f64)>);

impl Serialize for Named {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut m = s.serialize_map(Some(self.0.len()))?;
        for (k, v) in &self.0 {
            m.serialize_entry(k, v)?;
        }
        m.end()
    }
}

impl<'de> Deserialize<'de> for Named {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct Pairs;
        impl<'de> serde::de::Visitor<'de> for Pairs {
            type Value = Named;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("an object of numbers")
            }
            fn visit_map<A: serde::de::MapAccess<'de>>(self, mut m: A) -> Result<Named, A::Error> {
                let mut out = vec![];
                // JSON writes a NaN as null.
                while let Some((k, v)) = m.next_entry::<String, Option<f64>>()? {
                    out.push((k, v.unwrap_or(f64::NAN)));
                }
                Ok(Named(out))
            }
        }
        d.deserialize_map(Pairs)
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct HessianReport {
    pub method: TraceMethod,
    pub trace: f64,
    #[serde(deserialize_with = "crate::util::f64_or_nan")]
    pub trace_stderr: f64,
    pub rel_stderr_target: f64,
    pub converged: bool,
    pub probes: usize,
    pub trace_hvps: usize,
    pub top_eigenvalues: Vec<f64>,
    pub eigenvalue_residuals: Vec<f64>,
    /// Trace of each parameter tensor's diagonal Hessian block.
    pub per_layer: Named,
    pub per_layer_stderr: Named,
    pub parameters: i64,
    pub hvps: usize,
    pub seconds: f64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub density: Option<Density>,
}

impl HessianReport {
    pub(crate) fn new(
        params: &ParamSet,
        cfg: &AnalysisConfig,
        trace: TraceEstimate,
        top: Option<TopEigen>,
        density: Option<Density>,
        hvps: usize,
        seconds: f64,
    ) -> Self {
        let named = |v: &[f64]| Named(params.names.iter().cloned().zip(v.iter().copied()).collect());
        let (top_eigenvalues, eigenvalue_residuals) = top.map(|t| (t.values, t.residuals)).unwrap_or_default();
        HessianReport {
            method: cfg.method,
            trace: trace.trace,
            trace_stderr: trace.stderr,
            rel_stderr_target: cfg.trace.rel_stderr,
            converged: trace.converged,
            probes: trace.probes,
            trace_hvps: trace.hvps,
            top_eigenvalues,
            eigenvalue_residuals,
            per_layer: named(&trace.per_tensor),
            per_layer_stderr: named(&trace.per_tensor_stderr),
            parameters: params.dim(),
            hvps,
            seconds,
            density,
        }
    }

    /// The human-readable summary `hart hessian` prints.
    pub fn table(&self) -> String {
        let mut s = String::new();
        let rel = self.trace_stderr / self.trace.abs();
        let _ = writeln!(
            s,
            "trace {:.6e} ± {:.2e} ({:.2}% rel. stderr, target {:.2}%{}) from {} probes, {}",
            self.trace,
            self.trace_stderr,
            100.0 * rel,
            100.0 * self.rel_stderr_target,
            if self.converged {
                ""
            } else {
                ", NOT reached: raise --max-probes"
            },
            self.probes,
            match self.method {
                TraceMethod::GaussNewton => "Gauss–Newton (gradients, no HVPs)".to_string(),
                _ => format!("{} HVPs", self.trace_hvps),
            }
        );
        for (i, (v, r)) in self.top_eigenvalues.iter().zip(&self.eigenvalue_residuals).enumerate() {
            let _ = writeln!(s, "λ{:<3} {:>14.6e}   (residual {:.1e})", i + 1, v, r);
        }
        let width = self.per_layer.0.iter().map(|(n, _)| n.len()).max().unwrap_or(0).max(9);
        let _ = writeln!(
            s,
            "{:<width$} {:>14} {:>12} {:>8}",
            "parameter", "trace", "stderr", "share"
        );
        for ((name, t), (_, se)) in self.per_layer.0.iter().zip(&self.per_layer_stderr.0) {
            let share = 100.0 * t / self.trace;
            let _ = writeln!(s, "{name:<width$} {t:>14.6e} {se:>12.2e} {share:>7.1}%");
        }
        let _ = write!(
            s,
            "{} parameters, {} HVPs in all, {:.1} s",
            self.parameters, self.hvps, self.seconds
        );
        s
    }
}
