//! Statistical fault injection: sample sizes (Leveugle et al., DATE 2009)
//! and confidence intervals for proportions estimated from a sample.

/// The standard normal quantile (Acklam's rational approximation, |error| < 1.2e-9).
pub fn normal_quantile(p: f64) -> f64 {
    const A: [f64; 6] = [
        -3.969683028665376e1,
        2.209460984245205e2,
        -2.759285104469687e2,
        1.38357751867269e2,
        -3.066479806614716e1,
        2.506628277459239,
    ];
    const B: [f64; 5] = [
        -5.447609879822406e1,
        1.615858368580409e2,
        -1.556989798598866e2,
        6.680131188771972e1,
        -1.328068155288572e1,
    ];
    const C: [f64; 6] = [
        -7.784894002430293e-3,
        -3.223964580411365e-1,
        -2.400758277161838,
        -2.549732539343734,
        4.374664141464968,
        2.938163982698783,
    ];
    const D: [f64; 4] = [
        7.784695709041462e-3,
        3.224671290700398e-1,
        2.445134137142996,
        3.754408661907416,
    ];
    let tail = |q: f64| {
        (((((C[0] * q + C[1]) * q + C[2]) * q + C[3]) * q + C[4]) * q + C[5])
            / ((((D[0] * q + D[1]) * q + D[2]) * q + D[3]) * q + 1.0)
    };
    if p < 0.02425 {
        tail((-2.0 * p.ln()).sqrt())
    } else if p > 1.0 - 0.02425 {
        -tail((-2.0 * (1.0 - p).ln()).sqrt())
    } else {
        let q = p - 0.5;
        let r = q * q;
        (((((A[0] * r + A[1]) * r + A[2]) * r + A[3]) * r + A[4]) * r + A[5]) * q
            / (((((B[0] * r + B[1]) * r + B[2]) * r + B[3]) * r + B[4]) * r + 1.0)
    }
}

/// Two-sided critical value t for a confidence level such as 0.95.
pub fn critical_value(confidence: f64) -> f64 {
    normal_quantile(0.5 + confidence / 2.0)
}

/// Leveugle et al.: flips to inject out of a population of `population` for
/// error margin `margin` at `confidence`, with the worst case p = 0.5:
/// n = N / (1 + e²(N−1)/(t²p(1−p))).
pub fn leveugle_sample_size(population: u64, margin: f64, confidence: f64) -> u64 {
    let n = population as f64;
    let t = critical_value(confidence);
    let p = 0.5;
    (n / (1.0 + margin * margin * (n - 1.0) / (t * t * p * (1.0 - p)))).ceil() as u64
}

/// Wilson score interval for `k` successes out of `n`, with the finite
/// population correction when sampling without replacement from `population`.
pub fn wilson(k: u64, n: u64, population: u64, confidence: f64) -> (f64, f64) {
    if n == 0 {
        return (0.0, 1.0);
    }
    let (k, nf) = (k as f64, n as f64);
    let z = critical_value(confidence);
    let fpc = if population > 1 {
        ((population as f64 - nf) / (population as f64 - 1.0)).max(0.0).sqrt()
    } else {
        1.0
    };
    let z = z * fpc;
    let p = k / nf;
    let denom = 1.0 + z * z / nf;
    let centre = (p + z * z / (2.0 * nf)) / denom;
    let half = z * (p * (1.0 - p) / nf + z * z / (4.0 * nf * nf)).sqrt() / denom;
    ((centre - half).max(0.0), (centre + half).min(1.0))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn known_values() {
        assert!((critical_value(0.95) - 1.959964).abs() < 1e-5);
        assert!((critical_value(0.99) - 2.575829).abs() < 1e-5);
        // Leveugle et al. Table: N large, e = 1 %, 95 % → about 9604 (÷ by 1 + tiny).
        let n = leveugle_sample_size(1_000_000_000, 0.01, 0.95);
        assert!((9600..=9605).contains(&n), "{n}");
        assert_eq!(leveugle_sample_size(100, 0.01, 0.95), 99);
        let (lo, hi) = wilson(10, 100, u64::MAX, 0.95);
        assert!((lo - 0.0552).abs() < 1e-3 && (hi - 0.1744).abs() < 1e-3, "{lo} {hi}");
        let (lo, hi) = wilson(10, 100, 100, 0.95);
        assert!(
            (lo - 0.1).abs() < 1e-9 && (hi - 0.1).abs() < 1e-9,
            "a census has no uncertainty"
        );
    }
}
